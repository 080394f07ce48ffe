"""`rubric-judge query`, `export` and `leaderboard`: read the results database."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Annotated

import typer

from rubric_judge.store import DEFAULT_MEMORY_LIMIT

DbOption = Annotated[Path | None, typer.Option("--db", help="Results database (default: $RUBRIC_JUDGE_DB, else ./rubric-judge.duckdb).")]
MemoryLimitOption = Annotated[str, typer.Option("--memory-limit", help="Most memory DuckDB may use, e.g. 2GB, 512MB or 50% (of RAM).")]

FORMATS = ("table", "csv", "json")
# A table cell shows at most this many characters: one huge value must not flood the terminal.
MAX_CELL_CHARS = 200


def query(
    sql: Annotated[str, typer.Argument(help='One read-only SQL statement, e.g. "SELECT * FROM leaderboard".')],
    db: DbOption = None,
    format: Annotated[str, typer.Option("--format", help="table | csv | json")] = "table",
    max_rows: Annotated[int, typer.Option("--max-rows", min=1, help="Most rows the table shows (csv and json give every row).")] = 1000,
    memory_limit: MemoryLimitOption = DEFAULT_MEMORY_LIMIT,
) -> None:
    """Run read-only SQL on the results (tables: runs, samples, judge_calls, verdicts, metric_values,
    criteria, run_fields, labels, agreement_results; views: task_scores, dimension_scores, leaderboard,
    leaderboard_ci, metric_summary, accuracy_rates, verdicts_full, verdicts_full_all, run_summary;
    table macros: leaderboard_bootstrap(), paired_bootstrap(), criterion_changes()).

    The table shows the first --max-rows rows, each value as the query returns it (round() in
    the SQL to shorten numbers) and long values shortened; --format csv or json streams every
    row in full, JSON columns and lists as JSON. Ctrl-C stops the query (exit code 130).
    """
    from rubric_judge.store.db import default_db_path
    from rubric_judge.store.query import open_query

    _check_format(format)
    with _stop_on_ctrl_c("query"), open_query(db or default_db_path(), sql, memory_limit) as result:
        if format == "table":
            # One row past the limit tells whether rows were left out, without computing the rest.
            rows = result.fetch(max_rows + 1)
            _print_table(result.names, rows[:max_rows], more=len(rows) > max_rows)
        else:
            _stream(result.names, result.chunks(), format, result.types)


def export(
    out: Annotated[Path, typer.Option("--out", help="Output file: .parquet, .csv, .jsonl or .json.")],
    table: Annotated[str | None, typer.Option("--table", help="Table or view to export.")] = None,
    sql: Annotated[str | None, typer.Option("--sql", help='One read-only SELECT whose result to export, e.g. "SELECT * FROM verdicts_full WHERE failed".')] = None,
    db: DbOption = None,
    memory_limit: MemoryLimitOption = DEFAULT_MEMORY_LIMIT,
) -> None:
    """Export a table, a view or a query's result to Parquet, CSV or JSON (Lines) (streamed to
    disk; Ctrl-C stops it). Give --table or --sql. The SELECT reads only the database, as with
    `rubric-judge query`; Parquet files read with pandas.read_parquet."""
    from rubric_judge.cli.output import stdout
    from rubric_judge.errors import Location, Problem, UserError
    from rubric_judge.store.db import default_db_path
    from rubric_judge.store.query import export_query, export_table

    if (table is None) == (sql is None):
        raise UserError(Problem(Location(None), "give either --table or --sql (one of them)", field="--table/--sql",
                                fix='e.g. --table verdicts, or --sql "SELECT * FROM verdicts_full WHERE failed"'))
    with _stop_on_ctrl_c("export"):
        if table is not None:
            count = export_table(db or default_db_path(), table, out, memory_limit)
        else:
            count = export_query(db or default_db_path(), sql or "", out, memory_limit)
    stdout.print(f"wrote {count} rows of {table or 'the query'} to {out}", markup=False)


@contextmanager
def _stop_on_ctrl_c(what: str) -> Iterator[None]:
    """Turns Ctrl-C into a one-line message and exit code 130 (the shell's code for SIGINT)."""
    try:
        yield
    except KeyboardInterrupt:
        from rubric_judge.cli.output import stderr

        stderr.print(f"interrupted: the {what} was stopped", markup=False)
        raise typer.Exit(130) from None


ResamplesOption = Annotated[int, typer.Option("--resamples", help="Bootstrap resamples for the confidence intervals.")]
SeedOption = Annotated[int, typer.Option("--seed", help="Seed of the bootstrap: the same seed gives the same intervals.")]
LevelOption = Annotated[float, typer.Option("--level", help="Coverage of the confidence intervals, between 0 and 1.")]


def leaderboard(
    db: DbOption = None,
    rubric: Annotated[str | None, typer.Option("--rubric", help="Only this rubric id.")] = None,
    resamples: ResamplesOption = 1000,
    seed: SeedOption = 0,
    level: LevelOption = 0.95,
    format: Annotated[str, typer.Option("--format", help="table | csv | json (csv and json: every column, full names)")] = "table",
) -> None:
    """Scores of every model per rubric: overall and per dimension, with confidence intervals and
    coverage counts.

    ci_low/ci_high: percentile bootstrap over samples (a sample's replicates averaged first),
    seeded so the same --seed gives the same interval. Pass_rate rubrics add their accuracy rate
    with its interval (acc_low/acc_high). `SELECT * FROM leaderboard_ci` (or the
    leaderboard_bootstrap macro) gives the same numbers in SQL. Runs superseded by a re-run
    with an edited rubric are left out (`rubric-judge runs --all` lists them).
    """
    from rubric_judge.store import stats
    from rubric_judge.store.db import default_db_path

    _check_format(format)
    names, rows = stats.leaderboard(db or default_db_path(), stats.Bootstrap(resamples, seed, level), rubric)
    if format != "table":  # machine-readable: every column under its own name, nothing printed besides
        _print(names, rows, format)
        return
    # Accuracy rates exist only for pass_rate rubrics and a score note only for a run with no
    # judge score; without any, those columns are noise.
    optional = ("accuracy_", "score_note")
    keep = [i for i, name in enumerate(names) if not name.startswith(optional) or any(row[i] is not None for row in rows)]
    # Short headers for the coverage counts keep the table within a terminal's width.
    short = {"judge_model": "judge", "accuracy_rate": "accuracy", "accuracy_ci_low": "acc_low", "accuracy_ci_high": "acc_high", "samples_scored": "scored", "samples_excluded": "excluded", "missing_outputs": "missing", "unscored_verdicts": "unscored", "samples_total": "of"}
    _print([short.get(names[i], names[i]) for i in keep], [tuple(row[i] for i in keep) for row in rows], "table", decimals=4)
    _warn_incomplete(names, rows)


def _warn_incomplete(names: list[str], rows: list[tuple]) -> None:
    """A line under the table for each run that did not finish: its scores cover part of the work."""
    from rich.markup import escape

    from rubric_judge.cli.output import stdout

    column = {name: names.index(name) for name in ("rubric_id", "model_name", "judge_model", "dimension", "status", "samples_scored", "samples_total")}
    for row in rows:
        if row[column["dimension"]] == "overall" and row[column["status"]] != "finished":
            stdout.print(f"[yellow]{escape(row[column['model_name']])} ({escape(row[column['rubric_id']])}, judge {escape(row[column['judge_model']])}): "
                         f"run {row[column['status']]}; its scores cover {row[column['samples_scored']]} of {row[column['samples_total']]} "
                         "samples (incomplete)[/]")


def _print(names: list[str], rows: list[tuple], format: str, types: list[str] | None = None, decimals: int | None = None) -> None:
    """Prints a small, complete result (leaderboard, compare, runs) as a table, csv or json.

    Args:
        names: the column names.
        rows: the rows, in column order.
        format: table | csv | json.
        types: the columns' DuckDB types, when known: JSON columns are then nested in json.
        decimals: the table shows floats with this many decimals (csv and json keep them whole);
            None: as they are.
    """
    _check_format(format)
    if format == "table":
        if decimals is not None:
            rows = [tuple(f"{v:.{decimals}f}" if isinstance(v, float) else v for v in row) for row in rows]
        _print_table(names, rows, more=False)
    else:
        _stream(names, [rows], format, types)


def _check_format(format: str) -> None:
    from rubric_judge.errors import UserError

    if format not in FORMATS:
        raise UserError(f"--format must be table, csv or json, not {format!r}")


def _stream(names: list[str], chunks: Iterable[list[tuple]], format: str, types: list[str] | None = None) -> None:
    """Writes every row as csv or json, a chunk at a time, so memory never holds the whole result.

    The json is the same text `json.dumps(rows, indent=1)` gives for the full list, with each
    JSON column's value nested as JSON (not a string holding JSON). In csv, lists and structs
    are JSON text (["a", "b"], not Python's ['a', 'b']) and a JSON column its JSON as stored.
    """
    import csv
    import sys

    out = sys.stdout
    json_columns = [i for i, kind in enumerate(types or ()) if kind == "JSON"]
    if format == "csv":
        writer = csv.writer(out)
        writer.writerow(names)
        for chunk in chunks:
            writer.writerows([_csv_value(v) for v in row] for row in chunk)
        return
    opening = "[\n "
    for chunk in chunks:
        for row in chunk:
            if json_columns:
                row = _nest_json(row, json_columns)
            # json escapes newlines inside strings, so every newline here is layout: indent it.
            item = json.dumps(dict(zip(names, row, strict=True)), default=_json_default, indent=1).replace("\n", "\n ")
            out.write(opening + item)
            opening = ",\n "
    out.write("[]\n" if opening == "[\n " else "\n]\n")


def _json_default(value: object) -> object:
    """What json cannot write itself: a DECIMAL as a number (SQL's 0.1 + 0.2 is one), anything
    else (timestamps, UUIDs) as its text."""
    from decimal import Decimal

    return float(value) if isinstance(value, Decimal) else str(value)


def _nest_json(row: tuple, columns: list[int]) -> tuple:
    """The row with the JSON text of the given columns parsed, so json output nests it."""
    values = list(row)
    for i in columns:
        if isinstance(values[i], str):
            with suppress(ValueError):  # not valid JSON after all: left as the text it is
                values[i] = json.loads(values[i])
    return tuple(values)


def _csv_value(value: object) -> object:
    """A value as a csv cell: lists and structs as JSON (not Python's repr)."""
    if isinstance(value, list | tuple | dict):
        return json.dumps(value, default=str, ensure_ascii=False)
    return value


def _print_table(names: list[str], rows: list[tuple], more: bool) -> None:
    """A rich table of `rows`; `more` says that further rows were left out."""
    from rich.table import Table
    from rich.text import Text

    from rubric_judge.cli.output import stdout

    table = Table()
    for name in names:
        table.add_column(Text(_cell(name)), overflow="fold")
    for row in rows:
        # Text, not str: a value such as "[/]" is data, never rich markup.
        table.add_row(*(Text(_cell(v)) for v in row))
    stdout.print(table)
    if more:
        stdout.print(f"[dim]first {len(rows)} row(s) shown; more were left out (raise --max-rows, or use --format csv or json for every row)[/]")
    else:
        stdout.print(f"[dim]{len(rows)} row(s)[/]")


def _cell(value: object) -> str:
    """A value as a table shows it: as the query returned it (a float in full, round() in SQL to
    shorten it), lists and structs as JSON, None blank, long text shortened."""
    text = "" if value is None else str(_csv_value(value)) if isinstance(value, list | tuple | dict) else str(value)
    if len(text) > MAX_CELL_CHARS:
        return f"{text[:MAX_CELL_CHARS]}… ({len(text) - MAX_CELL_CHARS} more characters)"
    return text


def rates(
    db: DbOption = None,
    model: Annotated[str | None, typer.Option("--model", help="Only this model.")] = None,
    by: Annotated[str | None, typer.Option("--by", help="Only this breakdown: overall | category | modality | paper_task.")] = None,
) -> None:
    """Accuracy rates (%) per format, modality and task: MedGEN-Bench's Table 3 layout.

    Judge pass rate (overall score >= threshold) and each metric's pass rate; a blank cell means
    no sample of that group was rated (e.g. SSIM for VQA, or a metric whose weights are absent).
    When a model ran under both builtin:medgen/reference.yaml (the official evaluation's
    counting rules) and holistic-with-gt (the default), a second table gives each rate under
    both, with how many samples each counts and the difference (default - reference).
    """
    from rich.table import Table

    from rubric_judge.cli.output import stdout
    from rubric_judge.store.db import default_db_path
    from rubric_judge.store.medgen_tables import TABLE3_FIXED, reference_vs_default, table3

    rows = [r for r in table3(db or default_db_path(), model_name=model) if by is None or r["by"] == by]
    metrics = sorted({k for r in rows for k in r if k not in TABLE3_FIXED and not k.endswith("_samples")})
    table = Table(title="Accuracy rates (%)", title_justify="left")
    for column in ("model", "rubric", "by", "group", "samples", "judge", *metrics):
        table.add_column(column, justify="left" if column in ("model", "rubric", "by", "group") else "right")
    for r in rows:
        cells = [r["judge"], *(r.get(m) for m in metrics)]
        table.add_row(r["model_name"], r["rubric_id"], r["by"], str(r["group"]), str(r["samples"]), *("" if v is None else f"{100 * v:.2f}" for v in cells))
    stdout.print(table)
    _print_reference_comparison(reference_vs_default(rows))
    for r in rows:
        if r["by"] == "overall" and r["status"] != "finished":
            stdout.print(f"[yellow]{r['model_name']} ({r['rubric_id']}): run {r['status']}; the judge rated {r['judge_samples']} of "
                         f"{r['samples']} samples (incomplete)[/]")


def _print_reference_comparison(entries: list[dict]) -> None:
    """The reference-compatible and default rates side by side (as `import illugenbench-results`)."""
    if not entries:
        return
    from rich.table import Table

    from rubric_judge.cli.output import stdout

    pairs = sorted({(e["reference_rubric"], e["default_rubric"]) for e in entries})
    title = "; ".join(f"{ref} (official counting) vs {default} (default)" for ref, default in pairs)
    table = Table(title=f"Accuracy rates (%): {title}", title_justify="left")
    for column in ("model", "judge", "by", "group", "rate", "reference", "n", "default", "n ", "difference"):
        table.add_column(column, justify="left" if column in ("model", "judge", "by", "group", "rate") else "right")

    def pct(value: float | None) -> str:
        return "" if value is None else f"{100 * value:.2f}"

    for e in entries:
        difference = "" if e["difference"] is None else f"{100 * e['difference']:+.2f}"
        table.add_row(e["model_name"], e["judge_model"], e["by"], str(e["group"]), e["rate"], pct(e["reference"]), str(e["reference_samples"]),
                      pct(e["default"]), str(e["default_samples"]), difference)
    stdout.print(table)
