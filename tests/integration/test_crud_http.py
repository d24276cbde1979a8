"""The FHIR REST interactions over real HTTP against the local runtime (R4 http.html)."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from email.utils import parsedate_to_datetime

import pytest

from tests.integration.fhir_http import FhirHttp, strip_server_meta

pytestmark = pytest.mark.http


def patient(**extra: object) -> dict:
    return {
        "resourceType": "Patient",
        "active": True,
        "name": [{"family": "Chalmers", "given": ["Peter"]}],
        **extra,
    }


def assert_outcome(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"], body
    if code:
        assert any(issue["code"] == code for issue in body["issue"]), body
    return body


# -- create / read ------------------------------------------------------------------------
def test_create_assigns_id_version_and_returns_headers(fhir: FhirHttp) -> None:
    response = fhir.post("Patient", patient(id="client-chosen"))
    assert response.status_code == 201
    body = response.json()
    assert body["id"] != "client-chosen"  # R4: the server ignores a client id on create
    assert body["meta"]["versionId"] == "1"
    assert body["meta"]["lastUpdated"].endswith("Z")
    assert response.headers["ETag"] == 'W/"1"'
    assert response.headers["Location"] == f"{fhir.base}/Patient/{body['id']}/_history/1"
    assert parsedate_to_datetime(response.headers["Last-Modified"])
    assert response.headers["Content-Type"].startswith("application/fhir+json")
    assert strip_server_meta(body) == {**patient(), "id": body["id"]}


def test_read_and_vread(fhir: FhirHttp) -> None:
    created = fhir.post("Patient", patient()).json()
    read = fhir.get(f"Patient/{created['id']}")
    assert read.status_code == 200
    assert read.json() == created
    assert read.headers["ETag"] == 'W/"1"'
    vread = fhir.get(f"Patient/{created['id']}/_history/1")
    assert vread.status_code == 200 and vread.json() == created
    assert fhir.get(f"Patient/{created['id']}/_history/2").status_code == 404
    assert fhir.get(f"Patient/{created['id']}/_history/abc").status_code == 404


def test_read_unknown_id_and_unknown_type(fhir: FhirHttp) -> None:
    assert_outcome(fhir.get(f"Patient/{uuid.uuid4()}"), 404, "not-found")
    assert_outcome(fhir.get("Patient/not a valid id!"), 404)
    assert_outcome(fhir.get("NotAResource/1"), 404)
    assert_outcome(fhir.post("NotAResource", {"resourceType": "NotAResource"}), 404)


# -- update -------------------------------------------------------------------------------
def test_update_creates_new_versions_and_update_as_create(fhir: FhirHttp) -> None:
    rid = f"upd-{uuid.uuid4().hex[:12]}"
    first = fhir.put(f"Patient/{rid}", patient(id=rid))
    assert first.status_code == 201  # update-as-create
    assert first.json()["meta"]["versionId"] == "1"
    second = fhir.put(f"Patient/{rid}", patient(id=rid, gender="female"))
    assert second.status_code == 200
    assert second.json()["meta"]["versionId"] == "2"
    assert second.headers["ETag"] == 'W/"2"'
    assert fhir.get(f"Patient/{rid}").json()["gender"] == "female"
    assert "gender" not in fhir.get(f"Patient/{rid}/_history/1").json()


def test_update_id_must_match_url(fhir: FhirHttp) -> None:
    assert_outcome(fhir.put("Patient/abc", patient(id="xyz")), 400)
    assert_outcome(fhir.put("Patient/abc", patient()), 400)


def test_update_resource_type_must_match_url(fhir: FhirHttp) -> None:
    body = {"resourceType": "Observation", "id": "abc", "status": "final", "code": {"text": "x"}}
    assert_outcome(fhir.put("Patient/abc", body), 400)


def test_if_match_precondition(fhir: FhirHttp) -> None:
    created = fhir.post("Patient", patient()).json()
    rid = created["id"]
    stale = fhir.put(f"Patient/{rid}", patient(id=rid), headers={"If-Match": 'W/"7"'})
    assert_outcome(stale, 412)
    ok = fhir.put(f"Patient/{rid}", patient(id=rid, gender="male"), headers={"If-Match": 'W/"1"'})
    assert ok.status_code == 200 and ok.json()["meta"]["versionId"] == "2"
    assert_outcome(fhir.delete(f"Patient/{rid}", headers={"If-Match": 'W/"1"'}), 412)
    assert fhir.delete(f"Patient/{rid}", headers={"If-Match": 'W/"2"'}).status_code == 204


def test_concurrent_updates_never_lose_a_version(fhir: FhirHttp, api_url: str) -> None:
    rid = fhir.post("Patient", patient()).json()["id"]
    writers = 12

    def update(n: int) -> int:
        return (
            FhirHttp(api_url)
            .put(f"Patient/{rid}", patient(id=rid, birthDate=f"19{10 + n}-01-01"))
            .status_code
        )

    with ThreadPoolExecutor(max_workers=writers) as pool:
        statuses = list(pool.map(update, range(writers)))
    # Without If-Match a losing writer retries on top of the winner; with contention it may get 409.
    assert set(statuses) <= {200, 409}
    succeeded = statuses.count(200)
    history = fhir.get(f"Patient/{rid}/_history", _count="100").json()
    versions = [int(e["resource"]["meta"]["versionId"]) for e in history["entry"]]
    assert versions == list(range(succeeded + 1, 0, -1))  # 1 create + every successful update, no gaps
    assert len({e["resource"]["birthDate"] for e in history["entry"][:-1]}) == succeeded


def test_concurrent_if_match_updates_one_wins(fhir: FhirHttp, api_url: str) -> None:
    rid = fhir.post("Patient", patient()).json()["id"]

    def update(n: int) -> int:
        return (
            FhirHttp(api_url)
            .put(
                f"Patient/{rid}",
                patient(id=rid, gender="other" if n % 2 else "male"),
                headers={"If-Match": 'W/"1"'},
            )
            .status_code
        )

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(update, range(8)))
    assert statuses.count(200) == 1
    assert statuses.count(412) == 7
    assert fhir.get(f"Patient/{rid}").json()["meta"]["versionId"] == "2"


# -- delete -------------------------------------------------------------------------------
def test_delete_then_gone_and_idempotent(fhir: FhirHttp) -> None:
    rid = fhir.post("Patient", patient()).json()["id"]
    deleted = fhir.delete(f"Patient/{rid}")
    assert deleted.status_code == 204
    assert deleted.headers["ETag"] == 'W/"2"'
    assert_outcome(fhir.get(f"Patient/{rid}"), 410, "deleted")
    assert fhir.delete(f"Patient/{rid}").status_code == 204
    history = fhir.get(f"Patient/{rid}/_history").json()
    assert [e["request"]["method"] for e in history["entry"]] == ["DELETE", "POST"]  # no second tombstone
    assert "resource" not in history["entry"][0]
    assert_outcome(fhir.get(f"Patient/{rid}/_history/2"), 410)
    assert fhir.get(f"Patient/{rid}/_history/1").status_code == 200  # old versions stay readable
    # A deleted resource can be brought back by an update.
    revived = fhir.put(f"Patient/{rid}", patient(id=rid))
    assert revived.status_code == 201 and revived.json()["meta"]["versionId"] == "3"


def test_delete_of_unknown_resource(fhir: FhirHttp) -> None:
    assert fhir.delete(f"Patient/{uuid.uuid4()}").status_code == 204


def test_delete_prefer_operation_outcome(fhir: FhirHttp) -> None:
    rid = fhir.post("Patient", patient()).json()["id"]
    response = fhir.delete(f"Patient/{rid}", headers={"Prefer": "return=OperationOutcome"})
    assert response.status_code == 200
    assert response.json()["resourceType"] == "OperationOutcome"


# -- Prefer / content negotiation -----------------------------------------------------------
def test_prefer_return(fhir: FhirHttp) -> None:
    minimal = fhir.post("Patient", patient(), headers={"Prefer": "return=minimal"})
    assert minimal.status_code == 201 and minimal.content == b""
    assert minimal.headers["Location"]
    outcome = fhir.post("Patient", patient(), headers={"Prefer": "return=OperationOutcome"})
    assert outcome.status_code == 201 and outcome.json()["resourceType"] == "OperationOutcome"
    full = fhir.post("Patient", patient(), headers={"Prefer": "return=representation"})
    assert full.json()["resourceType"] == "Patient"


def test_format_and_accept_negotiation(fhir: FhirHttp) -> None:
    rid = fhir.post("Patient", patient()).json()["id"]
    plain = fhir.get(f"Patient/{rid}", headers={"Accept": "application/json"})
    assert plain.status_code == 200 and plain.headers["Content-Type"].startswith("application/json")
    assert (
        fhir.get(f"Patient/{rid}", _format="json").headers["Content-Type"].startswith("application/fhir+json")
    )
    assert fhir.get(f"Patient/{rid}", headers={"Accept": "*/*"}).status_code == 200
    assert_outcome(fhir.get(f"Patient/{rid}", headers={"Accept": "application/fhir+xml"}), 406)
    assert_outcome(fhir.get(f"Patient/{rid}", _format="xml"), 406)
    pretty = fhir.get(f"Patient/{rid}", _pretty="true")
    assert b"\n  " in pretty.content


def test_unsupported_media_type(fhir: FhirHttp) -> None:
    xml = b'<Patient xmlns="http://hl7.org/fhir"><active value="true"/></Patient>'
    assert_outcome(fhir.post("Patient", raw=xml, headers={"Content-Type": "application/fhir+xml"}), 415)
    assert_outcome(fhir.post("Patient", raw=b"hello", headers={"Content-Type": "text/plain"}), 415)
    assert fhir.post("Patient", patient(), headers={"Content-Type": "application/json"}).status_code == 201


# -- errors -------------------------------------------------------------------------------
@pytest.mark.parametrize("raw", [b"{", b'{"resourceType": "Patient",}', b"[1, 2]", b"null", b"\xff\xfe"])
def test_malformed_bodies_are_400(fhir: FhirHttp, raw: bytes) -> None:
    body = assert_outcome(fhir.post("Patient", raw=raw), 400)
    assert "Traceback" not in str(body)


def test_empty_body_is_400(fhir: FhirHttp) -> None:
    assert_outcome(fhir.post("Patient", raw=b""), 400)


def test_invalid_resource_reports_each_problem_with_paths(fhir: FhirHttp) -> None:
    bad = {"resourceType": "Patient", "id": "bad id!", "gender": 3, "birthDate": "yesterday"}
    body = assert_outcome(fhir.put("Patient/ok-id", {**bad, "id": "ok-id"}), 400)
    expressions = {e for issue in body["issue"] for e in issue.get("expression", [])}
    assert any("gender" in e for e in expressions), body
    assert any("birthDate" in e for e in expressions), body


def test_wrong_method_is_405(fhir: FhirHttp) -> None:
    response = fhir.post("Patient/123", patient())
    assert_outcome(response, 405)
    assert "PUT" in response.headers["Allow"]
    assert_outcome(fhir.request("PATCH", "Patient/_history", raw=b"[]"), 405)
    assert_outcome(fhir.delete("metadata"), 405)


def test_body_over_limit_is_413(fhir: FhirHttp) -> None:
    huge = patient(
        text={
            "status": "generated",
            "div": '<div xmlns="http://www.w3.org/1999/xhtml">' + "x" * (6 * 1024 * 1024) + "</div>",
        }
    )
    assert_outcome(fhir.post("Patient", huge), 413)


def test_not_yet_supported_features_say_so(fhir: FhirHttp) -> None:
    assert_outcome(fhir.get("Observation", _filter="code eq 1234-5"), 501)


# -- large resources ----------------------------------------------------------------------
def test_resource_larger_than_a_dynamodb_item_round_trips(fhir: FhirHttp, runtime) -> None:
    # Incompressible payload so the stored item would exceed 400 KB.
    data = __import__("base64").b64encode(__import__("os").urandom(600_000)).decode()
    binary = {"resourceType": "Binary", "contentType": "application/octet-stream", "data": data}
    created = fhir.post("Binary", binary)
    assert created.status_code == 201, created.text[:500]
    rid = created.json()["id"]
    assert fhir.get(f"Binary/{rid}").json()["data"] == data
    updated = fhir.put(f"Binary/{rid}", {**binary, "id": rid, "contentType": "application/pdf"})
    assert updated.status_code == 200
    assert fhir.get(f"Binary/{rid}/_history/1").json()["data"] == data
    blobs = runtime.client("s3").list_objects_v2(
        Bucket=runtime.resources.buckets["blobs"], Prefix=f"default/Binary/{rid}/"
    )
    assert blobs["KeyCount"] == 2  # both versions' bodies live in S3


# -- history ------------------------------------------------------------------------------
def test_instance_history_paging(fhir: FhirHttp) -> None:
    rid = fhir.post("Patient", patient()).json()["id"]
    for n in range(6):
        fhir.put(f"Patient/{rid}", patient(id=rid, birthDate=f"200{n}-01-01"))
    seen: list[str] = []
    url: str | None = f"Patient/{rid}/_history?_count=3"
    pages = 0
    while url:
        bundle = fhir.get(url).json()
        assert bundle["type"] == "history"
        seen += [e["resource"]["meta"]["versionId"] for e in bundle["entry"]]
        url = next((link["url"] for link in bundle["link"] if link["relation"] == "next"), None)
        pages += 1
    assert seen == ["7", "6", "5", "4", "3", "2", "1"]
    assert pages == 3


def test_type_history_newest_first_with_since_and_paging(fhir: FhirHttp) -> None:
    rtype = "Device"  # a type no other test writes
    ids = [fhir.post(rtype, {"resourceType": rtype, "status": "active"}).json()["id"] for _ in range(5)]
    first = fhir.get(f"{rtype}/_history", _count="2").json()
    assert [e["resource"]["id"] for e in first["entry"]] == ids[::-1][:2]
    collected, url = [], f"{rtype}/_history?_count=2"
    while url:
        bundle = fhir.get(url).json()
        collected += [e["resource"]["id"] for e in bundle["entry"]]
        url = next((link["url"] for link in bundle["link"] if link["relation"] == "next"), None)
    assert collected == ids[::-1]
    since = fhir.get(f"{rtype}/{ids[2]}").json()["meta"]["lastUpdated"]
    recent = fhir.get(f"{rtype}/_history", _since=since).json()
    assert [e["resource"]["id"] for e in recent["entry"]] == ids[::-1][:3]


def test_system_history_includes_all_types(fhir: FhirHttp) -> None:
    marker = fhir.post("Location", {"resourceType": "Location", "name": "Ward 7"}).json()
    org = fhir.post("Organization", {"resourceType": "Organization", "name": "Acme"}).json()
    bundle = fhir.get("_history", _since=marker["meta"]["lastUpdated"], _count="1000").json()
    found = {(e["resource"]["resourceType"], e["resource"]["id"]) for e in bundle["entry"] if "resource" in e}
    assert ("Location", marker["id"]) in found and ("Organization", org["id"]) in found
    stamps = [e["response"]["lastModified"] for e in bundle["entry"]]
    assert stamps == sorted(stamps, reverse=True)


def test_history_paging_is_stable_under_concurrent_writes(fhir: FhirHttp) -> None:
    rtype = "Substance"
    ids = [
        fhir.post(rtype, {"resourceType": rtype, "code": {"text": f"s{n}"}}).json()["id"] for n in range(4)
    ]
    page1 = fhir.get(f"{rtype}/_history", _count="2").json()
    fhir.post(rtype, {"resourceType": rtype, "code": {"text": "late"}})  # lands before page 1
    next_url = next(link["url"] for link in page1["link"] if link["relation"] == "next")
    page2 = fhir.get(next_url).json()
    got = [e["resource"]["id"] for e in page1["entry"] + page2["entry"]]
    assert got == ids[::-1]


def test_history_bad_parameters(fhir: FhirHttp) -> None:
    assert_outcome(fhir.get("_history", _since="not-a-date"), 400)
    assert_outcome(fhir.get("_history", _count="-1"), 400)
    assert_outcome(fhir.get("Patient/_history", _cursor="!!!"), 400)
    assert_outcome(fhir.get("_history", _at="2020"), 400)


# -- metadata -----------------------------------------------------------------------------
def test_capability_statement_is_truthful(fhir: FhirHttp) -> None:
    cs = fhir.get("metadata").json()
    assert cs["resourceType"] == "CapabilityStatement" and cs["fhirVersion"] == "4.0.1"
    rest = cs["rest"][0]
    assert len(rest["resource"]) == 146
    patient_caps = next(r for r in rest["resource"] if r["type"] == "Patient")
    codes = {i["code"] for i in patient_caps["interaction"]}
    assert codes == {
        "read",
        "vread",
        "update",
        "patch",
        "delete",
        "history-instance",
        "history-type",
        "create",
        "search-type",
    }
    assert patient_caps["conditionalUpdate"] is True and patient_caps["conditionalDelete"] == "multiple"
    names = {p["name"] for p in patient_caps["searchParam"]}
    assert {"name", "birthdate", "identifier", "_id", "_lastUpdated"} <= names
    assert {"code": "history-system"} in rest["interaction"]
    assert {"code": "transaction"} in rest["interaction"] and {"code": "batch"} in rest["interaction"]


def test_create_ignores_even_an_invalid_client_id(fhir: FhirHttp) -> None:
    response = fhir.post("Patient", patient(id="not a valid id!"))
    assert response.status_code == 201 and response.json()["id"] != "not a valid id!"
