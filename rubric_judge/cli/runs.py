"""`rubric-judge runs`: the runs in a results database, with their status and history."""

from __future__ import annotations

from typing import Annotated

import typer

from rubric_judge.cli.query import DbOption

# What the table shows (csv and json give every column of the run_summary view).
TABLE_COLUMNS = {
    "run_id": "run", "status": "status", "rubric_id": "rubric", "rubric_version": "version", "rubric_digest": "digest",
    "model_name": "model", "judge_model": "judge", "role": "role", "coverage": "scored", "calls": "calls",
    "cached_calls": "cached", "paid_usd": "paid $", "started_at": "started",
}


def command(
    db: DbOption = None,
    include_superseded: Annotated[bool, typer.Option("--all", help="Also the runs superseded by a re-run with an edited rubric.")] = False,
    format: Annotated[str, typer.Option("--format", help="table | csv | json (csv and json: every column of the run_summary view)")] = "table",
) -> None:
    """List the runs: status, rubric content (digest), model, judge, coverage (samples scored of
    the samples in the manifest) and what the judge calls paid (cache hits cost nothing).

    A re-run whose rubric content changed keeps the earlier run, marked superseded (its
    superseded_by names the run now in its place); such runs are listed with --all, and `rubric-judge compare
    --run OLD --run NEW` (or `compare MODEL --previous`) shows what the edit changed. Same data in
    SQL: SELECT * FROM run_summary.
    """
    from rubric_judge.cli.output import stdout
    from rubric_judge.cli.query import _check_format, _print
    from rubric_judge.store.db import default_db_path
    from rubric_judge.store.query import list_runs

    _check_format(format)
    found = list_runs(db or default_db_path(), include_superseded=include_superseded)
    if format != "table":
        _print(found.names, found.rows, format, found.types)
        return
    rows = [dict(zip(found.names, row, strict=True)) for row in found.rows]
    shown = []
    for row in rows:
        row["coverage"] = f"{row['samples_scored']}/{row['samples_total']}"
        if row["superseded_by"]:
            row["status"] = f"{row['status']} (superseded)"
        row["rubric_digest"] = (row["rubric_digest"] or "")[:12]
        row["paid_usd"] = "unknown" if row["paid_usd"] is None else f"{row['paid_usd']:.4f}"
        row["started_at"] = str(row["started_at"])[:16]
        shown.append(tuple(row[name] for name in TABLE_COLUMNS))
    columns = list(TABLE_COLUMNS)
    if all(row["role"] == "run" for row in rows):  # panels and probes only: otherwise noise
        columns.remove("role")
    keep = [list(TABLE_COLUMNS).index(name) for name in columns]
    _print([TABLE_COLUMNS[name] for name in columns], [tuple(row[i] for i in keep) for row in shown], "table")
    if not include_superseded:
        superseded = _count_superseded(db or default_db_path())
        if superseded:
            stdout.print(f"[dim]{superseded} superseded run(s) not shown (--all lists them)[/]")


def _count_superseded(db) -> int:
    from rubric_judge.store.query import run_query

    return int(run_query(db, "SELECT count(*) FROM runs WHERE superseded_by IS NOT NULL")[1][0][0])
