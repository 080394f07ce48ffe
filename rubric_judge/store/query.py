"""Read-only access to the results database for `query`, `export` and `leaderboard`.

`query` runs one statement, parsed by DuckDB itself, and only a SELECT (or EXPLAIN), on a
read-only connection with file system access switched off: it can neither change the
database nor read or write other files. Writing files is `export`'s job.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rubric_judge.errors import UserError
from rubric_judge.store.db import connect

EXPORT_TABLES = ("runs", "samples", "judge_calls", "verdicts", "metric_values", "criteria", "run_fields",
                 "task_scores", "dimension_scores", "leaderboard", "leaderboard_ci", "metric_summary", "accuracy_rates", "labels", "agreement_results")


def run_query(db: Path, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    import duckdb

    con = connect(db, read_only=True, external_access=False)
    try:
        try:
            statements = con.extract_statements(sql)
        except duckdb.Error as exc:
            raise UserError(f"SQL error: {exc}") from None
        if len(statements) != 1:
            raise UserError(f"give exactly one SQL statement (got {len(statements)})")
        kind = statements[0].type
        if kind not in (duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN):
            raise UserError(f"`{kind.name}` is refused: `rubric-judge query` is read-only and runs SELECT only; use `rubric-judge export` to write files")
        try:
            cursor = con.execute(sql)
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
