"""`rubric-judge query`, `export` and `leaderboard`: read the results database."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

DbOption = Annotated[Path | None, typer.Option("--db", help="Results database (default: $RUBRIC_JUDGE_DB, else ./rubric-judge.duckdb).")]


def query(
    sql: Annotated[str, typer.Argument(help='One read-only SQL statement, e.g. "SELECT * FROM leaderboard".')],
    db: DbOption = None,
    format: Annotated[str, typer.Option("--format", help="table | csv | json")] = "table",
) -> None:
    """Run read-only SQL on the results (tables: runs, samples, judge_calls, verdicts, metric_values,
    criteria, run_fields, labels, agreement_results; views: task_scores, dimension_scores, leaderboard, leaderboard_ci,
    metric_summary, accuracy_rates; table macros: leaderboard_bootstrap(), paired_bootstrap())."""
    from rubric_judge.store.db import default_db_path
    from rubric_judge.store.query import run_query

    names, rows = run_query(db or default_db_path(), sql)
    _print(names, rows, format)


def export(
    table: Annotated[str, typer.Option("--table", help="Table or view to export.")],
    out: Annotated[Path, typer.Option("--out", help="Output file: .parquet, .csv, .jsonl or .json.")],
    db: DbOption = None,
) -> None:
    """Export a table or view to Parquet, CSV or JSON Lines."""
    from rubric_judge.cli.output import stdout
    from rubric_judge.store.db import default_db_path
    from rubric_judge.store.query import export_table

    count = export_table(db or default_db_path(), table, out)
    stdout.print(f"wrote {count} rows of {table} to {out}")


ResamplesOption = Annotated[int, typer.Option("--resamples", help="Bootstrap resamples for the confidence intervals.")]
SeedOption = Annotated[int, typer.Option("--seed", help="Seed of the bootstrap: the same seed gives the same intervals.")]
LevelOption = Annotated[float, typer.Option("--level", help="Coverage of the confidence intervals, between 0 and 1.")]


def leaderboard(
    db: DbOption = None,
    rubric: Annotated[str | None, typer.Option("--rubric", help="Only this rubric id.")] = None,
    resamples: ResamplesOption = 1000,
    seed: SeedOption = 0,
    level: LevelOption = 0.95,
) -> None:
    """Scores of every model per rubric: overall and per dimension, with confidence intervals and
    coverage counts.

    ci_low/ci_high: percentile bootstrap over samples (a sample's replicates averaged first),
    seeded so the same --seed gives the same interval. Pass_rate rubrics add their accuracy rate
    with its interval (acc_low/acc_high). `SELECT * FROM leaderboard_ci` (or the
    leaderboard_bootstrap macro) gives the same numbers in SQL.
    """
    from rubric_judge.store import stats
    from rubric_judge.store.db import default_db_path

    names, rows = stats.leaderboard(db or default_db_path(), stats.Bootstrap(resamples, seed, level), rubric)
    # Accuracy rates exist only for pass_rate rubrics; without any, the columns are noise.
    keep = [i for i, name in enumerate(names) if not name.startswith("accuracy_") or any(row[i] is not None for row in rows)]
    # Short headers for the coverage counts keep the table within a terminal's width.
    short = {"judge_model": "judge", "accuracy_rate": "accuracy", "accuracy_ci_low": "acc_low", "accuracy_ci_high": "acc_high", "samples_scored": "scored", "samples_excluded": "excluded", "missing_outputs": "missing", "unscored_verdicts": "unscored", "samples_total": "of"}
    _print([short.get(names[i], names[i]) for i in keep], [tuple(row[i] for i in keep) for row in rows], "table")
    _warn_incomplete(names, rows)


def _warn_incomplete(names: list[str], rows: list[tuple]) -> None:
    """A line under the table for each run that did not finish: its scores cover part of the work."""
    from rich.markup import escape

    from rubric_judge.cli.output import stdout

    column = {name: names.index(name) for name in ("rubric_id", "model_name", "judge_model", "dimension", "status", "samples_scored", "samples_total")}
    for row in rows:
        if row[column["dimension"]] == "overall" and row[column["status"]] != "finished":
            stdout.print(f"[yellow]{escape(row[column['model_name']])} ({escape(row[column['rubric_id']])}, judge {escape(row[column['judge_model']])}): "
                         f"run {row[column['status']]}; its scores cover {row[column['samples_scored']]} of {row[column['samples_total']]} "
                         "samples (incomplete)[/]")


def _print(names: list[str], rows: list[tuple], format: str) -> None:
    import csv
    import sys

    from rubric_judge.cli.output import stdout
    from rubric_judge.errors import UserError

    if format == "json":
        sys.stdout.write(json.dumps([dict(zip(names, row, strict=True)) for row in rows], default=str, indent=1) + "\n")
    elif format == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(names)
        writer.writerows(rows)
    elif format == "table":
        from rich.table import Table

        table = Table()
        for name in names:
            table.add_column(name, overflow="fold")
        for row in rows:
            table.add_row(*("" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v) for v in row))
        stdout.print(table)
        stdout.print(f"[dim]{len(rows)} row(s)[/]")
    else:
        raise UserError(f"--format must be table, csv or json, not {format!r}")


def rates(
    db: DbOption = None,
    model: Annotated[str | None, typer.Option("--model", help="Only this model.")] = None,
    by: Annotated[str | None, typer.Option("--by", help="Only this breakdown: overall | category | modality | paper_task.")] = None,
) -> None:
    """Accuracy rates (%) per format, modality and task: MedGEN-Bench's Table 3 layout.

    Judge pass rate (overall score >= threshold) and each metric's pass rate; a blank cell means
    no sample of that group was rated (e.g. SSIM for VQA, or a metric whose weights are absent).
    """
    from rich.table import Table

    from rubric_judge.cli.output import stdout
    from rubric_judge.store.db import default_db_path
    from rubric_judge.store.medgen_tables import table3

    rows = [r for r in table3(db or default_db_path(), model_name=model) if by is None or r["by"] == by]
    fixed = {"run_id", "model_name", "rubric_id", "status", "by", "group", "samples", "judge", "judge_samples"}
    metrics = sorted({k for r in rows for k in r if k not in fixed and not k.endswith("_samples")})
    table = Table(title="Accuracy rates (%)", title_justify="left")
    for column in ("model", "rubric", "by", "group", "samples", "judge", *metrics):
        table.add_column(column, justify="left" if column in ("model", "rubric", "by", "group") else "right")
    for r in rows:
        cells = [r["judge"], *(r.get(m) for m in metrics)]
        table.add_row(r["model_name"], r["rubric_id"], r["by"], str(r["group"]), str(r["samples"]), *("" if v is None else f"{100 * v:.2f}" for v in cells))
    stdout.print(table)
    for r in rows:
        if r["by"] == "overall" and r["status"] != "finished":
            stdout.print(f"[yellow]{r['model_name']} ({r['rubric_id']}): run {r['status']}; the judge rated {r['judge_samples']} of "
                         f"{r['samples']} samples (incomplete)[/]")
