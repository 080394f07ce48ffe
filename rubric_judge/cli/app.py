"""The typer application: registers each command and turns input errors into exit code 2.

Command modules are imported only when their command runs (`rubric-judge --help` lists the
summaries in `COMMANDS`), and import only light libraries at module level (typer, rich,
pydantic); litellm, torch and friends are imported inside the commands that need them, so
`--help` stays instant.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import logging
import os
import sys
from collections.abc import Iterator
from typing import NamedTuple, NoReturn

import typer

HELP = "Judge medical image and text generation against YAML rubrics: cached, reproducible, queryable."


class Command(NamedTuple):
    """Where a command lives (imported only when it runs) and its summary in the command list."""

    module: str
    attribute: str
    summary: str  # the first paragraph of its help; tests/test_startup.py checks the two agree


# Every command and command group, registered in this order (typer lists the groups last).
COMMANDS: dict[str, Command] = {
    "validate": Command("validate", "command", "Validate rubric files: YAML, schema, `extends`, templates. Exit code 2 on any error."),
    "plan": Command("plan", "command", "Show judge calls, criteria, images, estimated tokens and cost per batching mode, offline,\n"
                    "how many calls are already in the verdict cache (free) and what the rest would cost, and the\n"
                    "metric work (samples per metric, weights present or not)."),
    "preview": Command("preview", "command", "Show what the judge would be sent for one sample, without sending anything: each call's\n"
                       "system prompt and user messages verbatim (images described: label, field, file, media type,\n"
                       "pixels and bytes as sent, never the image data), the JSON schema of the answer and the\n"
                       "structured-output mode, the cache key and whether it is cached, and the estimated tokens and cost."),
    "score": Command("score", "command", "Judge model outputs against a rubric: cached, resumable, every call and verdict in DuckDB."),
    "query": Command("query", "query", "Run read-only SQL on the results (tables: runs, samples, judge_calls, verdicts, metric_values,\n"
                     "criteria, run_fields, labels, agreement_results; views: task_scores, dimension_scores, leaderboard,\n"
                     "leaderboard_ci, metric_summary, accuracy_rates, verdicts_full, verdicts_full_all, run_summary;\n"
                     "table macros: leaderboard_bootstrap(), paired_bootstrap(), criterion_changes())."),
    "export": Command("query", "export", "Export a table, a view or a query's result to Parquet, CSV or JSON (Lines) (streamed to\n"
                      "disk; Ctrl-C stops it). Give --table or --sql. The SELECT reads only the database, as with\n"
                      "`rubric-judge query`; Parquet files read with pandas.read_parquet."),
    "leaderboard": Command("query", "leaderboard", "Scores of every model per rubric: overall and per dimension, with confidence intervals and\n"
                           "coverage counts."),
    "compare": Command("compare", "command", "Paired comparison of two runs of one rubric: two models (MODEL_A MODEL_B), two versions of\n"
                       "a rubric on one model (--run OLD --run NEW, or MODEL --previous), per dimension or per\ncriterion."),
    "runs": Command("runs", "command", "List the runs: status, rubric content (digest), model, judge, coverage (samples scored of\n"
                    "the samples in the manifest) and what the judge calls paid (cache hits cost nothing)."),
    "rates": Command("query", "rates", "Accuracy rates (%) per format, modality and task: MedGEN-Bench's Table 3 layout."),
    "agree": Command("agree", "command", "Agreement of the judge with expert labels (`labels import`), with other runs, with its own\n"
                     "replicates and with its bias probes, each with a bootstrap interval over samples."),
    "report": Command("report", "command", "Write a static HTML report: leaderboard with bootstrap intervals, charts, judge cost, a\n"
                      "two-model comparison and per-sample cards with images and every verdict. Works offline."),
    "new": Command("new", "command", "Write a commented rubric scaffold that passes `rubric-judge validate`."),
    "weights": Command("weights", "command", "List the metric weights (LPIPS trunk and linear layers, BERTScore models): present or absent, "
                       "and where each is looked for."),
    "serve": Command("serve", "command", "Serve rubric rewards over HTTP: POST /get_reward (OpenRLHF), POST /v1/score, GET /health, GET /metrics."),
    "cache": Command("cache", "app", "Inspect or clean the verdict cache."),
    "import": Command("importers", "import_app", "Import benchmark files: IlluGenBench tasks and official verdicts, MedGEN-Bench records."),
    "labels": Command("labels", "labels_app", "Expert labels: import them to measure how far the judge agrees with experts (`rubric-judge agree`)."),
}


def _application() -> typer.Typer:
    # Plain click help (rich_markup_mode=None): typer's rich help imports rich's Markdown,
    # markdown-it and tracebacks first, about a third of `rubric-judge --help`'s time.
    return typer.Typer(name="rubric-judge", help=HELP, no_args_is_help=True, pretty_exceptions_enable=False,
                       add_completion=False, rich_markup_mode=None)


def build_app(names: list[str] | None = None) -> typer.Typer:
    """The typer application with every command, or only `names`.

    Each command's module is imported here, when the command is registered, and typer turns
    each registered command into a click command (every option's type and default) on each
    start: a command line that names its command builds that one alone. Its usage, options,
    help and errors are the same.
    """
    application = _application()
    if names is not None:
        # A group of one would run that command without its name on the command line.
        application.callback()(lambda: None)
    for name, command in COMMANDS.items():
        if names is not None and name not in names:
            continue
        target = getattr(importlib.import_module(f"rubric_judge.cli.{command.module}"), command.attribute)
        if isinstance(target, typer.Typer):
            application.add_typer(target, name=name)
        else:
            application.command(name)(target)
    return application


def listing_app() -> typer.Typer:
    """The application as `rubric-judge --help` (or a command line naming no known command)
    shows it: every command by its summary, none of their modules imported or options built."""
    application = _application()
    for name, command in COMMANDS.items():
        application.command(name, help=command.summary)(_not_loaded)
    return application


def _not_loaded() -> None:  # pragma: no cover - main() builds the real command when one is named
    raise RuntimeError("listing_app() lists the commands; build_app() runs them")


def __getattr__(name: str) -> typer.Typer:
    """`app`, the whole application (for typer's test runner and `python -m`), built on first use."""
    if name == "app":
        globals()["app"] = application = build_app()
        return application
    raise AttributeError(name)


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


@contextlib.contextmanager
def imports_frozen() -> Iterator[None]:
    """Import a command's modules with the cyclic garbage collector paused, then freeze what
    they built, so that later collections skip it.

    Importing the score pipeline builds a few hundred thousand objects that live as long as the
    process (modules, classes, pydantic's schemas and validators); collecting walked them again and
    again, about a tenth of a one-second cached re-run. The collector then runs as before on what
    the command itself allocates.
    """
    import atexit

    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        atexit.register(gc.unfreeze)  # the final collection sees them, so extensions can clean up (as llm.py does)
        if enabled:
            gc.enable()


def main() -> None:
    """The console script: runs the app and turns every way it can end into an exit code, never
    a traceback for a user's mistake (bad input: 2 with the problems listed; a usage error: 2
    with click's usage message; Ctrl-C: 130)."""
    # pydantic looks for plugins in every installed package's metadata the first time it builds
    # a model: 10-20 ms of each start, and the CLI uses none. Setting the variable (even empty:
    # `PYDANTIC_DISABLE_PLUGINS=`) keeps a user's own choice.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    from rubric_judge.errors import UserError
    from rubric_judge.redaction import redact_logging

    # Libraries log the errors they see (instructor logs each failed call), and a server's error
    # can repeat the API key: every log record is redacted, whoever made it.
    redact_logging()
    show_library_warnings()  # a cache set aside, a value left out: printed in the CLI's style
    try:
        # Without standalone mode click returns a command's exit code instead of exiting.
        named = sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] in COMMANDS else None
        code = (build_app([named]) if named else listing_app())(standalone_mode=False)
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


def console_script() -> NoReturn:
    """The `rubric-judge` executable: `main`, then the process ends at once (`end_process`)."""
    try:
        main()
        code: object = 0
    except SystemExit as exc:
        code = exc.code
    end_process(code)


def end_process(code: object) -> NoReturn:
    """End the process with `code` (as `SystemExit` reads it) once its work is done, skipping the
    interpreter's teardown when nothing else runs.

    The teardown frees every object of every module one by one (pydantic's schemas, DuckDB,
    Jinja, the rubrics): 0.1-0.25 s, a sixth of a cached re-run, with nothing left to write.
    Here the exit handlers run (logging's flush, any `atexit` function), the standard streams
    are flushed, and the process ends. When a thread the interpreter would wait for is still
    alive (not a daemon), or a profiler or debugger is attached (`python -m cProfile` writes its
    file after the program returns), the exit is the ordinary one. Daemon threads do not count:
    the ordinary exit does not wait for them either, and one is often still winding down (rich's
    progress refresher ends after `stop()` returns), which sent a third of cached re-runs
    through the whole teardown.

    Args:
        code: None or an int (the exit status), or anything else (printed to stderr, status 1).
    """
    import threading

    waited_for = [thread for thread in threading.enumerate() if thread is not threading.main_thread() and not thread.daemon]
    if waited_for or sys.getprofile() is not None or sys.gettrace() is not None:
        sys.exit(code)  # a thread to wait for, or a profiler or debugger that reports on the way out
    import atexit
    import contextlib
    import os

    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:
        with contextlib.suppress(Exception):
            print(code, file=sys.stderr)
        status = 1
    atexit._run_exitfuncs()  # what the interpreter runs first on its way out (CPython's own function)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed pipe: nothing more can reach it anyway
            stream.flush()
    os._exit(status)


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
