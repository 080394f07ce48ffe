"""Bootstrap confidence intervals for `leaderboard` and `compare`: a thin layer over stats.sql.

The statistics are SQL (table macros `leaderboard_bootstrap` and `paired_bootstrap`, view
`leaderboard_ci`) so that any DuckDB client gets the same numbers; this module validates the
options, picks the runs to compare and reads the macros on a read-only connection without file
access, like `rubric-judge query`. Two versions of a rubric on one model (a run and the run it
superseded) compare the same way, and per criterion with `criterion_changes`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rubric_judge.errors import Location, Problem, UserError
from rubric_judge.store.db import connect

# 100,000 resamples already pin a 95 % interval's ends to ~0.1 % of its width; more only costs
# time and memory (the resampling joins resamples x samples rows per group).
MAX_RESAMPLES = 100_000


@dataclass(frozen=True)
class Bootstrap:
    """Options of a percentile bootstrap; invalid values are a UserError (exit code 2)."""

    resamples: int = 1000
    seed: int = 0
    level: float = 0.95

    def __post_init__(self) -> None:
        problems = []
        if not 1 <= self.resamples <= MAX_RESAMPLES:
            problems.append(_problem("resamples", f"must be between 1 and {MAX_RESAMPLES:,}, not {self.resamples}", "1000 is plenty for a 95 % interval"))
        if not -(2**63) <= self.seed < 2**63:
            problems.append(_problem("seed", f"must fit in a 64-bit signed integer, not {self.seed}", "use a smaller seed, e.g. 0"))
        if not (math.isfinite(self.level) and 0 < self.level < 1):
            problems.append(_problem("level", f"is a coverage between 0 and 1 (exclusive), not {self.level}", "e.g. 0.95 for a 95 % interval"))
        if problems:
            raise UserError(problems)

    @property
    def params(self) -> list[Any]:
        return [self.resamples, self.seed, self.level]


@dataclass(frozen=True)
class Run:
    run_id: str
    rubric_id: str
    rubric_version: str
    model_name: str
    judge_model: str
    status: str = "finished"  # running | finished | stopped | interrupted | failed
    samples_scored: int = 0
    samples_total: int = 0
    rubric_digest: str | None = None
    superseded_by: str | None = None
    started_at: Any = None

    @property
    def partial(self) -> bool:
        """Whether the run covers only part of its work: not finished, or samples left unscored."""
        return self.status != "finished"

    def describe(self) -> str:
        state = "" if not self.partial else f", {self.status}: {self.samples_scored} of {self.samples_total} samples scored"
        if self.superseded_by:
            content = f", rubric {self.rubric_digest[:12]}" if self.rubric_digest else ""
            state += f", superseded by {self.superseded_by}{content}, started {self.started_at}"
        return f"{self.model_name} on {self.rubric_id} v{self.rubric_version}, judge {self.judge_model} (run {self.run_id}{state})"


def leaderboard(db: Path, options: Bootstrap, rubric_id: str | None = None) -> tuple[list[str], list[tuple[Any, ...]]]:
    """The leaderboard rows with their intervals, rounded for display like `score`.

    `score` and `accuracy_rate` are the leaderboard view's; the macro's own point estimate
    differs from them only when samples have unequal numbers of scored replicates.
    """
    sql = f"""
        SELECT l.rubric_id, l.model_name, l.judge_model, l.dimension,
               round(l.score, 4) AS score, round(c.ci_low, 4) AS ci_low, round(c.ci_high, 4) AS ci_high,
               round(l.accuracy_rate, 4) AS accuracy_rate,
               round(c.accuracy_ci_low, 4) AS accuracy_ci_low, round(c.accuracy_ci_high, 4) AS accuracy_ci_high,
               l.samples_scored, l.samples_excluded, l.missing_outputs, l.unscored_verdicts, l.status, l.samples_total, l.score_note
        FROM leaderboard l
        JOIN leaderboard_bootstrap(resamples := ?, seed := ?, level := ?) c USING (run_id, dimension)
        {"WHERE l.rubric_id = ?" if rubric_id else ""}
        ORDER BY l.rubric_id, l.dimension = 'overall' DESC, l.dimension, l.score DESC NULLS LAST, l.model_name
    """
    return _select(db, sql, [*options.params, *([rubric_id] if rubric_id else [])])


_RUNS_SQL = """
    SELECT run_id, rubric_id, rubric_version, model_name, judge_model, status, samples_scored, samples_total,
           rubric_digest, superseded_by, started_at
    FROM run_summary
    -- Panel members and probes repeat another run's model and judge: compare the runs they belong to.
    WHERE role IN ('run', 'panel') ORDER BY started_at, run_id
"""


def _runs(db: Path) -> list[Run]:
    _, rows = _select(db, _RUNS_SQL, [])
    return [Run(*row) for row in rows]


def find_pair(db: Path, model_a: str, model_b: str, rubric_id: str | None = None, judge_model: str | None = None,
              allow_partial: bool = False) -> tuple[Run, Run]:
    """The two runs to compare: each named by model name (or run id), on the same rubric.

    A model name names its current runs (a run superseded by a re-run with an edited rubric is
    named by its run id). More than one matching pair (several rubrics, judges or rubric
    versions) is an error that lists the runs, so a comparison never silently picks one. A run
    that did not finish (interrupted, stopped, failed) is refused unless `allow_partial`: its
    scores cover only part of its samples, and the paired comparison would silently drop the rest.
    """
    runs = _runs(db)
    named: dict[str, list[Run]] = {}
    for model in (model_a, model_b):
        named[model] = [r for r in runs if model == r.run_id or (model == r.model_name and r.superseded_by is None)]
        if not named[model]:
            models = ", ".join(sorted({r.model_name for r in runs})) or "none"
            raise UserError(Problem(Location(Path(db)), f"no run of model {model!r} (models in the database: {models})", fix="check the model name"))
    chosen = {model: [r for r in found if rubric_id in (None, r.rubric_id) and judge_model in (None, r.judge_model)] for model, found in named.items()}
    pairs = [(a, b) for a in chosen[model_a] for b in chosen[model_b] if a.rubric_id == b.rubric_id and a.run_id != b.run_id]
    if len(pairs) == 1:
        _check_finished(db, pairs[0], allow_partial)
        return pairs[0]
    if pairs:
        listed = "; ".join(r.describe() for r in dict.fromkeys(r for pair in pairs for r in pair))
        message = f"{len(pairs)} pairs of runs of {model_a!r} and {model_b!r} could be compared: {listed}"
        fix = "pass --rubric ID and/or --judge MODEL to choose one pair, or give run ids instead of model names"
    else:
        listed = "; ".join(r.describe() for r in dict.fromkeys(named[model_a] + named[model_b]))
        message = f"{model_a!r} and {model_b!r} have no runs of a common rubric{' with the given --rubric/--judge' if rubric_id or judge_model else ''} (runs: {listed})"
        fix = "compare two runs of the same rubric; check --rubric and --judge"
    raise UserError(Problem(Location(Path(db)), message, fix=fix))


def find_runs(db: Path, first: str, second: str, allow_partial: bool = False) -> tuple[Run, Run]:
    """Two runs named by run id (or an unambiguous start of one), current or superseded: e.g.
    two versions of a rubric on one model (`rubric-judge runs --all` lists them).

    Raises:
        UserError: a name matches no run or several, both name the same run, or a run did not
            finish and not `allow_partial`.
    """
    runs = _runs(db)
    found = []
    for ref in (first, second):
        matches = [r for r in runs if r.run_id == ref] or [r for r in runs if r.run_id.startswith(ref)]
        if len(matches) != 1:
            problem = "no run" if not matches else f"{len(matches)} runs ({', '.join(r.run_id for r in matches)})"
            raise UserError(Problem(Location(Path(db)), f"{problem} with run id {ref!r}", field="--run",
                                    fix="give a run id from `rubric-judge runs --all`"))
        found.append(matches[0])
    if found[0].run_id == found[1].run_id:
        raise UserError(Problem(Location(Path(db)), f"both --run options name run {found[0].run_id}", field="--run", fix="give two different runs"))
    pair = (found[0], found[1])
    _check_finished(db, pair, allow_partial)
    return pair


def find_previous(db: Path, model: str, rubric_id: str | None = None, judge_model: str | None = None,
                  allow_partial: bool = False) -> tuple[Run, Run]:
    """A model's current run and the run it superseded most recently: what the last rubric edit
    changed. The current run is A, the earlier version B, so a difference reads new - old.

    Raises:
        UserError: no current run, several (pass rubric_id / judge_model), or none superseded.
    """
    runs = _runs(db)
    current = [r for r in runs if r.superseded_by is None and model in (r.model_name, r.run_id)
               and rubric_id in (None, r.rubric_id) and judge_model in (None, r.judge_model)]
    if len(current) != 1:
        listed = "; ".join(r.describe() for r in current)
        message = f"no current run of {model!r}" if not current else f"{len(current)} current runs of {model!r}: {listed}"
        raise UserError(Problem(Location(Path(db)), message, fix="pass --rubric ID and/or --judge MODEL, or name the runs with --run"))
    earlier = [r for r in runs if r.superseded_by == current[0].run_id]
    if not earlier:
        raise UserError(Problem(Location(Path(db)), f"run {current[0].describe()} has no earlier version",
                                fix="edit the rubric and score again (the earlier run is kept), or compare two runs with --run"))
    pair = (current[0], earlier[-1])  # runs are ordered by start: the latest earlier version
    _check_finished(db, pair, allow_partial)
    return pair


def _check_finished(db: Path, pair: tuple[Run, Run], allow_partial: bool) -> None:
    partial = [run for run in pair if run.partial]
    if partial and not allow_partial:
        raise UserError([Problem(Location(Path(db)), f"run {run.describe()} did not finish, so its scores cover part of its samples",
                                 fix="finish it (run the same score command again: cached calls are free), or compare anyway "
                                     "with allow_partial (--allow-partial)") for run in partial])


def criterion_changes(db: Path, a: Run, b: Run) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Per criterion: how its definition changed between the runs (text, weight, dimension,
    added, removed) and its verdicts in each (stats.sql `criterion_changes`)."""
    return _select(db, "SELECT * FROM criterion_changes(?, ?)", [a.run_id, b.run_id])


def paired(db: Path, a: Run, b: Run, options: Bootstrap) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Per dimension: means over the samples scored in both runs, a - b and its interval."""
    return _select(db, "SELECT * FROM paired_bootstrap(?, ?, resamples := ?, seed := ?, level := ?)", [a.run_id, b.run_id, *options.params])


def _select(db: Path, sql: str, params: list[Any]) -> tuple[list[str], list[tuple[Any, ...]]]:
    import duckdb

    con = connect(db, read_only=True, external_access=False)
    try:
        cursor = con.execute(sql, params)
        return [d[0] for d in cursor.description], cursor.fetchall()
    except duckdb.Error as exc:
        raise UserError(f"SQL error: {exc}") from None
    finally:
        con.close()


def _problem(option: str, message: str, fix: str) -> Problem:
    return Problem(Location(None), message, field=option, fix=fix)
