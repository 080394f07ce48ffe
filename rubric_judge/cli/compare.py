"""`rubric-judge compare`: is model A better than model B on the same tasks?"""

from __future__ import annotations

from typing import Annotated

import typer

from rubric_judge.cli.query import DbOption, LevelOption, ResamplesOption, SeedOption


def command(
    model_a: Annotated[str, typer.Argument(help="Model name (or run id) of run A.")],
    model_b: Annotated[str, typer.Argument(help="Model name (or run id) of run B.")],
    rubric: Annotated[str | None, typer.Option("--rubric", help="Rubric id, when the models were scored on several.")] = None,
    judge: Annotated[str | None, typer.Option("--judge", help="Judge model, when the models were scored by several.")] = None,
    db: DbOption = None,
    resamples: ResamplesOption = 1000,
    seed: SeedOption = 0,
    level: LevelOption = 0.95,
    format: Annotated[str, typer.Option("--format", help="table | csv | json")] = "table",
    allow_partial: Annotated[bool, typer.Option("--allow-partial", help="Compare even when a run did not finish (interrupted, stopped, failed); its unscored samples are left out of the pairing.")] = False,
) -> None:
    """Paired comparison of two models on one rubric: per dimension, the mean of A and of B over
    the samples scored in both runs, the difference A - B and its confidence interval.

    The interval is a seeded percentile bootstrap of the per-sample differences (a sample's
    replicates averaged first); an interval that excludes 0 means the difference is unlikely to
    be resampling noise. Pairing on the same tasks makes it narrower than two leaderboard
    intervals. Samples scored in only one of the runs are left out and counted (only_in_a,
    only_in_b). Same numbers in SQL: SELECT * FROM paired_bootstrap('<run id A>', '<run id B>').
    A run that did not finish is refused unless --allow-partial.
    """
    from rich.markup import escape

    from rubric_judge.cli.output import stderr, stdout
    from rubric_judge.cli.query import _print
    from rubric_judge.store import stats
    from rubric_judge.store.db import default_db_path

    options = stats.Bootstrap(resamples, seed, level)
    path = db or default_db_path()
    a, b = stats.find_pair(path, model_a, model_b, rubric, judge, allow_partial)
    for run in (a, b):
        if run.partial:  # asked for with --allow-partial: said on every comparison, never silent
            stderr.print(f"[yellow]partial run:[/] {escape(run.describe())}")
    names, rows = stats.paired(path, a, b, options)
    overall = next((dict(zip(names, row, strict=True)) for row in rows if row[0] == "overall"), None)
    summary = "no sample was scored in either run" if overall is None else (
        f"{overall['samples_paired']} samples paired; {overall['only_in_a']} scored only in A, {overall['only_in_b']} only in B "
        f"(overall; {resamples} resamples, seed {seed}, {100 * level:g} % intervals)")
    if format == "table":
        # Resamples, seed and level are the same on every row: the summary states them once.
        shown = [i for i, name in enumerate(names) if name not in ("resamples", "seed", "level")]
        stdout.print(f"A: {a.describe()}\nB: {b.describe()}", markup=False)
        _print([names[i] for i in shown], [tuple(row[i] for i in shown) for row in rows], format)
        stdout.print(summary, markup=False)
    else:
        _print(names, rows, format)
        stderr.print(summary, markup=False)  # csv and json on stdout stay machine-readable
