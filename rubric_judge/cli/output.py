"""Shared terminal output: problem lists on stderr and tables on stdout."""

from __future__ import annotations

from collections.abc import Iterable

from rich.console import Console

from rubric_judge.errors import Problem

# Piped output (CI logs, files) gets a wide console so tables do not fold every cell.
stdout = Console(highlight=False)
if not stdout.is_terminal:
    stdout = Console(highlight=False, width=160)
stderr = Console(stderr=True, highlight=False)
if not stderr.is_terminal:
    stderr = Console(stderr=True, highlight=False, width=160)


def print_problems(problems: Iterable[Problem]) -> None:
    problems = list(problems)
    for problem in problems:
        where = f"{_escape(str(problem.location))}: " if problem.location.file else ""
        stderr.print(f"[bold red]error[/] {where}"
                     + (f"[bold]{_escape(problem.field)}[/]: " if problem.field else "")
                     + _escape(problem.message))
        if problem.fix:
            stderr.print(f"      [green]fix:[/] {_escape(problem.fix)}")
    stderr.print(f"[red]{len(problems)} problem{'s' if len(problems) != 1 else ''}[/]")


def print_warnings(problems: Iterable[Problem]) -> None:
    for problem in problems:
        where = f"{_escape(str(problem.location))}: " if problem.location.file else ""
        stderr.print(f"[yellow]warning[/] {where}{_escape(problem.message)}"
                     + (f" [dim](fix: {_escape(problem.fix)})[/]" if problem.fix else ""))


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
