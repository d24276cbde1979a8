"""The SQL engines: DuckDB over the fixture lake (moto S3 + Glue), Athena through botocore's Stubber (moto's
Athena never executes SQL), the read-only guard and the factory."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import boto3
import pyarrow as pa
import pytest
from botocore.stub import Stubber
from fhirlake import topology
from fhirlake.analytics.athena import AthenaEngine
from fhirlake.analytics.duckdb_engine import DuckDbEngine
from fhirlake.analytics.engine import QueryError, check_read_only, engine_from_env

from tests.analytics.conftest import Lake
from tests.analytics.lake_fixture import BUCKET, DATABASE, LakeWriter


# -- DuckDB ----------------------------------------------------------------------------------------
def test_a_query_loads_only_the_tables_it_reads(lake: Lake) -> None:
    engine = lake.engine()
    result = engine.run("SELECT count(*) AS n FROM patient")
    assert result.columns == ["n"]
    assert result.rows == [[4]]
    assert engine.loads == 1  # patient_history only: not the observation or condition tables

    engine.run("SELECT count(*) FROM patient")
    assert engine.loads == 1  # unchanged objects are not read again


def test_new_lake_files_are_visible_to_the_next_query(lake: Lake) -> None:
    engine = lake.engine()
    before = engine.run("SELECT count(*) FROM patient_demographics_history").rows[0][0]
    s3 = lake.session.client("s3")
    key = "patient_demographics_history/part-0.parquet"
    s3.put_object(
        Bucket=BUCKET,
        Key=key.replace("part-0", "part-1"),
        Body=s3.get_object(Bucket=BUCKET, Key=key)["Body"].read(),
    )
    try:
        assert engine.run("SELECT count(*) FROM patient_demographics_history").rows[0][0] == before * 2
    finally:
        s3.delete_object(Bucket=BUCKET, Key=key.replace("part-0", "part-1"))
    assert engine.run("SELECT count(*) FROM patient_demographics_history").rows[0][0] == before


def test_hive_partitions_become_columns(lake: Lake) -> None:
    writer = LakeWriter(lake.session.client("s3"), lake.session.client("glue"))
    for year, ids in ((2023, ["a", "b"]), (2024, ["c"])):
        writer.put_parquet(f"partitioned/year={year}/part.parquet", pa.table({"id": ids}))
    lake.session.client("glue").create_table(
        DatabaseName=DATABASE,
        TableInput={
            "Name": "partitioned",
            "TableType": "EXTERNAL_TABLE",
            "PartitionKeys": [{"Name": "year", "Type": "int"}],
            "StorageDescriptor": {
                "Columns": [{"Name": "id", "Type": "string"}],
                "Location": f"s3://{writer.bucket}/partitioned",
            },
        },
    )
    rows = lake.engine().run("SELECT year, count(*) FROM partitioned GROUP BY year ORDER BY year").rows
    assert rows == [[2023, 2], [2024, 1]]


def test_the_current_view_shows_newest_versions_without_deleted_resources(lake: Lake, duckdb_engine) -> None:
    history = duckdb_engine.run(
        "SELECT count(*), count_if(deleted), max(version_id) FROM condition_history"
    ).rows[0]
    current = duckdb_engine.run("SELECT count(*) FROM condition").rows[0][0]
    assert history[1] == 1 and history[2] == 2
    assert current == len(lake.data.current("Condition")) == history[0] - 2  # tombstone + its version 1


def test_struct_fields_missing_from_older_files_read_as_null(duckdb_engine) -> None:
    # The two Parquet files of each history table have different schemas; Glue's schema is their union.
    result = duckdb_engine.run(
        "SELECT count(*) FROM observation_history WHERE valueQuantity IS NULL AND NOT deleted"
    )
    assert result.rows[0][0] > 0


def test_show_tables_and_describe_come_from_the_catalog(duckdb_engine) -> None:
    tables = [row[0] for row in duckdb_engine.run("SHOW TABLES").rows]
    assert {"observation", "observation_history", "conditions", "patient_demographics"} <= set(tables)
    assert duckdb_engine.run("SHOW TABLES LIKE 'obs%'").rows == [
        ["observation"],
        ["observation_history"],
        ["observations"],
        ["observations_history"],
    ]
    described = duckdb_engine.run("DESCRIBE observations")
    assert described.columns == ["col_name", "data_type", "comment"]
    assert ["value_quantity", "double", ""] in described.rows


def test_max_rows_truncates_and_says_so(duckdb_engine) -> None:
    result = duckdb_engine.run("SELECT id FROM observation ORDER BY id", max_rows=5)
    assert len(result.rows) == 5 and result.truncated
    assert not duckdb_engine.run("SELECT id FROM patient", max_rows=5).truncated


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("SELECT * FROM nope", "Table nope does not exist in database fhirlake"),
        ("SELECT no_such_column FROM patient", "no_such_column"),
        ("SELECT FROM WHERE (", "SQL syntax error"),
        ("WITH x AS (SELECT 1 AS a) INSERT INTO patient_history SELECT * FROM x", "read-only"),
        # The local engine reads the lake only, never the machine's files.
        ("SELECT * FROM read_csv('/etc/hostname')", "disabled by configuration"),
    ],
)
def test_errors_are_clear_messages(duckdb_engine, sql: str, message: str) -> None:
    with pytest.raises(QueryError) as error:
        duckdb_engine.run(sql)
    assert message in error.value.message
    assert error.value.status == 400
    assert "\n" not in error.value.message and "LINE 1" not in error.value.message


def test_a_missing_database_is_reported(lake: Lake) -> None:
    engine = DuckDbEngine.from_session(lake.session, "no_such_database")
    with pytest.raises(QueryError) as error:
        engine.run("SELECT 1")
    assert error.value.status == 404


# -- the read-only guard ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1",
        "  with x AS (SELECT 1) SELECT * FROM x;",
        "(SELECT 1)",
        "-- a comment; with a semicolon\nSELECT ';' AS semi",
        "/* DROP TABLE x; */ SHOW TABLES",
        "DESCRIBE observation",
    ],
)
def test_read_only_statements_pass(sql: str) -> None:
    assert check_read_only(sql)


@pytest.mark.parametrize(
    "sql",
    [
        "DROP TABLE observation",
        "INSERT INTO observation SELECT * FROM observation",
        "CREATE TABLE x AS SELECT 1",
        "SELECT 1; DROP TABLE observation",
        "EXPLAIN ANALYZE INSERT INTO x SELECT 1",
        "UNLOAD (SELECT 1) TO 's3://x/' WITH (format = 'PARQUET')",
        "   ",
        "-- only a comment",
    ],
)
def test_everything_else_is_refused(sql: str) -> None:
    with pytest.raises(QueryError) as error:
        check_read_only(sql)
    assert error.value.status == 400


# -- the factory ------------------------------------------------------------------------------------
def test_the_engine_comes_from_the_environment(lake: Lake) -> None:
    catalog = topology.ANALYTICS_CATALOG
    local = engine_from_env({topology.ENV_SQL_ENGINE: "duckdb", catalog.env_var: DATABASE}, lake.session)
    assert local.name == "duckdb"
    cloud = engine_from_env({catalog.env_var: "db", catalog.workgroup_env_var: "wg"}, lake.session)
    assert isinstance(cloud, AthenaEngine)
    assert (cloud.database, cloud.workgroup) == ("db", "wg")
    with pytest.raises(QueryError):
        engine_from_env({topology.ENV_SQL_ENGINE: "sqlite"})


# -- Athena (Stubber) -------------------------------------------------------------------------------
class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def athena():
    client = boto3.client("athena", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def _engine(client, clock: FakeClock, timeout: float = 25.0) -> AthenaEngine:
    return AthenaEngine(
        client, "fhirlake", "fhirlake-wg", timeout_seconds=timeout, sleep=clock.sleep, clock=clock
    )


def _start(stubber: Stubber, sql: str, query_id: str = "q-1") -> None:
    stubber.add_response(
        "start_query_execution",
        {"QueryExecutionId": query_id},
        {
            "QueryString": sql,
            "QueryExecutionContext": {"Database": "fhirlake", "Catalog": "AwsDataCatalog"},
            "WorkGroup": "fhirlake-wg",
        },
    )


def _state(stubber: Stubber, state: str, statement_type: str = "DML", **status) -> None:
    stubber.add_response(
        "get_query_execution",
        {
            "QueryExecution": {
                "QueryExecutionId": "q-1",
                "StatementType": statement_type,
                "Status": {"State": state, **status},
            }
        },
        {"QueryExecutionId": "q-1"},
    )


def _cells(*values: str | None) -> dict:
    return {"Data": [{} if v is None else {"VarCharValue": v} for v in values]}


COLUMNS = [
    {"Name": "patient_id", "Type": "varchar"},
    {"Name": "n", "Type": "bigint"},
    {"Name": "mean", "Type": "double"},
    {"Name": "exact", "Type": "decimal", "Precision": 10, "Scale": 2},
    {"Name": "active", "Type": "boolean"},
    {"Name": "day", "Type": "date"},
    {"Name": "at", "Type": "timestamp(3) with time zone"},
]


def test_athena_runs_in_the_workgroup_polls_with_backoff_and_pages_typed_results(athena) -> None:
    client, stubber = athena
    clock = FakeClock()
    sql = "SELECT patient_id, n, mean, exact, active, day, at FROM t"
    _start(stubber, sql)
    _state(stubber, "QUEUED")
    _state(stubber, "RUNNING")
    _state(stubber, "RUNNING")
    _state(stubber, "SUCCEEDED")
    header = _cells(*[c["Name"] for c in COLUMNS])
    metadata = {"ColumnInfo": COLUMNS}
    stubber.add_response(
        "get_query_results",
        {
            "ResultSet": {
                "Rows": [
                    header,
                    _cells("p1", "3", "5.5", "1.50", "true", "2020-01-31", "2020-01-31 10:00:00.000 UTC"),
                ],
                "ResultSetMetadata": metadata,
            },
            "NextToken": "page-2",
        },
        {"QueryExecutionId": "q-1", "MaxResults": 1000},
    )
    stubber.add_response(
        "get_query_results",
        {
            "ResultSet": {
                "Rows": [_cells("p2", None, None, None, "false", None, None)],
                "ResultSetMetadata": metadata,
            }
        },
        {"QueryExecutionId": "q-1", "MaxResults": 1000, "NextToken": "page-2"},
    )

    result = _engine(client, clock).run(sql + ";")

    assert result.columns == [c["Name"] for c in COLUMNS]
    assert result.rows == [
        ["p1", 3, 5.5, Decimal("1.50"), True, date(2020, 1, 31), datetime(2020, 1, 31, 10, tzinfo=UTC)],
        ["p2", None, None, None, False, None, None],
    ]
    assert clock.sleeps == [0.2, 0.4, 0.8]


def test_athena_show_results_have_no_header_row(athena) -> None:
    client, stubber = athena
    _start(stubber, "SHOW TABLES")
    _state(stubber, "SUCCEEDED", statement_type="UTILITY")
    stubber.add_response(
        "get_query_results",
        {
            "ResultSet": {
                "Rows": [_cells("condition"), _cells("observation")],
                "ResultSetMetadata": {"ColumnInfo": [{"Name": "tab_name", "Type": "string"}]},
            }
        },
        {"QueryExecutionId": "q-1", "MaxResults": 1000},
    )
    assert _engine(client, FakeClock()).run("SHOW TABLES").rows == [["condition"], ["observation"]]


def test_athena_user_errors_are_400_with_athenas_reason(athena) -> None:
    client, stubber = athena
    _start(stubber, "SELECT * FROM nope")
    reason = "TABLE_NOT_FOUND: line 1:15: Table 'awsdatacatalog.fhirlake.nope' does not exist"
    _state(stubber, "FAILED", StateChangeReason=reason, AthenaError={"ErrorCategory": 2, "ErrorType": 1301})
    with pytest.raises(QueryError) as error:
        _engine(client, FakeClock()).run("SELECT * FROM nope")
    assert (error.value.status, error.value.message) == (400, reason)


def test_athena_internal_failures_and_cancellations(athena) -> None:
    client, stubber = athena
    _start(stubber, "SELECT 1")
    _state(stubber, "FAILED", StateChangeReason="Internal error", AthenaError={"ErrorCategory": 1})
    with pytest.raises(QueryError) as error:
        _engine(client, FakeClock()).run("SELECT 1")
    assert error.value.status == 502

    _start(stubber, "SELECT 1")
    _state(stubber, "CANCELLED", StateChangeReason="Query cancelled by user")
    with pytest.raises(QueryError) as error:
        _engine(client, FakeClock()).run("SELECT 1")
    assert error.value.status == 409


def test_athena_timeout_cancels_the_query(athena) -> None:
    client, stubber = athena
    clock = FakeClock()
    _start(stubber, "SELECT 1")
    for _ in range(4):  # 0.2 + 0.4 + 0.8 s slept, the next 1.6 s would pass the 2 s deadline
        _state(stubber, "RUNNING")
    stubber.add_response("stop_query_execution", {}, {"QueryExecutionId": "q-1"})
    with pytest.raises(QueryError) as error:
        _engine(client, clock, timeout=2.0).run("SELECT 1")
    assert error.value.status == 504
    assert "q-1" in error.value.message
    assert clock.now <= 2.0


def test_athena_refuses_writes_before_calling_aws(athena) -> None:
    client, _stubber = athena
    with pytest.raises(QueryError):
        _engine(client, FakeClock()).run("DROP TABLE observation")


def test_athena_max_rows_stops_paging(athena) -> None:
    client, stubber = athena
    _start(stubber, "SELECT n FROM t")
    _state(stubber, "SUCCEEDED")
    stubber.add_response(
        "get_query_results",
        {
            "ResultSet": {
                "Rows": [_cells("n"), _cells("1"), _cells("2"), _cells("3")],
                "ResultSetMetadata": {"ColumnInfo": [{"Name": "n", "Type": "integer"}]},
            },
            "NextToken": "more",
        },
        {"QueryExecutionId": "q-1", "MaxResults": 1000},
    )
    result = _engine(client, FakeClock()).run("SELECT n FROM t", max_rows=2)
    assert result.rows == [[1], [2]] and result.truncated
