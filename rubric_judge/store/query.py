"""Read-only access to the results database for `query`, `export` and `leaderboard`.

`query` runs one statement, parsed by DuckDB itself, and only a SELECT (or EXPLAIN), on a
read-only connection with file system access switched off: it can neither change the
database nor read or write other files. Writing files is `export`'s job: a table, a view or
one such SELECT, written by DuckDB to the one file named by --out (DuckDB's allowed_paths),
so an exported query cannot read or write other files either.

Queries come from users and may be huge or endless, so every connection here gets a memory
limit (then its configuration is locked, so the query cannot raise it), results are streamed
in chunks instead of being built in memory, and every DuckDB call that may run long is made
interruptible by Ctrl-C (see `_interruptible`).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from rubric_judge.errors import Location, Problem, UserError
from rubric_judge.store import DEFAULT_MEMORY_LIMIT
from rubric_judge.store.db import connect

EXPORT_TABLES = ("runs", "samples", "judge_calls", "verdicts", "metric_values", "criteria", "run_fields",
                 "task_scores", "dimension_scores", "leaderboard", "leaderboard_ci", "metric_summary", "accuracy_rates", "labels", "agreement_results",
                 "verdicts_full", "verdicts_full_all", "run_summary")
EXPORT_FORMATS = {".parquet": "(FORMAT parquet)", ".csv": "(FORMAT csv, HEADER true)", ".jsonl": "(FORMAT json)", ".json": "(FORMAT json, ARRAY true)"}

# DuckDB's own vector size: a chunk this long costs DuckDB no extra work to hand over.
CHUNK_ROWS = 2048
# After Ctrl-C, how long to wait for DuckDB to notice the interrupt and let go of the connection.
_INTERRUPT_GRACE_S = 5.0
# DuckDB's size syntax ("2GB", "512 MiB", "1.5gb", "50%" of RAM); nothing else reaches a SET statement.
_MEMORY_LIMIT = re.compile(r"\s*\d+(\.\d+)?\s*([KMGT]i?B|%)\s*", re.IGNORECASE)

T = TypeVar("T")


@dataclass
class QueryResult:
    """A running query's columns and its rows, fetched on demand from DuckDB's stream.

    Attributes:
        names: the column names.
        types: each column's DuckDB type as text (e.g. "JSON", "VARCHAR[]", "DOUBLE"), so a
            writer can tell a JSON column (a string holding JSON) from a plain string.
    """

    names: list[str]
    _con: Any
    _cursor: Any
    types: list[str] = field(default_factory=list)

    def fetch(self, count: int) -> list[tuple[Any, ...]]:
        """Up to `count` further rows (fewer at the end of the result); Ctrl-C stops the fetch.

        Args:
            count: the most rows to return.

        Returns:
            The rows, as tuples in column order.
        """
        return _interruptible(self._con, lambda: self._cursor.fetchmany(count))

    def df(self) -> Any:
        """All remaining rows as a pandas DataFrame (DuckDB's own conversion); Ctrl-C stops it."""
        return _interruptible(self._con, self._cursor.df)

    def chunks(self, rows: int = CHUNK_ROWS) -> Iterator[list[tuple[Any, ...]]]:
        """All remaining rows, `rows` at a time, so memory holds one chunk and never the result.

        Args:
            rows: rows per chunk.

        Yields:
            Non-empty lists of rows.
        """
        while chunk := self.fetch(rows):
            yield chunk


@contextmanager
def open_query(db: Path, sql: str, memory_limit: str = DEFAULT_MEMORY_LIMIT, params: list[Any] | None = None) -> Iterator[QueryResult]:
    """Starts one read-only SELECT (or EXPLAIN) and yields its streaming result.

    Args:
        db: the results database.
        sql: exactly one statement, from the user.
        memory_limit: DuckDB's memory limit for the query, e.g. "2GB".
        params: values for the statement's `?` placeholders.

    Yields:
        The result, valid until the context exits (the connection is closed then).

    Raises:
        UserError: the SQL is not one read-only statement, is invalid, or fails.
        KeyboardInterrupt: Ctrl-C; the query has been stopped.
    """
    import duckdb

    con = connect(db, read_only=True, external_access=False)
    try:
        _configure(con, memory_limit)
        try:
            statements = con.extract_statements(sql)
        except duckdb.Error as exc:
            raise UserError(f"SQL error: {exc}") from None
        if len(statements) != 1:
            raise UserError(f"give exactly one SQL statement (got {len(statements)})")
        kind = statements[0].type
        if kind not in (duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN):
            raise UserError(f"`{kind.name}` is refused: `rubric-judge query` is read-only and runs SELECT only; use `rubric-judge export` to write files")
        # DuckDB streams the result of `execute`: rows are computed as they are fetched.
        cursor = _interruptible(con, lambda: con.execute(sql, params or []))
        names = [d[0] for d in cursor.description] if cursor.description else []
        yield QueryResult(names, con, cursor, [str(d[1]) for d in cursor.description or ()])
    finally:
        _close(con)


def run_query(db: Path, sql: str, memory_limit: str = DEFAULT_MEMORY_LIMIT) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Runs one read-only SELECT and returns all of its rows; for results known to be small.

    Args:
        db: the results database.
        sql: exactly one statement, from the user.
        memory_limit: DuckDB's memory limit for the query.

    Returns:
        The column names and the rows.
    """
    with open_query(db, sql, memory_limit) as result:
        return result.names, [row for chunk in result.chunks() for row in chunk]


def export_table(db: Path, table: str, out: Path, memory_limit: str = DEFAULT_MEMORY_LIMIT) -> int:
    """Writes a table or view to `out` (format from its suffix); DuckDB's COPY streams it to disk.

    Args:
        db: the results database.
        table: one of EXPORT_TABLES.
        out: the file to write; it appears only when complete.
        memory_limit: DuckDB's memory limit for the export.

    Returns:
        The number of rows written.
    """
    if table not in EXPORT_TABLES:
        raise UserError(f"unknown table {table!r}; choose one of {', '.join(EXPORT_TABLES)}")
    return _export(db, f"SELECT * FROM {table}", out, memory_limit, table)


def export_query(db: Path, sql: str, out: Path, memory_limit: str = DEFAULT_MEMORY_LIMIT) -> int:
    """Writes the result of one read-only SELECT to `out`, as `export_table` writes a table.

    Args:
        db: the results database.
        sql: exactly one SELECT statement, from the user; it may read only the database.
        out: the file to write (.parquet, .csv, .jsonl or .json); it appears only when complete.
        memory_limit: DuckDB's memory limit for the export.

    Returns:
        The number of rows written.

    Raises:
        UserError: the SQL is not one SELECT, is invalid, or fails.
    """
    import duckdb

    statements = _parse(sql)  # checked before the database is opened
    if len(statements) != 1:
        raise UserError(f"give exactly one SQL statement (got {len(statements)})")
    if statements[0].type != duckdb.StatementType.SELECT:
        raise UserError(f"`{statements[0].type.name}` is refused: `rubric-judge export --sql` exports the result of one SELECT")
    return _export(db, _without_final_semicolon(sql), out, memory_limit, "the query")


def _parse(sql: str) -> list[Any]:
    """DuckDB's own split of `sql` into statements (parsed only, never run)."""
    import duckdb

    con = duckdb.connect()
    try:
        return con.extract_statements(sql)
    except duckdb.Error as exc:
        raise UserError(f"SQL error: {exc}") from None
    finally:
        con.close()


def _without_final_semicolon(sql: str) -> str:
    """The statement without the `;` that ends it (and comments after it), so it can be wrapped in
    COPY ( ... ); DuckDB's tokenizer tells a `;` in a string or comment from the real one."""
    import duckdb

    tokens = [(start, kind) for start, kind in duckdb.tokenize(sql) if kind != duckdb.token_type.comment]
    if tokens and tokens[-1][1] == duckdb.token_type.operator and sql[tokens[-1][0]] == ";":
        return sql[: tokens[-1][0]]
    return sql


def _export(db: Path, select: str, out: Path, memory_limit: str, what: str) -> int:
    """COPY one SELECT to `out`, with file access limited to the partial file being written."""
    import duckdb

    if out.suffix not in EXPORT_FORMATS:
        raise UserError(f"--out must end in {', '.join(EXPORT_FORMATS)}, not {out.suffix or '(no suffix)'}")
    out = out.resolve()
    tmp = out.with_name(out.name + ".partial")
    con = connect(db, read_only=True)
    try:
        literal = str(tmp).replace("'", "''")
        # The query may read the database and write this one file, nothing else.
        con.execute(f"SET allowed_paths = ['{literal}']")
        con.execute("SET enable_external_access = false")
        _configure(con, memory_limit)
        # COPY reports the rows it wrote: no separate count(*), which would compute a view twice.
        copy = f"COPY (\n{select}\n) TO '{literal}' {EXPORT_FORMATS[out.suffix]}"
        parsed = _parse(copy)
        if len(parsed) != 1 or parsed[0].type != duckdb.StatementType.COPY:  # the SELECT must not end the COPY early
            raise UserError("give exactly one SELECT statement")
        (count,) = _interruptible(con, lambda: con.execute(copy).fetchone(), failure=f"cannot export {what} to {out}")
        tmp.replace(out)  # never leave a half-written file under the requested name
        return count
    finally:
        _close(con)
        tmp.unlink(missing_ok=True)  # an interrupted or failed export leaves nothing behind


def _close(con: Any) -> None:
    """Closes the connection; after Ctrl-C a query DuckDB has not yet let go of may still hold
    it, and that must not turn the interruption into a traceback (the process is ending)."""
    import duckdb

    with suppress(duckdb.Error):
        con.close()


def _configure(con: Any, memory_limit: str) -> None:
    """Sets DuckDB's memory limit, switches its progress bar off (it would print into the csv or
    json on stdout) and then locks the configuration, so no later statement can change the limit
    (or any other setting, such as the disabled file access)."""
    if not _MEMORY_LIMIT.fullmatch(memory_limit):
        raise UserError(Problem(Location(None), f"{memory_limit!r} is not a memory size", field="--memory-limit",
                                fix="give a number and a unit, e.g. 2GB, 512MB, 1.5GiB or 50%"))
    con.execute(f"SET memory_limit = '{memory_limit.strip()}'")
    con.execute("SET enable_progress_bar = false")
    con.execute("SET lock_configuration = true")


def _interruptible(con: Any, call: Callable[[], T], failure: str = "SQL error") -> T:
    """Runs a DuckDB call on a worker thread so that Ctrl-C can stop it.

    Python delivers SIGINT to the main thread only between bytecodes; a long DuckDB call made
    on the main thread holds it in C++ until the query ends, so Ctrl-C did nothing. Here the
    main thread only waits, gets the KeyboardInterrupt at once, and asks DuckDB to stop.

    Args:
        con: the connection `call` uses; `con.interrupt()` stops its running query.
        call: the DuckDB work.
        failure: what a DuckDB error message is prefixed with.

    Returns:
        What `call` returned.

    Raises:
        UserError: DuckDB reported an error in the query.
        KeyboardInterrupt: Ctrl-C; the query was interrupted.
    """
    import duckdb

    outcome: dict[str, Any] = {}
    done = threading.Event()

    def work() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:  # handed to the main thread, which raises it
            outcome["error"] = exc
        finally:
            done.set()

    # A daemon thread: if DuckDB ever ignored the interrupt, it would not keep the process alive.
    threading.Thread(target=work, name="duckdb-query", daemon=True).start()
    # An Event, not Thread.join: on Python 3.11 a join that Ctrl-C interrupts marks the thread as
    # finished while it still runs. A timed wait stays interruptible on every platform.
    try:
        while not done.wait(0.2):
            pass
    except KeyboardInterrupt:
        con.interrupt()
        done.wait(_INTERRUPT_GRACE_S)  # let the worker release the connection before it is closed
        raise
    if "error" in outcome:
        error = outcome["error"]
        if isinstance(error, duckdb.InterruptException):
            raise KeyboardInterrupt from None
        if isinstance(error, duckdb.OutOfMemoryException):
            # DuckDB's own advice (SET memory_limit, SET threads) is refused here: say what works.
            raise UserError(Problem(Location(None), f"{failure}: {str(error).splitlines()[0]}",
                                    fix="pass a larger --memory-limit, or make the query need less memory")) from None
        if isinstance(error, duckdb.Error):
            raise UserError(f"{failure}: {error}") from None
        raise error
    return outcome["value"]


def list_runs(db: Path, include_superseded: bool = False) -> QueryRows:
    """The runs in a results database, from the `run_summary` view, oldest first.

    Args:
        db: the results database.
        include_superseded: also the runs a re-run with an edited rubric superseded.

    Returns:
        The column names, their DuckDB types and the rows.
    """
    where = "" if include_superseded else "WHERE superseded_by IS NULL"
    with open_query(db, f"SELECT * FROM run_summary {where} ORDER BY rubric_id, model_name, started_at, run_id") as result:
        return QueryRows(result.names, result.types, [row for chunk in result.chunks() for row in chunk])


@dataclass(frozen=True)
class QueryRows:
    """A small result held whole: column names, their DuckDB types, rows."""

    names: list[str]
    types: list[str]
    rows: list[tuple[Any, ...]]
