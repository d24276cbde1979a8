"""A small lake built exactly as the analytics contract describes it, for the SQL engine tests.

Real Synthea resources (four patients) are flattened here by hand, independently of the lake and views
code under test: Parquet files in (moto) S3, one Glue EXTERNAL_TABLE ``{t}_history`` per resource type
and ViewDefinition, and Athena "Presto views" (base64 JSON in ViewOriginalText) for the current state.
The same resources give the tests their expected answers, computed in Python.
"""

from __future__ import annotations

import base64
import copy
import gzip
import io
import json
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from fhirlake import topology

DATABASE = topology.ANALYTICS_CATALOG.local_name
BUCKET = topology.LAKE_BUCKET.local_name
PATIENT_BUNDLES = (
    "Louis_Maggio_2e275d4b-855a-4eb2-9021-5410aa8acd4f.json.gz",  # diabetes, HbA1c, BMI
    "Estrella_Daugherty_ecc5586f-45d1-4fb2-bb4c-3fce1b7b4456.json.gz",  # diabetes + prediabetes
    "Fatima_Windler_dabca07d-bdd5-4668-9b3c-dd7567b8fce5.json.gz",  # prediabetes
    "Robby_Becker_69097ac3-9a4c-463b-89f6-72a392f437b4.json.gz",  # prediabetes
)
TYPES = ("Patient", "Condition", "Observation", "MedicationRequest")
LAST_UPDATED = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


def synthea_resources(shared_data: Path) -> list[dict[str, Any]]:
    """The four patients' Patient/Condition/Observation/MedicationRequest resources, with the bundles'
    ``urn:uuid:`` references resolved to ``Type/id`` as a FHIR transaction would."""
    resources: list[dict[str, Any]] = []
    for name in PATIENT_BUNDLES:
        bundle = json.loads(
            gzip.decompress((shared_data / "synthea" / "smart-generated-sample-data-r4" / name).read_bytes())
        )
        targets = {
            e["fullUrl"]: f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in bundle["entry"]
        }
        for entry in bundle["entry"]:
            if entry["resource"]["resourceType"] in TYPES:
                resources.append(_resolve(entry["resource"], targets))
    return resources


def _resolve(node: Any, targets: dict[str, str]) -> Any:
    if isinstance(node, dict):
        return {
            k: targets.get(v, v) if k == "reference" and isinstance(v, str) else _resolve(v, targets)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_resolve(v, targets) for v in node]
    return node


def patient_key(resource: dict[str, Any]) -> str | None:
    if resource["resourceType"] == "Patient":
        return resource["id"]
    reference = (resource.get("subject") or resource.get("patient") or {}).get("reference", "")
    return reference.split("/", 1)[1] if reference.startswith("Patient/") else None


@dataclass
class Version:
    resource_type: str
    id: str
    version_id: int
    resource: dict[str, Any] | None  # None: a delete tombstone
    patient_id: str | None
    last_updated: datetime = LAST_UPDATED


@dataclass
class FixtureLake:
    """What was written, so tests can compute expectations from the same data."""

    versions: list[Version] = field(default_factory=list)

    def current(self, resource_type: str) -> list[dict[str, Any]]:
        latest: dict[str, Version] = {}
        for version in self.versions:
            newer = version.id not in latest or version.version_id > latest[version.id].version_id
            if version.resource_type == resource_type and newer:
                latest[version.id] = version
        return [v.resource for v in latest.values() if v.resource is not None]


def versions_with_changes(resources: list[dict[str, Any]]) -> list[Version]:
    """Version 1 of every resource, plus an update (one HbA1c value changed) and a delete (one prediabetes
    Condition), so the current-state views must pick the newest version and drop deleted resources."""
    versions = [Version(r["resourceType"], r["id"], 1, r, patient_key(r)) for r in resources]
    hba1c = next(r for r in resources if r["resourceType"] == "Observation" and _code(r) == "4548-4")
    updated = copy.deepcopy(hba1c)
    updated["valueQuantity"]["value"] = 9.9
    later = datetime(2024, 3, 2, tzinfo=UTC)
    versions.append(Version("Observation", hba1c["id"], 2, updated, patient_key(hba1c), later))
    prediabetes = next(r for r in resources if r["resourceType"] == "Condition" and _code(r) == "15777000")
    versions.append(Version("Condition", prediabetes["id"], 2, None, patient_key(prediabetes), later))
    return versions


def _code(resource: dict[str, Any]) -> str | None:
    return ((resource.get("code") or {}).get("coding") or [{}])[0].get("code")


# -- flat views: the contract's columns, extracted by hand --------------------------------------------
def _first_coding(concept: dict[str, Any] | None) -> dict[str, Any]:
    return ((concept or {}).get("coding") or [{}])[0]


def _ref_id(reference: dict[str, Any] | None) -> str | None:
    value = (reference or {}).get("reference")
    return value.split("/", 1)[1] if value and "/" in value else None


def _patient_row(r: dict[str, Any]) -> dict[str, Any]:
    name = (r.get("name") or [{}])[0]
    address = (r.get("address") or [{}])[0]
    return {
        "id": r["id"],
        "gender": r.get("gender"),
        "birth_date": r.get("birthDate"),
        "deceased": bool(r.get("deceasedBoolean") or r.get("deceasedDateTime")),
        "family": name.get("family"),
        "given": " ".join(name.get("given") or []) or None,
        "city": address.get("city"),
        "state": address.get("state"),
        "country": address.get("country"),
        "postal_code": address.get("postalCode"),
    }


def _condition_row(r: dict[str, Any]) -> dict[str, Any]:
    coding = _first_coding(r.get("code"))
    return {
        "id": r["id"],
        "patient_id": _ref_id(r.get("subject")),
        "code_system": coding.get("system"),
        "code": coding.get("code"),
        "display": coding.get("display"),
        "clinical_status": _first_coding(r.get("clinicalStatus")).get("code"),
        "verification_status": _first_coding(r.get("verificationStatus")).get("code"),
        "onset_datetime": r.get("onsetDateTime"),
        "abatement_datetime": r.get("abatementDateTime"),
        "recorded_date": r.get("recordedDate"),
        "encounter_id": _ref_id(r.get("encounter")),
    }


def _observation_row(r: dict[str, Any]) -> dict[str, Any]:
    coding = _first_coding(r.get("code"))
    quantity = r.get("valueQuantity") or {}
    return {
        "id": r["id"],
        "patient_id": _ref_id(r.get("subject")),
        "status": r.get("status"),
        "category": _first_coding((r.get("category") or [None])[0]).get("code"),
        "code_system": coding.get("system"),
        "code": coding.get("code"),
        "display": coding.get("display"),
        "effective_datetime": r.get("effectiveDateTime"),
        "value_quantity": float(quantity["value"]) if "value" in quantity else None,
        "value_unit": quantity.get("unit"),
        "value_code": _first_coding(r.get("valueCodeableConcept")).get("code"),
        "value_string": r.get("valueString"),
    }


def _medication_row(r: dict[str, Any]) -> dict[str, Any]:
    coding = _first_coding(r.get("medicationCodeableConcept"))
    return {
        "id": r["id"],
        "patient_id": _ref_id(r.get("subject")),
        "status": r.get("status"),
        "intent": r.get("intent"),
        "medication_code": coding.get("code"),
        "medication_display": coding.get("display"),
        "authored_on": r.get("authoredOn"),
        "encounter_id": _ref_id(r.get("encounter")),
    }


FLAT_VIEWS: dict[str, tuple[str, Callable[[dict[str, Any]], dict[str, Any]], pa.Schema]] = {
    "patient_demographics": (
        "Patient",
        _patient_row,
        pa.schema(
            [
                (c, pa.bool_() if c == "deceased" else pa.string())
                for c in (
                    "id",
                    "gender",
                    "birth_date",
                    "deceased",
                    "family",
                    "given",
                    "city",
                    "state",
                    "country",
                    "postal_code",
                )
            ]
        ),
    ),
    "conditions": (
        "Condition",
        _condition_row,
        pa.schema(
            [
                (c, pa.string())
                for c in (
                    "id",
                    "patient_id",
                    "code_system",
                    "code",
                    "display",
                    "clinical_status",
                    "verification_status",
                    "onset_datetime",
                    "abatement_datetime",
                    "recorded_date",
                    "encounter_id",
                )
            ]
        ),
    ),
    "observations": (
        "Observation",
        _observation_row,
        pa.schema(
            [
                (c, pa.float64() if c == "value_quantity" else pa.string())
                for c in (
                    "id",
                    "patient_id",
                    "status",
                    "category",
                    "code_system",
                    "code",
                    "display",
                    "effective_datetime",
                    "value_quantity",
                    "value_unit",
                    "value_code",
                    "value_string",
                )
            ]
        ),
    ),
    "medication_requests": (
        "MedicationRequest",
        _medication_row,
        pa.schema(
            [
                (c, pa.string())
                for c in (
                    "id",
                    "patient_id",
                    "status",
                    "intent",
                    "medication_code",
                    "medication_display",
                    "authored_on",
                    "encounter_id",
                )
            ]
        ),
    ),
}


# -- types ------------------------------------------------------------------------------------------
def hive_type(t: pa.DataType) -> str:
    if pa.types.is_struct(t):
        return "struct<" + ",".join(f"{f.name}:{hive_type(f.type)}" for f in t) + ">"
    if pa.types.is_list(t):
        return f"array<{hive_type(t.value_type)}>"
    if pa.types.is_timestamp(t):
        return "timestamp"
    if pa.types.is_null(t):
        return "string"
    return {pa.string(): "string", pa.int64(): "bigint", pa.float64(): "double", pa.bool_(): "boolean"}[t]


def trino_type(t: pa.DataType) -> str:
    if pa.types.is_struct(t):
        return "row(" + ", ".join(f"{f.name} {trino_type(f.type)}" for f in t) + ")"
    if pa.types.is_list(t):
        return f"array({trino_type(t.value_type)})"
    if pa.types.is_timestamp(t):
        return "timestamp(3)"
    return {"string": "varchar", "bigint": "bigint", "double": "double", "boolean": "boolean"}[hive_type(t)]


def presto_view_text(sql: str, columns: list[tuple[str, str]], database: str = DATABASE) -> str:
    payload = {
        "originalSql": sql,
        "catalog": "awsdatacatalog",
        "schema": database,
        "columns": [{"name": n, "type": t} for n, t in columns],
    }
    return "/* Presto View: " + base64.b64encode(json.dumps(payload).encode()).decode() + " */"


# -- writing ----------------------------------------------------------------------------------------
class LakeWriter:
    def __init__(self, s3: Any, glue: Any, database: str = DATABASE, bucket: str = BUCKET) -> None:
        self.s3, self.glue, self.database, self.bucket = s3, glue, database, bucket
        existing = {d["Name"] for d in glue.get_databases()["DatabaseList"]}
        if database not in existing:
            glue.create_database(DatabaseInput={"Name": database})

    def put_parquet(self, key: str, table: pa.Table) -> None:
        sink = io.BytesIO()
        pq.write_table(table, sink)
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=sink.getvalue())

    def external_table(self, name: str, schema: pa.Schema) -> None:
        self._put_table(
            {
                "Name": name,
                "TableType": "EXTERNAL_TABLE",
                "Parameters": {"classification": "parquet", "EXTERNAL": "TRUE"},
                "StorageDescriptor": {
                    "Columns": [{"Name": f.name, "Type": hive_type(f.type)} for f in schema],
                    "Location": f"s3://{self.bucket}/{name}/",
                    "InputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
                    "OutputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
                    "SerdeInfo": {
                        "SerializationLibrary": "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
                    },
                },
            }
        )

    def presto_view(self, name: str, sql: str, columns: list[tuple[str, pa.DataType]]) -> None:
        self._put_table(
            {
                "Name": name,
                "TableType": "VIRTUAL_VIEW",
                "Parameters": {"presto_view": "true", "comment": "Presto View"},
                "ViewOriginalText": presto_view_text(
                    sql, [(n, trino_type(t)) for n, t in columns], self.database
                ),
                "ViewExpandedText": "/* Presto View */",
                "StorageDescriptor": {"Columns": [{"Name": n, "Type": hive_type(t)} for n, t in columns]},
            }
        )

    def _put_table(self, table_input: dict[str, Any]) -> None:
        try:
            self.glue.create_table(DatabaseName=self.database, TableInput=table_input)
        except self.glue.exceptions.AlreadyExistsException:
            self.glue.update_table(DatabaseName=self.database, TableInput=table_input)

    def write_resource_type(self, resource_type: str, versions: Iterable[Version]) -> None:
        """``{t}_history`` in two Parquet files whose schemas differ (elements missing from the first
        half), and the ``{t}`` current-state view."""
        rows = [self._history_row(v) for v in versions]
        name = resource_type.lower()
        columns = ["id", "version_id", "last_updated", "patient_id", "deleted"]
        elements = sorted({k for row in rows for k in row} - {*columns, "resource_json"})
        full = _table(rows, [*columns, *elements, "resource_json"])
        half = len(rows) // 2
        for number, part in enumerate((rows[:half], rows[half:])):
            present = [c for c in full.column_names if any(c in row for row in part)]
            self.put_parquet(f"{name}_history/part-{number}.parquet", _table(part, present))
        self.external_table(f"{name}_history", full.schema)
        visible = [f for f in full.schema if f.name != "deleted"]
        listed = ", ".join(f'"{f.name}"' for f in visible)
        sql = (
            f"SELECT {listed} FROM (SELECT *, "
            "row_number() OVER (PARTITION BY id ORDER BY version_id DESC) AS rn "
            f"FROM {self.database}.{name}_history) WHERE rn = 1 AND NOT deleted"
        )
        self.presto_view(name, sql, [(f.name, f.type) for f in visible])

    def write_flat_view(self, view: str, versions: Iterable[Version]) -> None:
        resource_type, extract, schema = FLAT_VIEWS[view]
        rows = []
        for v in versions:
            if v.resource_type != resource_type:
                continue
            bookkeeping = {
                "_resource_id": v.id,
                "_version_id": v.version_id,
                "_last_updated": v.last_updated,
                "_deleted": v.resource is None,
            }
            rows.append({**(extract(v.resource) if v.resource else {}), **bookkeeping})
        history_schema = pa.schema(
            [
                *schema,
                ("_resource_id", pa.string()),
                ("_version_id", pa.int64()),
                ("_last_updated", pa.timestamp("ms", tz="UTC")),
                ("_deleted", pa.bool_()),
            ]
        )
        self.put_parquet(f"{view}_history/part-0.parquet", pa.Table.from_pylist(rows, schema=history_schema))
        self.external_table(f"{view}_history", history_schema)
        sql = (
            f"SELECT {', '.join(schema.names)} FROM {view}_history h "
            f"WHERE NOT h._deleted AND h._version_id = "
            f"(SELECT max(x._version_id) FROM {view}_history x WHERE x._resource_id = h._resource_id)"
        )
        self.presto_view(view, sql, [(f.name, f.type) for f in schema])

    @staticmethod
    def _history_row(version: Version) -> dict[str, Any]:
        row: dict[str, Any] = {
            "id": version.id,
            "version_id": version.version_id,
            "last_updated": version.last_updated,
            "patient_id": version.patient_id,
            "deleted": version.resource is None,
        }
        if version.resource is not None:
            row |= {k: v for k, v in version.resource.items() if k not in ("resourceType", "id")}
            row["resource_json"] = json.dumps(version.resource)
        return row


def _table(rows: list[dict[str, Any]], columns: list[str]) -> pa.Table:
    return pa.Table.from_pylist([{c: row.get(c) for c in columns} for row in rows])


def build_lake(s3: Any, glue: Any, shared_data: Path) -> FixtureLake:
    lake = FixtureLake(versions_with_changes(synthea_resources(shared_data)))
    writer = LakeWriter(s3, glue)
    by_type: dict[str, list[Version]] = defaultdict(list)
    for version in lake.versions:
        by_type[version.resource_type].append(version)
    for resource_type, versions in by_type.items():
        writer.write_resource_type(resource_type, versions)
    for view in FLAT_VIEWS:
        writer.write_flat_view(view, lake.versions)
    return lake
