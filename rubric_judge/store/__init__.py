"""The results database (DuckDB): numbered schema migrations, idempotent writes, scoring views and
statistics in SQL, read-only queries and export, and the results API (DataFrames)."""
