"""`rubric-judge labels import`: expert labels for `rubric-judge agree`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rubric_judge.cli.query import DbOption

labels_app = typer.Typer(
    help="Expert labels: import them to measure how far the judge agrees with experts (`rubric-judge agree`).",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)


@labels_app.command("import")
def import_command(
    file: Annotated[Path, typer.Argument(help="JSON Lines: sample_id, criterion_id (binary rubrics) or dimension (scale rubrics), rater_id, label, optional note.")],
    rubric: Annotated[str | None, typer.Option("--rubric", help="Rubric id the labels are for (default: any rubric in the database).")] = None,
    db: DbOption = None,
) -> None:
    """Import expert labels, one a line: label true/false for a criterion, an integer on the
    scale for a scale rubric's dimension. Every bad line is reported with its line number and
    nothing is written; importing the same file again replaces its labels."""
    from rubric_judge.cli.output import stdout
    from rubric_judge.store.db import default_db_path
    from rubric_judge.store.labels import import_labels

    path = db or default_db_path()
    result = import_labels(path, file, rubric)
    replaced = f", replacing {result.replaced} from an earlier import of this file" if result.replaced else ""
    stdout.print(f"imported {result.labels} labels from {result.raters} raters on {result.samples} samples into {path}{replaced}", markup=False)
