"""User-facing errors: every problem with input data names where it is and how to fix it.

A `UserError` is what the CLI turns into a clear message and exit code 2. It carries one or
more `Problem`s so a validator can report everything wrong with a file at once instead of
making the author fix one mistake per run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Location:
    """A position in a source file; line and column are 1-based, 0 when unknown."""

    file: Path | None
    line: int = 0
    column: int = 0

    def __str__(self) -> str:
        name = str(self.file) if self.file else "<input>"
        if self.line:
            return f"{name}:{self.line}:{self.column or 1}"
        return name


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input: where, which field, what was wrong and what to do."""

    location: Location
    message: str
    field: str = ""
    fix: str = ""

    def __str__(self) -> str:
        where = f"{self.location}: "
        field = f"{self.field}: " if self.field else ""
        fix = f"\n    fix: {self.fix}" if self.fix else ""
        return f"{where}{field}{self.message}{fix}"


class UserError(Exception):
    """Bad input from the user; the CLI prints the problems and exits with code 2."""

    exit_code = 2

    def __init__(self, problems: list[Problem] | Problem | str):
        if isinstance(problems, str):
            problems = [Problem(Location(None), problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems: tuple[Problem, ...] = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


LOGGER = "rubric_judge"


def warn(problem: Problem) -> None:
    """Report a problem that does not stop the work (a cache set aside, a value left out).

    It goes to the `rubric_judge` logger at WARNING with the `Problem` attached (`record.problem`):
    the CLI prints it in its own style; elsewhere (a notebook, a server) Python's logging shows it
    on stderr unless the application configures that logger.

    Args:
        problem: where, what and the fix.
    """
    import logging

    logging.getLogger(LOGGER).warning("%s", problem, extra={"problem": problem})


def problem_lines(problems: tuple[Problem, ...] | list[Problem], limit: int = 10) -> list[str]:
    """A short, indented listing for summaries: the first `limit` problems, one line each."""
    if not problems:
        return []
    lines = [f"  problems: {len(problems)}", *(f"    {str(p).splitlines()[0]}" for p in problems[:limit])]
    if len(problems) > limit:
        lines.append(f"    ... and {len(problems) - limit} more")
    return lines


def read_user_text(path: Path, what: str, fmt: str) -> str:
    """The text of a file the user named (`what`, e.g. "manifest"); an unreadable file or one
    that is not UTF-8 (a byte-order mark is fine) is a UserError saying so."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise UserError(Problem(Location(path), f"cannot read the {what}: {exc.strerror or exc}", fix="check the path")) from None
    except UnicodeDecodeError:
        raise UserError(Problem(Location(path), f"the {what} is not UTF-8 text", fix=f"save it as UTF-8 {fmt}")) from None
