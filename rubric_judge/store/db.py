"""The results database: one DuckDB file with the schema built by the numbered migrations in
migrations/ (store/migrate.py), scoring views in views.sql and statistics (bootstrap intervals)
in stats.sql.

Writes are idempotent: a run's id is derived from (rubric, version, model, judge, api base), a
new run with the same id and the same rubric content first removes that run's rows, and every
table has a primary key, so a re-run or a resume replaces rows and never duplicates them. A
re-run whose rubric content changed (another `rubric_digest`) keeps the earlier run: its rows
move to an archive id and it is marked superseded (`runs.superseded_by`), so the before and
after of a rubric edit can be compared; the run id always names the latest run. Rows are written as outcomes
arrive, in small transactions, so a crash loses at most the last batch (and the verdict cache
still holds every paid answer).

Every string written passes rubric_judge.redaction first (`_insert` and the run's config), so
no API key echoed in an error message or answer reaches the file, nor the exports and reports
read from it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rubric_judge.errors import Location, Problem, UserError
from rubric_judge.redaction import redact, redact_column
from rubric_judge.store.engine import duckdb_engine

if TYPE_CHECKING:  # at run time only for writing: readers (query, report) stay free of litellm
    from rubric_judge.judge.executor import Outcome
    from rubric_judge.metrics import MetricRow
    from rubric_judge.planning.compile import SamplePlan
    from rubric_judge.rubrics.schema import Criterion, Rubric

VIEWS = Path(__file__).with_name("views.sql")
STATS = Path(__file__).with_name("stats.sql")
TABLES = ("runs", "samples", "judge_calls", "verdicts", "metric_values", "criteria", "run_fields")
# Tables whose rows belong to a run and move with it when it is superseded: `TABLES`, and the
# agreement statistics computed for it (which also name the other run compared).
RUN_ROW_COLUMNS = {**{table: ("run_id",) for table in TABLES if table != "runs"}, "agreement_results": ("run_id", "other_run_id")}


def default_db_path() -> Path:
    return Path(os.environ.get("RUBRIC_JUDGE_DB", "rubric-judge.duckdb"))


RUN_ROLES = ("run", "panel", "panel_member", "probe")


@dataclass(frozen=True)
class RunInfo:
    """What identifies a run, and how it relates to others.

    Attributes:
        role: run (a plain score run) | panel (a judge panel's combined verdicts) |
            panel_member (one judge of a panel) | probe (a bias probe of another run).
        parent_run_id: a member's panel run; a probe's probed run.
        probe: the probe's kind, e.g. swap-images.
        manifest_samples: the manifest's sample count, whether the run scores all of them or
            some (`score --limit/--sample`, a partial run); None: count the run's samples.
        rubrics: every rubric the run judges (a suite's task rubrics), for `rubric_digest`;
            empty: `rubric` alone.
    """

    rubric: Rubric
    model_name: str
    judge_model: str
    api_base: str | None
    config: dict[str, Any]
    role: str = "run"
    parent_run_id: str | None = None
    probe: str | None = None
    manifest_samples: int | None = None
    rubrics: Sequence[Rubric] = ()

    @property
    def rubric_digest(self) -> str:
        """What the run judges against, as content: a re-run with another digest supersedes the run."""
        return rubric_digest(self.rubrics or (self.rubric,))

    @property
    def run_id(self) -> str:
        identity = [self.rubric.rubric, str(self.rubric.version), self.model_name, self.judge_model, self.api_base]
        if self.role != "run":
            # A panel member or probe must not replace the plain run of the same judge (nor the
            # reverse); plain runs keep the ids they always had.
            identity += [self.role, self.parent_run_id, self.probe]
        return hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:16]


def rubric_digest(rubrics: Iterable[Rubric]) -> str:
    """A digest of the rubrics' merged content (criteria, texts, weights, prompt, scoring, ...).

    Args:
        rubrics: the run's rubrics, in any order (task rubrics are sorted by their content).

    Returns:
        64 hex digits; equal for equal content, whatever the files' layout or comments.
    """
    parts = sorted(json.dumps(_content(r), sort_keys=True, default=str) for r in rubrics)
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


# Rubric settings added after digests were first stored, and their unused values: left out of
# the digest while unused, so that an upgrade does not make every stored run look changed (and
# superseded on re-run). Top-level settings, then each metric's.
_LATER_SETTINGS = {"required_outputs": []}
_LATER_METRIC_SETTINGS = {"text_form": "as_is"}


def _content(rubric: Rubric) -> dict[str, Any]:
    data = rubric.model_dump(mode="json")
    for section, later in ((data, _LATER_SETTINGS), *((metric, _LATER_METRIC_SETTINGS) for metric in data.get("metrics", []))):
        for name, unused in later.items():
            if section.get(name) == unused:
                section.pop(name, None)
    return data


def connect(path: Path, read_only: bool = False, external_access: bool = True):
    """A connection to the results database, brought up to date first.

    A read-write connection applies the migrations the file lacks, (re)creates the views and
    macros when this version's differ, and marks runs whose writer died as `interrupted`. A
    read-only connection needs the same, so a reader opens the file read-write once when it is
    behind (a file it may not write is read as it is, unless its tables are too old to read).
    A file from a newer version is refused; a DuckDB file that is not a rubric-judge database is
    read as it is and refused for writing.
    """
    from rubric_judge.store.migrate import check_version, latest_version, schema_version

    if read_only and not Path(path).exists():
        raise UserError(f"database {path} does not exist; run `rubric-judge score` first or pass --db")
    con = _open(path, read_only, external_access)
    try:
        if not read_only:
            _bring_up_to_date(con, path)
            return con
        version = schema_version(con)
        if version is None:  # somebody else's DuckDB file: readable as it is, never modified
            return con
        check_version(path, version)
        if version == latest_version() and _stored_digest(con) == _sql_digest() and not _dead_runs(con):
            return con
    except BaseException:
        con.close()
        raise
    con.close()
    try:
        connect(path).close()
    except UserError:
        if version < latest_version():  # its tables lack columns the views read: nothing would work
            raise UserError(Problem(Location(Path(path)), "written by an older rubric-judge and cannot be upgraded here: the file is not writable",
                                    fix="copy it somewhere writable and pass the copy with --db")) from None
    return _open(path, read_only, external_access)


def open_existing(path: Path):
    """A read-write connection to an existing results database, opened but neither upgraded nor
    written: a caller that may write only after a check (its inputs are sound) opens the file
    while the check runs, then hands the connection to `ResultStore`.

    Args:
        path: the DuckDB file.

    Returns:
        The connection, or None when the file does not exist (creating it is a write).

    Raises:
        UserError: the file cannot be opened (in use by another process, not a DuckDB file).
    """
    return _open(path, False, True) if Path(path).is_file() else None


def _bring_up_to_date(con, path: Path) -> None:
    from rubric_judge.store.migrate import migrate

    migrate(con, path)
    if _stored_digest(con) != _sql_digest():
        con.execute(VIEWS.read_text())
        con.execute(STATS.read_text())
        con.execute("CREATE OR REPLACE TABLE _store_version AS SELECT ? AS digest", [_sql_digest()])
    con.execute(
        "UPDATE runs SET status = 'interrupted', status_detail = coalesce(status_detail, "
        "'the process writing this run ended before it finished (killed or crashed); run the same score command again to resume') "
        "WHERE status = 'running' AND NOT coalesce(writer_pid = ? AND writer_host = ?, false)", _writer())


def _dead_runs(con) -> bool:
    """Whether the file holds `running` runs of other processes. A writer holds DuckDB's exclusive
    lock for its whole run, so a process that could open the file sees only dead writers' runs."""
    return bool(con.execute("SELECT count(*) FROM runs WHERE status = 'running' AND NOT coalesce(writer_pid = ? AND writer_host = ?, false)",
                            _writer()).fetchone()[0])


def _writer() -> list[Any]:
    import socket

    return [os.getpid(), socket.gethostname()]


def load_driver() -> None:
    """Import DuckDB without opening or creating any file, so that a caller can do it while it
    waits to learn whether a file may be written."""
    duckdb_engine()


def _open(path: Path, read_only: bool, external_access: bool):
    duckdb = duckdb_engine()

    try:
        return duckdb.connect(str(path), read_only=read_only, config={"enable_external_access": external_access})
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            # DuckDB lets one process write a file, and nobody read it meanwhile.
            raise UserError(Problem(Location(Path(path)), f"the database is in use by another process (a `rubric-judge score` still running?): {exc}",
                                    fix="wait for that process to finish, or pass another --db")) from None
        raise UserError(f"cannot open {path} as a DuckDB database: {exc}") from None
    except duckdb.Error as exc:
        raise UserError(f"cannot open {path} as a DuckDB database: {exc}") from None


@lru_cache(maxsize=1)
def _sql_digest() -> str:
    """Identifies the views and macros this version writes."""
    return hashlib.sha256("\0".join(f.read_text() for f in (VIEWS, STATS)).encode()).hexdigest()


def _stored_digest(con) -> str | None:
    duckdb = duckdb_engine()

    try:
        row = con.execute("SELECT digest FROM _store_version").fetchone()
    except duckdb.CatalogException:  # written before versions were recorded
        return None
    return row[0] if row else None


# Every insert names its columns, so a migration that adds or reorders columns never shifts a
# value into the wrong one. Row lists given to `_insert` follow these orders.
COLUMNS = {
    "samples": ("run_id", "sample_id", "category", "modality", "missing_outputs", "fields"),
    "judge_calls": ("run_id", "call_id", "sample_id", "grp", "replicate", "cache_key", "cache_hit", "attempts", "status", "error",
                    "latency_ms", "prompt_tokens", "completion_tokens", "cost_usd", "prompt", "response",
                    "original_prompt_tokens", "original_completion_tokens", "original_cost_usd"),
    "verdicts": ("run_id", "sample_id", "criterion_id", "replicate", "dimension", "weight", "met", "score", "confidence", "reasoning",
                 "status", "call_id"),
    "metric_values": ("run_id", "sample_id", "metric", "value", "passed", "status", "detail"),
    "criteria": ("run_id", "sample_id", "criterion_id", "position", "dimension", "dimension_name", "weight", "text",
                 "verdict_kind", "scale_min", "scale_max", "scoring_method", "in_overall", "tags"),
    "run_fields": ("run_id", "field", "kind", "is_output", "label", "position"),
}


class StorageError(UserError):
    """The results database could not be written (disk full, file made read-only, I/O error)."""


class ResultStore:
    """Writes one process's runs into the results database; every write names the file in its
    error when storage fails, and leaves the run marked as not finished."""

    def __init__(self, path: Path, opened=None):
        """Open the results database at `path` for writing, brought up to date.

        Args:
            path: the DuckDB file; created when absent.
            opened: a connection `open_existing(path)` made earlier (the file opened while
                something else ran); None: open it here.
        """
        self.path = Path(path)
        if opened is None:
            self.con = connect(self.path)
        else:
            try:
                _bring_up_to_date(opened, self.path)
            except BaseException:
                opened.close()
                raise
            self.con = opened

    def close(self) -> None:
        with self._writing("close"):
            self.con.close()

    def begin_run(self, run: RunInfo) -> str:
        rubric = run.rubric
        run_id = run.run_id
        scale = rubric.verdict.kind == "scale"
        scoring = rubric.scoring  # None for a metrics-only rubric: no judge scores it
        row = {
            "run_id": run_id, "rubric_id": rubric.rubric, "rubric_version": str(rubric.version), "model_name": run.model_name,
            "judge_model": run.judge_model, "scoring_method": scoring.method.value if scoring else "metrics_only",
            "missing_output": scoring.missing_output.value if scoring else "fail", "unscored_policy": scoring and scoring.unscored,
            "threshold": scoring and scoring.threshold, "pass_criterion": scoring and scoring.criterion,
            "scale_min": rubric.verdict.min if scale else None, "scale_max": rubric.verdict.max if scale else None, "started_at": _now(),
            "finished_at": None, "status": "running", "config": redact(json.dumps(run.config, default=str)),
            "writer_pid": _writer()[0], "writer_host": _writer()[1], "status_detail": None,
            "role": run.role, "parent_run_id": run.parent_run_id, "probe": run.probe, "manifest_samples": run.manifest_samples,
            "rubric_digest": run.rubric_digest, "superseded_by": None, "superseded_at": None,
        }
        with self._writing("start the run"), self._transaction():
            previous = self.con.execute("SELECT rubric_digest FROM runs WHERE run_id = ?", [run_id]).fetchone()
            # A run written before digests were recorded (NULL) is replaced, as it always was.
            if previous is not None and previous[0] is not None and previous[0] != row["rubric_digest"]:
                self._supersede(run_id, row["started_at"])
            for table in TABLES:
                self.con.execute(f"DELETE FROM {table} WHERE run_id = ?", [run_id])
            self.con.execute(f"INSERT INTO runs ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", list(row.values()))
        return run_id

    def _supersede(self, run_id: str, at: datetime) -> dict[str, str]:
        """Keep a run that a re-run with changed rubric content replaces: move its rows, and those
        of the runs that belong to it (a panel's members, a run's probe), to archive ids, marked
        superseded by the id they held. Called inside `begin_run`'s transaction.

        Returns:
            Each moved run's id and its archive id.
        """
        moved: dict[str, str] = {}
        pending = [run_id]
        while pending:
            current = pending.pop()
            digest, started = self.con.execute("SELECT rubric_digest, started_at FROM runs WHERE run_id = ?", [current]).fetchone()
            # Unique per run: the same content run twice at different times gets two archive ids.
            moved[current] = hashlib.sha256(json.dumps([current, digest, str(started)]).encode()).hexdigest()[:16]
            pending += [child for (child,) in self.con.execute(
                "SELECT run_id FROM runs WHERE parent_run_id = ? AND superseded_by IS NULL", [current]).fetchall() if child not in moved]
        for old, new in moved.items():
            for table, columns in RUN_ROW_COLUMNS.items():
                for column in columns:
                    self.con.execute(f"UPDATE {table} SET {column} = ? WHERE {column} = ?", [new, old])
            self.con.execute("UPDATE runs SET run_id = ?, superseded_by = ?, superseded_at = ? WHERE run_id = ?", [new, old, at, old])
        for old, new in moved.items():
            self.con.execute("UPDATE runs SET parent_run_id = ? WHERE parent_run_id = ? AND run_id IN (SELECT unnest(?))", [new, old, list(moved.values())])
        return moved

    def finish_run(self, run_id: str, status: str, detail: str | None = None) -> None:
        """Record how the run ended: finished | partial (finished over a selection of the samples) |
        stopped (budget) | interrupted | failed, and why."""
        with self._writing("record how the run ended"):
            self.con.execute("UPDATE runs SET finished_at = ?, status = ?, status_detail = ? WHERE run_id = ?", [_now(), status, redact(detail) if detail else None, run_id])

    def write_samples(self, run_id: str, plans: Sequence[SamplePlan], replicates: int) -> None:
        rows = []
        for plan in plans:
            fields = {k: (str(v) if isinstance(v, Path) else v) for k, v in plan.sample.fields.items()}
            rows.append([run_id, plan.sample.id, _text(fields.get("category")), _text(fields.get("modality")), list(plan.sample.missing_outputs), json.dumps(fields, default=str)])
        missing = [
            [run_id, plan.sample.id, c.id, replicate, c.dimension, c.weight, None, None, None, None, "missing_output", None]
            for plan in plans for c in plan.unjudged for replicate in range(replicates)
        ]
        with self._writing("write the samples"), self._transaction():
            self._insert("samples", rows)
            self._insert("verdicts", missing)
            self._insert("criteria", criterion_rows(run_id, plans))
            self._insert("run_fields", field_rows(run_id, plans))

    def write_outcomes(self, run_id: str, outcomes: Iterable[Outcome]) -> None:
        from rubric_judge.planning.compile import TextPart

        calls, verdicts = [], []
        for outcome in outcomes:
            call = outcome.call
            call_id = f"{call.sample_id}/{call.group}/{call.replicate}"
            prompt = "\n".join(p.text if isinstance(p, TextPart) else f"[image sha256:{p.info.sha256}]" for p in call.parts)
            original = [outcome.prompt_tokens, outcome.completion_tokens, outcome.cost_usd]
            # What this call paid: nothing for a cache hit (its answer was paid for before), so
            # sum(cost_usd) is the run's spend, as the CLI summary reports it.
            paid = [0, 0, 0.0] if outcome.cache_hit else original
            calls.append([
                run_id, call_id, call.sample_id, call.group, call.replicate, call.cache_key, outcome.cache_hit, outcome.attempts,
                "error" if outcome.status == "skipped" else outcome.status, outcome.error, outcome.latency_ms,
                *paid, prompt, json.dumps(outcome.answer) if outcome.answer is not None else None, *original,
            ])
            for criterion in call.criteria:
                answer = (outcome.answer or {}).get(criterion.id)
                if outcome.status == "ok" and answer is not None:
                    met = answer.get("satisfied")
                    verdicts.append([run_id, call.sample_id, criterion.id, call.replicate, criterion.dimension, criterion.weight,
                                     met, answer.get("score"), answer.get("confidence"), answer.get("reasoning"), "ok", call_id])
                else:
                    # No valid verdict: never read as "not met". unscored = the judge answered invalidly.
                    status = "unscored" if outcome.status in ("ok", "unscored") else "error"
                    verdicts.append([run_id, call.sample_id, criterion.id, call.replicate, criterion.dimension, criterion.weight,
                                     None, None, None, outcome.error, status, call_id])
        with self._writing("write judge answers"), self._transaction():
            self._insert("judge_calls", calls)
            self._insert("verdicts", verdicts)

    def write_metrics(self, run_id: str, rows: Iterable[MetricRow]) -> None:
        values = [[run_id, r.sample_id, r.metric, r.value, r.passed, r.status, r.detail or None] for r in rows]
        with self._writing("write metric values"), self._transaction():
            self._insert("metric_values", values)

    def metric_summary(self, run_id: str) -> list[dict[str, Any]]:
        return records(self.con.execute("SELECT * FROM metric_summary WHERE run_id = ? ORDER BY metric", [run_id]))

    def leaderboard(self, rubric_id: str | None = None) -> list[dict[str, Any]]:
        return leaderboard(self.con, rubric_id)

    def run_scores(self, run_id: str) -> list[dict[str, Any]]:
        """The run's `leaderboard` rows, 'overall' first: read on the writing connection, so the
        end-of-run summary needs no second connection to the file."""
        return records(self.con.execute("SELECT * FROM leaderboard WHERE run_id = ? ORDER BY dimension <> 'overall', dimension", [run_id]))

    def _insert(self, table: str, rows: list[list[Any]]) -> None:
        # One statement over column lists: executemany costs ~3 ms a row in DuckDB, which made
        # a fully cached 9,015-verdict re-run take over a minute.
        if not rows:
            return
        names = COLUMNS[table]
        # Every text cell, in whichever table: errors, prompts, answers, reasoning, details.
        columns = [redact_column(column) for column in zip(*rows, strict=True)]
        if len(columns) != len(names):
            raise ValueError(f"{table} rows have {len(columns)} values, expected {len(names)}: {', '.join(names)}")
        selected = ", ".join(f"unnest(${i + 1})" for i in range(len(columns)))
        self.con.execute(f"INSERT OR REPLACE INTO {table} ({', '.join(names)}) SELECT {selected}", columns)

    def _transaction(self):
        return _Transaction(self.con)

    @contextlib.contextmanager
    def _writing(self, what: str):
        """Turn a failed write (disk full, read-only file, I/O error) into one StorageError that
        names the file and what to do; nothing is lost that a re-run cannot recover, since every
        paid answer is in the verdict cache before it is written here."""
        duckdb = duckdb_engine()

        try:
            yield
        except (duckdb.IOException, duckdb.TransactionException, duckdb.OutOfMemoryException, duckdb.FatalException,
                duckdb.PermissionException, OSError) as exc:
            detail = " ".join(str(exc).split())[:300]
            full = "space" in detail.lower() or "full" in detail.lower()
            fix = (f"free space on the disk that holds {self.path} (or pass another --db), then run the same command again: "
                   "paid answers are in the verdict cache and cost nothing again") if full else (
                   f"make {self.path} writable (or pass another --db), then run the same command again; paid answers are in the verdict cache")
            raise StorageError(Problem(Location(self.path), f"cannot {what} in the results database: {detail}", fix=fix)) from None


def records(cursor) -> list[dict[str, Any]]:
    """The rest of a DuckDB result as one dict per row, keyed by column name.

    Values are DuckDB's own Python values (NULL is None, never NaN as a DataFrame would make
    it), so callers can tell a missing number from a number.

    Args:
        cursor: a DuckDB connection or cursor right after `execute` of a query.

    Returns:
        The rows in the result's order; [] for a result without rows.
    """
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


class _Transaction:
    def __init__(self, con):
        self.con = con

    def __enter__(self):
        self.con.execute("BEGIN TRANSACTION")

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.con.execute("COMMIT")
        else:
            with contextlib.suppress(Exception):  # a failed commit or a dead connection has nothing to roll back
                self.con.execute("ROLLBACK")


def leaderboard(con, rubric_id: str | None = None) -> list[dict[str, Any]]:
    sql = "SELECT * FROM leaderboard" + (" WHERE rubric_id = ?" if rubric_id else "") + " ORDER BY rubric_id, dimension = 'overall' DESC, dimension, score DESC NULLS LAST"
    return records(con.execute(sql, [rubric_id] if rubric_id else []))


def criterion_rows(run_id: str, plans: Sequence[SamplePlan]) -> list[list[Any]]:
    """`criteria` rows: each criterion judged (or left unjudged) for each sample, with its text
    as the judge saw it (template variables rendered), how its dimension is judged and scored
    (verdict kind, scale bounds, method), whether it pools into the overall score, and its tags."""
    rows = []
    for plan in plans:
        rubric = plan.rubric
        position = {c.id: i for i, c in enumerate(rubric.criteria)}
        dimensions = {d.id: d for d in rubric.dimensions}
        seen: dict[str, Criterion] = {}
        for criterion in (*(c for call in plan.calls for c in call.criteria), *plan.unjudged, *plan.criteria):
            seen.setdefault(criterion.id, criterion)
        for c in seen.values():
            dimension = dimensions.get(c.dimension)
            verdict = rubric.verdict_for(dimension) if dimension else rubric.verdict
            scale = verdict.kind == "scale"
            rows.append([run_id, plan.sample.id, c.id, position.get(c.id, len(position)), c.dimension,
                         dimension.title if dimension else None, c.weight, c.text, verdict.kind,
                         verdict.min if scale else None, verdict.max if scale else None,
                         rubric.method_for(dimension) if dimension else None, verdict.kind == rubric.verdict.kind, list(c.tags)])
    return rows


def field_rows(run_id: str, plans: Sequence[SamplePlan]) -> list[list[Any]]:
    """`run_fields` rows: the union over the run's rubrics (task rubrics share a base) of the
    declared inputs, whether the model produces them, and the judge's image label and order."""
    rows: dict[str, list[Any]] = {}
    for rubric in {id(p.rubric): p.rubric for p in plans}.values():
        slots = {slot.field: (i, slot.label or slot.field) for i, slot in enumerate(rubric.images)}
        for name, spec in rubric.inputs.items():
            position, label = slots.get(name, (None, None))
            rows.setdefault(name, [run_id, name, spec.kind.value, name in rubric.outputs, label, position])
    return list(rows.values())


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def write_imported_run(store: ResultStore, run: RunInfo, samples: Sequence[Sequence[Any]], calls: Sequence[Sequence[Any]],
                       verdicts: Sequence[Sequence[Any]], criteria: Sequence[Sequence[Any]] = (),
                       fields: Sequence[Sequence[Any]] = ()) -> str:
    """Write a run whose verdicts come from elsewhere (e.g. a benchmark's own evaluation script).

    Rows are those of `samples`, `judge_calls`, `verdicts` and, optionally, `criteria` (the
    texts the report shows) and `run_fields`, in the column order of `COLUMNS` without the
    leading `run_id` (a `judge_calls` row may stop before the original_* columns: they are
    then its paid figures); the run replaces an earlier one with the same identity (or, when
    the rubric's content changed, supersedes it), and is finished in one go.
    """
    run_id = store.begin_run(run)
    with store._writing("write the imported run"), store._transaction():
        store._insert("samples", [[run_id, *row] for row in samples])
        store._insert("judge_calls", [[run_id, *_with_original_cost(row)] for row in calls])
        store._insert("verdicts", [[run_id, *row] for row in verdicts])
        # Importers may pass the rows of migration 3 (no verdict kind, method or tags): NULL there.
        width = len(COLUMNS["criteria"]) - 1
        store._insert("criteria", [[run_id, *row, *[None] * (width - len(row))] for row in criteria])
        store._insert("run_fields", [[run_id, *row] for row in fields])
    store.finish_run(run_id, "finished")
    return run_id


def _with_original_cost(row: Sequence[Any]) -> list[Any]:
    """A `judge_calls` row (without run_id) with its original_* figures: an importer that does not
    give them wrote what each call paid, which is what the answer cost."""
    names = COLUMNS["judge_calls"][1:]
    if len(row) == names.index("original_prompt_tokens"):
        paid = [row[names.index(name)] for name in ("prompt_tokens", "completion_tokens", "cost_usd")]
        return [*row, *paid]
    return list(row)
