"""The typer application: registers each command and turns input errors into exit code 2.

Command modules import only light libraries at module level (typer, rich, pydantic); litellm,
torch and friends are imported inside the commands that need them, so `--help` stays instant.
"""

from __future__ import annotations

import logging
import sys

import typer

from rubric_judge.cli import (
    agree,
    cache,
    compare,
    importers,
    labels,
    new,
    plan,
    preview,
    query,
    report,
    runs,
    score,
    serve,
    validate,
    weights,
)

HELP = "Judge medical image and text generation against YAML rubrics: cached, reproducible, queryable."

# Every command and command group: name -> (module, attribute). Registered in this order.
COMMANDS: dict[str, tuple[object, str]] = {
    "validate": (validate, "command"),
    "plan": (plan, "command"),
    "preview": (preview, "command"),
    "score": (score, "command"),
    "query": (query, "query"),
    "export": (query, "export"),
    "leaderboard": (query, "leaderboard"),
    "compare": (compare, "command"),
    "runs": (runs, "command"),
    "rates": (query, "rates"),
    "agree": (agree, "command"),
    "report": (report, "command"),
    "cache": (cache, "app"),
    "import": (importers, "import_app"),
    "labels": (labels, "labels_app"),
    "new": (new, "command"),
    "weights": (weights, "command"),
    "serve": (serve, "command"),
}


def build_app(names: list[str] | None = None) -> typer.Typer:
    """The typer application with every command, or only `names`.

    typer turns each registered command into a click command (every option's type and default)
    on each start; a command line that names its command builds that one alone, which saves a
    small job a tenth of a second of start-up. Its usage, options, help and errors are the same.
    """
    application = typer.Typer(name="rubric-judge", help=HELP, no_args_is_help=True, pretty_exceptions_enable=False,
                              add_completion=False, rich_markup_mode="rich")
    if names is not None:
        # A group of one would run that command without its name on the command line.
        application.callback()(lambda: None)
    for name, (module, attribute) in COMMANDS.items():
        if names is not None and name not in names:
            continue
        target = getattr(module, attribute)
        if isinstance(target, typer.Typer):
            application.add_typer(target, name=name)
        else:
            application.command(name)(target)
    return application


app = build_app()


class WarningHandler(logging.Handler):
    """Prints the library's warnings (errors.warn, on the `rubric_judge` logger) like the CLI's
    own; rich is imported only when there is a warning to print, so `--help` stays instant."""

    def emit(self, record: logging.LogRecord) -> None:
        from rubric_judge.cli.output import print_warnings
        from rubric_judge.errors import Location, Problem

        problem = getattr(record, "problem", None)
        print_warnings([problem if isinstance(problem, Problem) else Problem(Location(None), record.getMessage())])


def show_library_warnings() -> logging.Handler:
    """Route the library's warnings to the terminal in the CLI's style; returns the handler."""
    from rubric_judge.errors import LOGGER

    logger = logging.getLogger(LOGGER)
    handler = next((h for h in logger.handlers if isinstance(h, WarningHandler)), None)
    if handler is None:
        handler = WarningHandler()
        logger.addHandler(handler)
    logger.propagate = False
    return handler


def main() -> None:
    """The console script: runs the app and turns every way it can end into an exit code, never
    a traceback for a user's mistake (bad input: 2 with the problems listed; a usage error: 2
    with click's usage message; Ctrl-C: 130)."""
    from rubric_judge.errors import UserError
    from rubric_judge.redaction import redact_logging

    # Libraries log the errors they see (instructor logs each failed call), and a server's error
    # can repeat the API key: every log record is redacted, whoever made it.
    redact_logging()
    show_library_warnings()  # a cache set aside, a value left out: printed in the CLI's style
    try:
        # Without standalone mode click returns a command's exit code instead of exiting.
        named = sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] in COMMANDS else None
        code = (build_app([named]) if named else app)(standalone_mode=False)
    except UserError as exc:
        from rubric_judge.cli.output import print_problems

        print_problems(exc.problems)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        sys.stderr.write("\nAborted.\n")
        sys.exit(130)
    except _click_exceptions() as exc:  # usage errors: they show their own message and exit code
        exc.show()
        sys.exit(exc.exit_code)
    sys.exit(code if isinstance(code, int) else 0)


def _click_exceptions() -> tuple[type[Exception], ...]:
    """The base classes of the errors click reports to the user (usage errors, bad parameters).

    Recent typer (0.29 here) bundles its own copy of click as `typer._click`, whose
    ClickException derives from `typer.TyperException`, not from `click.ClickException`; older
    typer raises click's own. Both bases are caught, so usage errors end the same way on either.
    """
    bases: list[type[Exception]] = []
    if hasattr(typer, "TyperException"):
        bases.append(typer.TyperException)
    try:
        import click
    except ImportError:  # typer that bundles click does not need it installed
        pass
    else:
        bases.append(click.ClickException)
    return tuple(bases)
