"""`rubric-judge validate`: check rubric files and say exactly what is wrong and where."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def command(
    paths: Annotated[list[Path], typer.Argument(help="Rubric files or directories (searched recursively for *.yaml / *.yml).")],
    root: Annotated[Path | None, typer.Option(help="Directory that `extends` paths may not leave. Default: the directory given, or the file's own directory.")] = None,
) -> None:
    """Validate rubric files: YAML, schema, `extends`, templates. Exit code 2 on any error.

    Every problem is reported with file:line:column, the field, what was expected and a fix.
    """
    from rich.table import Table

    from rubric_judge.cli.output import print_problems, stdout
    from rubric_judge.errors import UserError
    from rubric_judge.rubrics.loader import discover, load_rubric_file

    table = Table(title="Rubrics", title_justify="left")
    for column in ("file", "id", "ver", "task", "dims", "crit", "verdict", "scoring", "status"):
        table.add_column(column, overflow="fold")
    failures = 0
    problems = []
    for file, file_root in discover(paths):
        try:
            rubric = load_rubric_file(file, root or file_root)
        except UserError as exc:
            failures += 1
            problems.extend(exc.problems)
            table.add_row(_short(file), "", "", "", "", "", "", "", f"[red]{len(exc.problems)} error(s)[/]")
            continue
        kinds = dict.fromkeys(_verdict(rubric.verdict_for(d)) for d in rubric.dimensions) or {_verdict(rubric.verdict): None}
        methods = dict.fromkeys(rubric.method_for(d) for d in rubric.dimensions) if rubric.mixed_verdicts else {}
        if rubric.abstract:
            scoring = "abstract (a base)"
        else:
            scoring = rubric.scoring.method.value if rubric.scoring else "metrics only"
            scoring += f" ({', '.join(methods)} per dimension)" if methods else ""
        table.add_row(
            _short(file), rubric.rubric, str(rubric.version), rubric.task or "", str(len(rubric.dimensions)),
            str(len(rubric.criteria)), " + ".join(kinds), scoring, "[green]ok[/]",
        )
    stdout.print(table)
    if problems:
        print_problems(problems)
    total = table.row_count
    stdout.print(f"{total - failures} of {total} rubric file(s) valid")
    if failures:
        raise typer.Exit(2)


def _verdict(verdict) -> str:
    return "binary" if verdict.kind == "binary" else f"scale({verdict.min}..{verdict.max})"


def _short(path: Path) -> str:
    resolved = path.resolve()
    for base in (Path.cwd(), Path(__file__).parents[1] / "rubrics" / "library"):
        if resolved.is_relative_to(base):
            prefix = "builtin:" if base.name == "library" else ""
            return prefix + str(resolved.relative_to(base))
    return str(path)
