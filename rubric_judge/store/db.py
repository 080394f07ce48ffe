"""The results database: one DuckDB file with the schema in schema.sql, scoring views in views.sql
and statistics (bootstrap intervals) in stats.sql.

Writes are idempotent: a run's id is derived from (rubric, version, model, judge, api base), a
new run with the same id first removes that run's rows, and every table has a primary key, so a
re-run or a resume replaces rows and never duplicates them. Rows are written as outcomes
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

from rubric_judge.redaction import redact, redact_data

if TYPE_CHECKING:  # at run time only for writing: readers (query, report) stay free of litellm
    from rubric_judge.judge.executor import Outcome
    from rubric_judge.metrics import MetricRow
    from rubric_judge.rubrics.compile import SamplePlan
    from rubric_judge.rubrics.schema import Criterion, Rubric

SCHEMA = Path(__file__).with_name("schema.sql")
VIEWS = Path(__file__).with_name("views.sql")
STATS = Path(__file__).with_name("stats.sql")
TABLES = ("runs", "samples", "judge_calls", "verdicts", "metric_values", "criteria", "run_fields")


def default_db_path() -> Path:
    return Path(os.environ.get("RUBRIC_JUDGE_DB", "rubric-judge.duckdb"))


@dataclass(frozen=True)
class RunInfo:
    rubric: Rubric
    model_name: str
    judge_model: str
    api_base: str | None
    config: dict[str, Any]

    @property
    def run_id(self) -> str:
        identity = json.dumps([self.rubric.rubric, str(self.rubric.version), self.model_name, self.judge_model, self.api_base])
        return hashlib.sha256(identity.encode()).hexdigest()[:16]


def connect(path: Path, read_only: bool = False, external_access: bool = True):
    """A connection to the results database. Read-write connections (re)create the schema, views
    and macros; a read-only one first brings a results database written by another version up to
    date (by opening it read-write once), so every reader sees the current views."""
    from rubric_judge.errors import UserError

    if read_only and not Path(path).exists():
        raise UserError(f"database {path} does not exist; run `rubric-judge score` first or pass --db")
    con = _open(path, read_only, external_access)
    if not read_only:
        con.execute(SCHEMA.read_text())
        con.execute(VIEWS.read_text())
        con.execute(STATS.read_text())
        con.execute("CREATE OR REPLACE TABLE _store_version AS SELECT ? AS digest", [_sql_digest()])
    elif _stored_digest(con) != _sql_digest() and _is_results_database(con):
        con.close()
        with contextlib.suppress(UserError):  # a file we may not write: read it as it is
            connect(path).close()
        con = _open(path, read_only, external_access)
    return con


def _open(path: Path, read_only: bool, external_access: bool):
    import duckdb

    from rubric_judge.errors import Location, Problem, UserError

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
    """Identifies the schema, views and macros this version writes."""
    return hashlib.sha256("\0".join(f.read_text() for f in (SCHEMA, VIEWS, STATS)).encode()).hexdigest()


def _is_results_database(con) -> bool:
    # Only ever update a rubric-judge database; a reader never writes into somebody else's file.
    return bool(con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'runs' AND database_name = current_database()").fetchone()[0])


def _stored_digest(con) -> str | None:
    import duckdb

    try:
        row = con.execute("SELECT digest FROM _store_version").fetchone()
    except duckdb.CatalogException:  # written before versions were recorded
        return None
    return row[0] if row else None


class ResultStore:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.con = connect(self.path)

    def close(self) -> None:
        self.con.close()

    def begin_run(self, run: RunInfo) -> str:
        rubric = run.rubric
        run_id = run.run_id
        with self._transaction():
            for table in TABLES:
                self.con.execute(f"DELETE FROM {table} WHERE run_id = ?", [run_id])
            self.con.execute(
                "INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, 'running', ?)",
                [
                    run_id, rubric.rubric, str(rubric.version), run.model_name, run.judge_model,
                    rubric.scoring.method.value, rubric.scoring.missing_output.value, rubric.scoring.unscored, rubric.scoring.threshold,
                    rubric.scoring.criterion, rubric.verdict.min if rubric.verdict.kind == "scale" else None,
                    rubric.verdict.max if rubric.verdict.kind == "scale" else None, _now(), redact(json.dumps(run.config, default=str)),
                ],
            )
        return run_id

    def finish_run(self, run_id: str, status: str) -> None:
        self.con.execute("UPDATE runs SET finished_at = ?, status = ? WHERE run_id = ?", [_now(), status, run_id])

    def write_samples(self, run_id: str, plans: Sequence[SamplePlan], replicates: int) -> None:
        rows = []
        for plan in plans:
            fields = {k: (str(v) if isinstance(v, Path) else v) for k, v in plan.sample.fields.items()}
            rows.append([run_id, plan.sample.id, _text(fields.get("category")), _text(fields.get("modality")), list(plan.sample.missing_outputs), json.dumps(fields, default=str)])
        missing = [
            [run_id, plan.sample.id, c.id, replicate, c.dimension, c.weight, None, None, None, None, "missing_output", None]
            for plan in plans for c in plan.unjudged for replicate in range(replicates)
        ]
        with self._transaction():
            self._insert("samples", rows)
            self._insert("verdicts", missing)
            self._insert("criteria", criterion_rows(run_id, plans))
            self._insert("run_fields", field_rows(run_id, plans))

    def write_outcomes(self, run_id: str, outcomes: Iterable[Outcome]) -> None:
        from rubric_judge.rubrics.compile import TextPart

        calls, verdicts = [], []
        for outcome in outcomes:
            call = outcome.call
            call_id = f"{call.sample_id}/{call.group}/{call.replicate}"
            prompt = "\n".join(p.text if isinstance(p, TextPart) else f"[image sha256:{p.info.sha256}]" for p in call.parts)
            calls.append([
                run_id, call_id, call.sample_id, call.group, call.replicate, call.cache_key, outcome.cache_hit, outcome.attempts,
                "error" if outcome.status == "skipped" else outcome.status, outcome.error, outcome.latency_ms,
                outcome.prompt_tokens, outcome.completion_tokens, outcome.cost_usd, prompt,
                json.dumps(outcome.answer) if outcome.answer is not None else None,
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
        with self._transaction():
            self._insert("judge_calls", calls)
            self._insert("verdicts", verdicts)

    def write_metrics(self, run_id: str, rows: Iterable[MetricRow]) -> None:
        values = [[run_id, r.sample_id, r.metric, r.value, r.passed, r.status, r.detail or None] for r in rows]
        with self._transaction():
            self._insert("metric_values", values)

    def metric_summary(self, run_id: str) -> list[dict[str, Any]]:
        cursor = self.con.execute("SELECT * FROM metric_summary WHERE run_id = ? ORDER BY metric", [run_id])
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def leaderboard(self, rubric_id: str | None = None) -> list[dict[str, Any]]:
        return leaderboard(self.con, rubric_id)

    def _insert(self, table: str, rows: list[list[Any]]) -> None:
        # One statement over column lists: executemany costs ~3 ms a row in DuckDB, which made
        # a fully cached 9,015-verdict re-run take over a minute.
        if not rows:
            return
        # Every text cell, in whichever table: errors, prompts, answers, reasoning, details.
        columns = [[redact_data(cell) for cell in column] for column in zip(*rows, strict=True)]
        selected = ", ".join(f"unnest(${i + 1})" for i in range(len(columns)))
        self.con.execute(f"INSERT OR REPLACE INTO {table} SELECT {selected}", columns)

    def _transaction(self):
        return _Transaction(self.con)


class _Transaction:
    def __init__(self, con):
        self.con = con

    def __enter__(self):
        self.con.execute("BEGIN TRANSACTION")

    def __exit__(self, exc_type, exc, tb):
        self.con.execute("ROLLBACK" if exc_type else "COMMIT")


def leaderboard(con, rubric_id: str | None = None) -> list[dict[str, Any]]:
    sql = "SELECT * FROM leaderboard" + (" WHERE rubric_id = ?" if rubric_id else "") + " ORDER BY rubric_id, dimension = 'overall' DESC, dimension, score DESC NULLS LAST"
    cursor = con.execute(sql, [rubric_id] if rubric_id else [])
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def criterion_rows(run_id: str, plans: Sequence[SamplePlan]) -> list[list[Any]]:
    """`criteria` rows: each criterion judged (or left unjudged) for each sample, with its text."""
    rows = []
    for plan in plans:
        position = {c.id: i for i, c in enumerate(plan.rubric.criteria)}
        names = {d.id: d.title for d in plan.rubric.dimensions}
        seen: dict[str, Criterion] = {}
        for criterion in (*(c for call in plan.calls for c in call.criteria), *plan.unjudged):
            seen.setdefault(criterion.id, criterion)
        rows.extend([run_id, plan.sample.id, c.id, position.get(c.id, len(position)), c.dimension, names.get(c.dimension), c.weight, c.text]
                    for c in seen.values())
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
    texts the report shows) and `run_fields` without their leading `run_id`; the run replaces
    an earlier one with the same identity, and is finished in one go.
    """
    run_id = store.begin_run(run)
    with store._transaction():
        store._insert("samples", [[run_id, *row] for row in samples])
        store._insert("judge_calls", [[run_id, *row] for row in calls])
        store._insert("verdicts", [[run_id, *row] for row in verdicts])
        store._insert("criteria", [[run_id, *row] for row in criteria])
        store._insert("run_fields", [[run_id, *row] for row in fields])
    store.finish_run(run_id, "finished")
    return run_id
