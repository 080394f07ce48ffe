"""The results database (DuckDB): numbered schema migrations, idempotent writes, scoring views and
statistics in SQL, read-only queries and export, and the results API (DataFrames)."""

# query and export's default for DuckDB's memory limit; here, so the CLI's option can name it
# without importing the store (and DuckDB) when it only shows --help.
DEFAULT_MEMORY_LIMIT = "2GB"
