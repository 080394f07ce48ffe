"""Shared terminal output: problem lists on stderr and tables on stdout, with secrets redacted."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.console import Console
from rich.text import Text

from rubric_judge.errors import Problem
from rubric_judge.redaction import redact


class RedactingConsole(Console):
    """A rich console that never shows a secret (rubric_judge/redaction.py).

    Strings are redacted as they become text, before rich wraps them: a key folded across two
    lines would no longer match. What is built as rich Text elsewhere (progress columns,
    tracebacks) is redacted once more in the rendered output.
    """

    def render_str(self, text: str, **kwargs: Any) -> Text:
        return super().render_str(redact(text), **kwargs)

    def _render_buffer(self, buffer: Any) -> str:
        # rich's (private) last step before writing: if it is ever renamed, render_str still
        # covers every string printed here.
        return redact(super()._render_buffer(buffer))


# Piped output (CI logs, files) gets a wide console so tables do not fold every cell.
stdout = RedactingConsole(highlight=False)
if not stdout.is_terminal:
    stdout = RedactingConsole(highlight=False, width=160)
stderr = RedactingConsole(stderr=True, highlight=False)
if not stderr.is_terminal:
    stderr = RedactingConsole(stderr=True, highlight=False, width=160)


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
