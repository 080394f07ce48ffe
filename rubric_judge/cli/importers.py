"""`rubric-judge import ...`: turn a benchmark's own files into rubrics, datasets and runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

import_app = typer.Typer(
    help="Import benchmark files: IlluGenBench tasks and official verdicts, MedGEN-Bench records.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)

DbOption = Annotated[Path | None, typer.Option("--db", help="Results database (default: $RUBRIC_JUDGE_DB or ./rubric-judge.duckdb).")]
PromptField = Annotated[str | None, typer.Option("--prompt-field", help="The task's prompt field (default: the first of prompt, caption, text).")]


@import_app.command("illugenbench")
def illugenbench(
    bench: Annotated[Path, typer.Argument(help="The benchmark file (illubench.json): an object keyed by image file name, or a list of such objects.")],
    images: Annotated[Path, typer.Option("--images", help="Directory of reference images: <key>, falling back to <stem>.png.")],
    out: Annotated[Path, typer.Option("--out", help="Output directory: tasks/*.yaml, manifest.jsonl and references/ are written here.")],
    prompt_field: PromptField = None,
) -> None:
    """Write one task rubric per IlluGenBench task, a dataset manifest and the reference images.

    Score the result with `rubric-judge score OUT/tasks --data OUT/manifest.jsonl --outputs GEN_DIR`.
    """
    from rich.table import Table

    from rubric_judge.benchmarks.illugenbench import import_bench
    from rubric_judge.cli.output import print_warnings, stdout

    result = import_bench(bench, images, out, prompt_field)
    w = result.weights
    table = Table(title=f"IlluGenBench import: {result.tasks} tasks, {result.criteria:,} criteria", title_justify="left")
    table.add_column("what")
    table.add_column("count / value", justify="right")
    for dimension, count in result.by_dimension.items():
        table.add_row(f"criteria: {dimension}", f"{count:,}")
    for category, count in result.by_category.items():
        table.add_row(f"tasks: {category}", f"{count:,}")
    table.add_row("weight min / max / mean", f"{w.minimum:g} / {w.maximum:g} / {w.mean:.3f}")
    table.add_row("negative weights", f"{w.negative:,}")
    table.add_row("zero weights", f"{w.zero:,}")
    table.add_row("tasks without a positive weight", _flag(len(result.without_positive_weight)))
    table.add_row("missing reference images", _flag(len(result.missing_references)))
    table.add_row("unknown dimensions", _flag(len(result.unknown_dimensions)) + (f" ({', '.join(result.unknown_dimensions)})" if result.unknown_dimensions else ""))
    table.add_row("reference images placed (hard-linked)", f"{result.references:,} ({result.linked:,})")
    stdout.print(table)
    print_warnings(result.problems)
    stdout.print(f"task rubrics: {result.tasks_dir}\nmanifest: {result.manifest}")


@import_app.command("illugenbench-results")
def illugenbench_results(
    results: Annotated[Path, typer.Argument(help="Results file written by the official IlluGenBench evaluation script.")],
    bench: Annotated[Path, typer.Option("--bench", help="The benchmark file the results were produced with.")],
    model: Annotated[str, typer.Option("--model", help="Name of the model whose images were judged.")],
    db: DbOption = None,
    policy: Annotated[str, typer.Option("--policy", help="Runs to write: both, reference (official numbers) or default (missing = failed, unscored left out).")] = "both",
    prompt_field: PromptField = None,
    allow_mismatch: Annotated[bool, typer.Option("--allow-mismatch", help="Import even when criterion descriptions differ from the benchmark file.")] = False,
) -> None:
    """Load the official evaluation script's verdicts as runs, printed side by side.

    Rubric id `illugenbench@reference` (missing image skipped, missing verdict = Not Satisfied)
    reproduces the official numbers; `illugenbench` applies rubric-judge's defaults (missing
    image = failed task, missing verdict left out and counted). Judge: imported:<file name>.
    """
    from rich.table import Table

    from rubric_judge.benchmarks.illugenbench import REFERENCE_RUBRIC_ID, RUBRIC_ID, import_results
    from rubric_judge.cli.output import print_warnings, stdout
    from rubric_judge.errors import UserError
    from rubric_judge.store.db import default_db_path

    choices = {"both": ("reference", "default"), "reference": ("reference",), "default": ("default",)}
    if policy not in choices:
        raise UserError(f"--policy must be both, reference or default, not {policy!r}")
    result = import_results(results, bench, model, db or default_db_path(), choices[policy], prompt_field, allow_mismatch)
    print_warnings(result.problems)
    policies = [p for p in ("reference", "default") if p in result.scores]
    names = {"reference": f"{REFERENCE_RUBRIC_ID} (official)", "default": f"{RUBRIC_ID} (default)"}
    table = Table(title=f"{model} judged by {result.judge_model}: {result.tasks_with_results} of {result.tasks} tasks, "
                        f"{result.verdicts:,} verdicts, {result.unscored:,} unscored, {len(result.missing_outputs)} missing",
                  title_justify="left")
    table.add_column("dimension")
    for p in policies:
        table.add_column(names[p], justify="right")
    if len(policies) == 2:
        table.add_column("difference", justify="right")
    dims = list(dict.fromkeys(d for p in policies for d in result.scores[p]))
    for d in dims:
        values = [result.scores[p].get(d) for p in policies]
        cells = ["-" if v is None else f"{v:.4f}" for v in values]
        if len(values) == 2:
            cells.append("-" if None in values else f"{values[1] - values[0]:+.4f}")
        table.add_row(d, *cells)
    stdout.print(table)
    stdout.print(f"runs written to {result.db}: " + ", ".join(f"{p} {run_id}" for p, run_id in result.runs.items()))


@import_app.command("medgen")
def medgen(
    records: Annotated[Path, typer.Argument(help="MedGEN-Bench release: a JSON list (or JSONL) of records.")],
    images: Annotated[Path, typer.Option("--images", help="Directory the records' image paths are relative to.")],
    out: Annotated[Path, typer.Option("--out", help="Output directory for manifest.jsonl (and outputs.jsonl) and the images.")],
    responses: Annotated[Path | None, typer.Option("--responses", help="A model's responses by record id (JSON or JSONL).")] = None,
) -> None:
    """Convert a MedGEN-Bench release (and optionally a model's responses) into a dataset."""
    from rubric_judge.benchmarks.medgen import import_medgen
    from rubric_judge.cli.output import stdout

    result = import_medgen(records, images, out, responses)
    stdout.print(result.summary(), markup=False)


def _flag(count: int) -> str:
    return f"[yellow]{count:,}[/]" if count else "0"
