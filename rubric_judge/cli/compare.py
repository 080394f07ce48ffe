"""`rubric-judge compare`: is model A better than model B on the same tasks? And what did an
edit of a rubric change (two versions of the rubric on the same model)?"""

from __future__ import annotations

from typing import Annotated

import typer

from rubric_judge.cli.query import DbOption, LevelOption, ResamplesOption, SeedOption

BY = ("dimension", "criterion")


def command(
    model_a: Annotated[str | None, typer.Argument(help="Model name (or run id) of run A.")] = None,
    model_b: Annotated[str | None, typer.Argument(help="Model name (or run id) of run B.")] = None,
    run: Annotated[list[str] | None, typer.Option("--run", help="A run id (or its start), given twice: A then B, current or superseded (see `rubric-judge runs --all`).")] = None,
    previous: Annotated[bool, typer.Option("--previous", help="Compare MODEL_A's current run (A) with the run it superseded (B): what the last rubric edit changed.")] = False,
    by: Annotated[str, typer.Option("--by", help="dimension (scores, bootstrap intervals) | criterion (each criterion's change and verdicts)")] = "dimension",
    rubric: Annotated[str | None, typer.Option("--rubric", help="Rubric id, when the models were scored on several.")] = None,
    judge: Annotated[str | None, typer.Option("--judge", help="Judge model, when the models were scored by several.")] = None,
    db: DbOption = None,
    resamples: ResamplesOption = 1000,
    seed: SeedOption = 0,
    level: LevelOption = 0.95,
    format: Annotated[str, typer.Option("--format", help="table | csv | json")] = "table",
    allow_partial: Annotated[bool, typer.Option("--allow-partial", help="Compare even when a run did not finish (interrupted, stopped, failed); its unscored samples are left out of the pairing.")] = False,
) -> None:
    """Paired comparison of two runs of one rubric: two models (MODEL_A MODEL_B), two versions of
    a rubric on one model (--run OLD --run NEW, or MODEL --previous), per dimension or per
    criterion.

    Per dimension: the mean of A and of B over the samples scored in both runs, the difference
    A - B and its confidence interval: a seeded percentile bootstrap of the per-sample
    differences (a sample's replicates averaged first); an interval that excludes 0 means the
    difference is unlikely to be resampling noise. Samples scored in only one of the runs are
    left out and counted (only_in_a, only_in_b). Same numbers in SQL: SELECT * FROM
    paired_bootstrap('<run id A>', '<run id B>').

    Per criterion (--by criterion): how each criterion changed between the runs (text, weight,
    dimension, added, removed), the share met (or mean score) in A and B over the samples
    judged in both, and how many verdicts changed. SQL: criterion_changes('<A>', '<B>').

    A run that did not finish is refused unless --allow-partial.
    """
    from rich.markup import escape

    from rubric_judge.cli.output import stderr, stdout
    from rubric_judge.cli.query import _check_format, _print
    from rubric_judge.errors import Location, Problem, UserError
    from rubric_judge.store import stats
    from rubric_judge.store.db import default_db_path

    _check_format(format)
    if by not in BY:
        raise UserError(Problem(Location(None), f"must be dimension or criterion, not {by!r}", field="--by"))
    options = stats.Bootstrap(resamples, seed, level)
    path = db or default_db_path()
    runs = run or []
    if runs:
        if len(runs) != 2 or model_a is not None or previous:
            raise UserError(Problem(Location(None), f"give --run exactly twice (A, then B) and no model names (got {len(runs)} --run)", field="--run",
                                    fix="e.g. rubric-judge compare --run <old run id> --run <new run id>"))
        a, b = stats.find_runs(path, runs[0], runs[1], allow_partial)
    elif previous:
        if model_a is None or model_b is not None:
            raise UserError(Problem(Location(None), "--previous compares one model's current run with its earlier version: give one model",
                                    field="--previous", fix="e.g. rubric-judge compare my-model --previous"))
        a, b = stats.find_previous(path, model_a, rubric, judge, allow_partial)
    else:
        if model_a is None or model_b is None:
            raise UserError(Problem(Location(None), "give two models (MODEL_A MODEL_B), two runs (--run A --run B), or one model with --previous",
                                    fix="list the runs with `rubric-judge runs --all`"))
        a, b = stats.find_pair(path, model_a, model_b, rubric, judge, allow_partial)
    for compared in (a, b):
        if compared.partial:  # asked for with --allow-partial: said on every comparison, never silent
            stderr.print(f"[yellow]partial run:[/] {escape(compared.describe())}")
    if a.rubric_id != b.rubric_id:
        stderr.print(f"[yellow]note:[/] the runs are of different rubrics ({escape(a.rubric_id)}, {escape(b.rubric_id)})")
    if by == "criterion":
        _print_criteria(path, a, b, format)
        return
    names, rows = stats.paired(path, a, b, options)
    overall = next((dict(zip(names, row, strict=True)) for row in rows if row[0] == "overall"), None)
    summary = "no sample was scored in either run" if overall is None else (
        f"{overall['samples_paired']} samples paired; {overall['only_in_a']} scored only in A, {overall['only_in_b']} only in B "
        f"(overall; {resamples} resamples, seed {seed}, {100 * level:g} % intervals)")
    if format == "table":
        # Resamples, seed and level are the same on every row: the summary states them once.
        shown = [i for i, name in enumerate(names) if name not in ("resamples", "seed", "level")]
        stdout.print(f"A: {a.describe()}\nB: {b.describe()}", markup=False)
        _print([names[i] for i in shown], [tuple(row[i] for i in shown) for row in rows], format, decimals=4)
        stdout.print(summary, markup=False)
        if a.model_name == b.model_name and a.rubric_digest != b.rubric_digest:
            changed = [row for row in stats.criterion_changes(path, a, b)[1] if row[2]]
            if changed:
                listed = ", ".join(f"{row[0]} ({row[2]})" for row in changed[:8]) + (", ..." if len(changed) > 8 else "")
                stdout.print(f"criteria that differ between the versions: {listed}; see --by criterion", markup=False)
    else:
        _print(names, rows, format)
        stderr.print(summary, markup=False)  # csv and json on stdout stay machine-readable


def _print_criteria(path, a, b, format: str) -> None:
    """The per-criterion comparison; the table leaves the texts to csv and json (too wide)."""
    from rubric_judge.cli.output import stdout
    from rubric_judge.cli.query import _print
    from rubric_judge.store import stats

    names, rows = stats.criterion_changes(path, a, b)
    if format != "table":
        _print(names, rows, format)
        return
    stdout.print(f"A: {a.describe()}\nB: {b.describe()}", markup=False)
    shown = [i for i, name in enumerate(names) if name not in ("text_a", "text_b")]
    _print([names[i] for i in shown], [tuple(row[i] for i in shown) for row in rows], format, decimals=4)
    edited = [dict(zip(names, row, strict=True)) for row in rows if row[names.index("text_a")] is not None]
    for row in edited[:10]:
        stdout.print(f"{row['criterion_id']}:\n  A: {row['text_a']}\n  B: {row['text_b']}", markup=False)
    if len(edited) > 10:
        stdout.print(f"... {len(edited) - 10} more edited criteria (--format json shows every text)", markup=False)
