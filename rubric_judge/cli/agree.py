"""`rubric-judge agree`: how far to trust the judge."""

from __future__ import annotations

from typing import Annotated

import typer

from rubric_judge.cli.query import DbOption, LevelOption, ResamplesOption, SeedOption


def command(
    runs: Annotated[list[str] | None, typer.Argument(help="Run ids (or model names); default: the database's only judged run.")] = None,
    labels: Annotated[bool, typer.Option("--labels", help="Only the judge-vs-expert statistics (an error when no labels apply).")] = False,
    by: Annotated[str, typer.Option("--by", help="overall | dimension | criterion | category")] = "overall",
    resamples: ResamplesOption = 1000,
    seed: SeedOption = 0,
    level: LevelOption = 0.95,
    format: Annotated[str, typer.Option("--format", help="table | csv | json")] = "table",
    store: Annotated[bool, typer.Option("--store/--no-store", help="Also keep the rows in the agreement_results table for SQL.")] = True,
    db: DbOption = None,
) -> None:
    """Agreement of the judge with expert labels (`labels import`), with other runs, with its own
    replicates and with its bias probes, each with a bootstrap interval over samples.

    balanced_f1: HealthBench's class-balanced F1 (met and not-met F1 averaged); cohen_kappa with
    the rater's base_rate beside it; krippendorff_alpha over the raters without and with the
    judge; flip_rate: share of paired verdicts that differ. The judge is trustworthy where its
    rows sit inside the experts' own leave-one-out baseline. Unscored verdicts are left out.
    """
    from rubric_judge.cli.output import stderr, stdout
    from rubric_judge.cli.query import _print
    from rubric_judge.errors import UserError
    from rubric_judge.store.agreement import COLUMNS, FORMATS, agree
    from rubric_judge.store.db import default_db_path

    if format not in FORMATS:
        raise UserError(f"--format must be table, csv or json, not {format!r}")
    path = db or default_db_path()
    if not path.exists():
        raise UserError(f"database {path} does not exist; run `rubric-judge score` first or pass --db")
    frame = agree(path, runs or None, by, resamples, seed, level, labels_only=labels, store=store)
    rows = [tuple(None if value != value else value for value in row) for row in frame.itertuples(index=False)]  # NaN -> empty
    summary = f"{len(rows)} statistics; {resamples} resamples over samples, seed {seed}, {100 * level:g} % intervals"
    if format == "table":
        # `compared` already names the rater or run; the options are the same on every row.
        hidden = {"rater", "other_run_id", "with_judge", "resamples", "seed", "ci_level"}
        if len({row[COLUMNS.index("run_id")] for row in rows}) <= 1:
            hidden.add("run_id")
        shown = [i for i, name in enumerate(COLUMNS) if name not in hidden]
        _print([COLUMNS[i] for i in shown], [tuple(row[i] for i in shown) for row in rows], format)
        stdout.print(summary, markup=False)
    else:
        _print(list(COLUMNS), rows, format)
        stderr.print(summary, markup=False)
