"""The analytics lake: every resource version as Parquet in S3, catalogued in Glue for Athena (and DuckDB).

- ``schema``: one deterministic nested Arrow schema per R4 resource type, with its Hive and Trino types;
- ``rows``: versions -> rows (leading columns, ``patient_id`` from the Patient compartment, elements,
  ``resource_json``); ``viewdefs``: SQL on FHIR ViewDefinition rows per version;
- ``writer``: one Parquet file per table and batch, the Glue tables and current-state views;
- ``stream``: a DynamoDB stream batch -> the writer, with partial-failure reporting;
- ``maintenance``: compaction, GDPR erasure of one patient, backfill from the table;
- ``storage``: the S3 and Glue adapters; ``bootstrap``: wiring from the environment; ``cli``: commands.

Design and trade-offs: docs/architecture.md, "Analytics lake". Needs the ``lake`` extra (pyarrow).
"""
