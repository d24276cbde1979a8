"""Glue tables and views: created once, safe when several lake writers (processes) race, updated on change."""

from __future__ import annotations

import boto3
import pyarrow as pa
from fhirlake.lake.storage import GlueCatalog, view_sql
from fhirlake.local.provision import Provisioned

SCHEMA = pa.schema([("id", pa.string()), ("code", pa.struct([("text", pa.string())]))])


def test_concurrent_writers_agree_and_a_new_definition_updates_the_table(aws: Provisioned) -> None:
    glue = boto3.client("glue")
    first, second = GlueCatalog(glue, aws.glue_database), GlueCatalog(glue, aws.glue_database)
    first.ensure_table("basic_history", SCHEMA, "s3://lake/tables/basic_history/")
    second.ensure_table("basic_history", SCHEMA, "s3://lake/tables/basic_history/")  # AlreadyExists: fine
    first.ensure_view("basic", "SELECT id, code FROM basic_history", SCHEMA)
    second.ensure_view("basic", "SELECT id, code FROM basic_history", SCHEMA)
    tables = first.tables()
    assert sorted(tables) == ["basic", "basic_history"]
    assert [c["Type"] for c in tables["basic_history"]["StorageDescriptor"]["Columns"]] == [
        "string",
        "struct<text:string>",
    ]
    assert view_sql(tables["basic"]["ViewOriginalText"]) == "SELECT id, code FROM basic_history"

    wider = SCHEMA.append(pa.field("deleted", pa.bool_()))
    second.ensure_table("basic_history", wider, "s3://lake/tables/basic_history/")  # a newer code version
    columns = glue.get_table(DatabaseName=aws.glue_database, Name="basic_history")["Table"][
        "StorageDescriptor"
    ]
    assert [c["Name"] for c in columns["Columns"]] == ["id", "code", "deleted"]


def test_a_process_asks_glue_once_per_definition(aws: Provisioned) -> None:
    calls: list[str] = []
    glue = boto3.client("glue")
    glue.meta.events.register("before-call.glue.*", lambda model, **_: calls.append(model.name))
    catalog = GlueCatalog(glue, aws.glue_database)
    for _ in range(3):
        catalog.ensure_table("basic_history", SCHEMA, "s3://lake/tables/basic_history/")
    assert calls == ["CreateTable"]
