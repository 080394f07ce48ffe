"""Read-only access to the results database for `query`, `export` and `leaderboard`.

Queries run on a read-only DuckDB connection, and statements that write (or read files, or
write them with COPY) are refused up front with a clear message rather than a DuckDB error.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from rubric_judge.errors import UserError
from rubric_judge.store.db import connect

# DuckDB's read-only mode already blocks writes to the database; COPY ... TO, EXPORT,
# ATTACH and INSTALL/LOAD could still touch files or extensions, so refuse them too.
_REFUSED = re.compile(r"^\s*(INSERT|UPDATE|DELETE|DROP|CREATE|ALTER|COPY|EXPORT|IMPORT|ATTACH|DETACH|INSTALL|LOAD|SET|PRAGMA|CALL|CHECKPOINT|VACUUM|TRUNCATE)\b", re.IGNORECASE)
EXPORT_TABLES = ("runs", "samples", "judge_calls", "verdicts", "metric_values", "task_scores", "dimension_scores", "leaderboard", "accuracy_rates")


def run_query(db: Path, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    statements = [s for s in sql.split(";") if s.strip()]
    if len(statements) != 1:
        raise UserError("give exactly one SQL statement")
    if _REFUSED.match(statements[0]) or re.search(r"\bCOPY\b|\bATTACH\b", statements[0], re.IGNORECASE):
        keyword = statements[0].split()[0].upper()
        raise UserError(f"`{keyword}` is refused: `rubric-judge query` is read-only; use `rubric-judge export` to write files")
    con = connect(db, read_only=True)
    try:
        import duckdb

        try:
            cursor = con.execute(statements[0])
        except duckdb.Error as exc:
            raise UserError(f"SQL error: {exc}") from None
        names = [d[0] for d in cursor.description] if cursor.description else []
        return names, cursor.fetchall()
    finally:
        con.close()


def export_table(db: Path, table: str, out: Path) -> int:
    if table not in EXPORT_TABLES:
        raise UserError(f"unknown table {table!r}; choose one of {', '.join(EXPORT_TABLES)}")
    formats = {".parquet": "(FORMAT parquet)", ".csv": "(FORMAT csv, HEADER true)", ".jsonl": "(FORMAT json)", ".json": "(FORMAT json, ARRAY true)"}
    if out.suffix not in formats:
        raise UserError(f"--out must end in {', '.join(formats)}, not {out.suffix or '(no suffix)'}")
    con = connect(db, read_only=True)
    try:
        count = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        tmp = out.with_name(out.name + ".partial")
        literal = str(tmp).replace("'", "''")
        con.execute(f"COPY (SELECT * FROM {table}) TO '{literal}' {formats[out.suffix]}")
        tmp.replace(out)  # never leave a half-written file under the requested name
        return count
    finally:
        con.close()
