"""DuckDB results: schema, idempotent writes, scoring views, read-only queries and export."""
