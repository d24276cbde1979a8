"""Analytics over the lake: SQL (Athena in AWS, DuckDB locally), the shipped example queries, and trends.

- ``engine``: the ``SqlEngine`` interface, ``QueryResult``, the read-only guard and ``engine_from_env``;
- ``athena``: the cloud engine; ``duckdb_engine`` + ``dialect`` + ``hive_types``: the local engine (dev
  dependencies duckdb and sqlglot: never imported in a Lambda);
- ``queries``: ``fhirlake/data/queries/*.sql``;
- ``trends`` (chart model, patient progression, population trend) and ``charts`` (PNG, HTML);
- ``api``: the ``/_analytics`` endpoints behind ``handlers.analytics``; ``cli``: ``fhirlake sql|trend``.
"""
