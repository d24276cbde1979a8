"""How imports write: batch Bundles of conditional creates in write batches, and updates that diff their
search entries without extracting the previous version again."""

from __future__ import annotations

import boto3
import orjson
import pytest
from fhirlake.persistence import StoredVersion, search_index
from fhirlake.persistence.dynamodb import DynamoResourceStore
from fhirlake.search.extract import index_values
from fhirlake.search.parameters import parameters

from .conftest import Importer

NPI = "http://hl7.org/fhir/sid/us-npi"


def practitioner(n: int) -> dict:
    return {
        "resourceType": "Practitioner",
        "id": f"pr{n}",
        "identifier": [{"system": NPI, "value": f"99{n}"}],
        "name": [{"family": f"Doctor{n}"}],
    }


def batch_of_conditional_creates() -> dict:
    """As Synthea's _practitionerInformation Bundle: conditional creates, and roles that refer to the
    practitioners of the same Bundle conditionally."""
    entries = []
    for n in range(3):
        entries.append(
            {
                "resource": practitioner(n),
                "request": {
                    "method": "POST",
                    "url": "Practitioner",
                    "ifNoneExist": f"identifier={NPI}|99{n}",
                },
            }
        )
        entries.append(
            {
                "resource": {
                    "resourceType": "PractitionerRole",
                    "id": f"role{n}",
                    "practitioner": {"reference": f"Practitioner?identifier={NPI}|99{n}"},
                },
                "request": {"method": "POST", "url": "PractitionerRole"},
            }
        )
    entries.append({"resource": {"resourceType": "Organization", "id": "org1", "name": "Clinic"},
                    "request": {"method": "PUT", "url": "Organization/org1"}})  # fmt: skip
    return {"resourceType": "Bundle", "type": "batch", "entry": entries}


def test_batch_of_conditional_creates_in_write_batches(
    importer: Importer, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = importer.service._core("strict").service
    searches: list[str] = []
    find = service.find
    monkeypatch.setattr(
        service, "find", lambda rtype, query, *a: searches.append(rtype) or find(rtype, query, *a)
    )
    bundle = batch_of_conditional_creates()
    view = importer.run("batch.json", orjson.dumps(bundle))
    assert view["status"] == "completed" and view["counts"]["stored"] == 7, view
    assert searches == []  # conditions ruled out by one index read; references learnt from the creates
    store = importer.service._core("strict").store
    assert (
        store.current("PractitionerRole", "role1").resource["practitioner"]["reference"] == "Practitioner/pr1"
    )
    assert store.current("Practitioner", "pr2").version_id == 1  # the client's id is kept
    # again, with one practitioner already stored under another id: ifNoneExist finds it, nothing is written
    bundle["entry"][2]["resource"]["id"] = "another-id"
    again = importer.run("batch-again.json", orjson.dumps(bundle))
    success = {r["entry"]: r for r in importer.result_lines(again, "success")}
    assert again["counts"]["stored"] == 7 and again["counts"]["unchanged"] == 7
    assert (success[2]["id"], success[2]["outcome"]) == ("pr1", "unchanged")
    assert store.current("Practitioner", "another-id") is None


def test_batch_entry_put_must_name_its_resource(importer: Importer) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [{"resource": practitioner(1), "request": {"method": "PUT", "url": "Practitioner/other"}}],
    }
    view = importer.run("mismatch.json", orjson.dumps(bundle))
    (failed,) = importer.result_lines(view, "failure")
    assert failed["entry"] == 0 and failed["outcome"]["issue"][0]["expression"] == [
        "Bundle.entry[0].request.url"
    ]


def test_update_diffs_entries_without_extracting_the_previous_version_again(aws) -> None:
    calls: list[str] = []

    def counting(resource: dict) -> list:
        calls.append(resource["meta"]["versionId"])
        return index_values(resource)

    client = boto3.client("dynamodb", region_name="us-east-1")
    store = DynamoResourceStore(client, aws.table_name, None, "default", counting)

    def version(n: int, family: str) -> StoredVersion:
        body = {"resourceType": "Patient", "id": "p", "name": [{"family": family}],
                "meta": {"versionId": str(n), "lastUpdated": f"2024-01-0{n}T00:00:00.000Z"}}  # fmt: skip
        return StoredVersion("Patient", "p", n, body["meta"]["lastUpdated"], "PUT", body)

    def families() -> list[str]:
        shards = parameters("Patient")["family"].shards
        return sorted(
            item["sk"]["S"].split(search_index.KEY_END)[0]
            for pk in search_index.partition_keys("default", "Patient", "family", shards)
            for item in client.query(
                TableName=aws.table_name,
                KeyConditionExpression="pk = :pk",
                ExpressionAttributeValues={":pk": {"S": pk}},
            )["Items"]
        )

    store.put(version(1, "Old"))
    store.put(version(2, "New"), store.current("Patient", "p"))
    assert calls == ["1", "2"]  # version 1's entries were known from its write
    assert families() == ["new"]  # and its stale entry was removed
    other_process = DynamoResourceStore(client, aws.table_name, None, "default", counting)
    other_process.put(version(3, "Newer"), other_process.current("Patient", "p"))
    assert calls == ["1", "2", "2", "3"]  # without that knowledge, version 2 is extracted again
    assert families() == ["newer"]
