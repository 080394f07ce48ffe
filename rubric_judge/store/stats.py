"""Bootstrap confidence intervals for `leaderboard` and `compare`: a thin layer over stats.sql.

The statistics are SQL (table macros `leaderboard_bootstrap` and `paired_bootstrap`, view
`leaderboard_ci`) so that any DuckDB client gets the same numbers; this module validates the
options, picks the runs to compare and reads the macros on a read-only connection without file
access, like `rubric-judge query`.
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

    @property
    def partial(self) -> bool:
        """Whether the run covers only part of its work: not finished, or samples left unscored."""
        return self.status != "finished"

    def describe(self) -> str:
        state = "" if not self.partial else f", {self.status}: {self.samples_scored} of {self.samples_total} samples scored"
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


def find_pair(db: Path, model_a: str, model_b: str, rubric_id: str | None = None, judge_model: str | None = None,
              allow_partial: bool = False) -> tuple[Run, Run]:
    """The two runs to compare: each named by model name (or run id), on the same rubric.

    More than one matching pair (several rubrics, judges or rubric versions) is an error that
    lists the runs, so a comparison never silently picks one. A run that did not finish
    (interrupted, stopped, failed) is refused unless `allow_partial`: its scores cover only part
    of its samples, and the paired comparison would silently drop the rest.
    """
    _, rows = _select(db, "SELECT r.run_id, r.rubric_id, r.rubric_version, r.model_name, r.judge_model, r.status, "
                          "coalesce(l.samples_scored, 0), coalesce(l.samples_total, 0) "
                          "FROM runs r LEFT JOIN leaderboard l ON l.run_id = r.run_id AND l.dimension = 'overall' "
                          # Panel members and probes repeat another run's model and judge: compare the runs they belong to.
                          "WHERE coalesce(r.role, 'run') IN ('run', 'panel') ORDER BY ALL", [])
    runs = [Run(*row) for row in rows]
    named: dict[str, list[Run]] = {}
    for model in (model_a, model_b):
        named[model] = [r for r in runs if model in (r.model_name, r.run_id)]
        if not named[model]:
            models = ", ".join(sorted({r.model_name for r in runs})) or "none"
            raise UserError(Problem(Location(Path(db)), f"no run of model {model!r} (models in the database: {models})", fix="check the model name"))
    chosen = {model: [r for r in found if rubric_id in (None, r.rubric_id) and judge_model in (None, r.judge_model)] for model, found in named.items()}
    pairs = [(a, b) for a in chosen[model_a] for b in chosen[model_b] if a.rubric_id == b.rubric_id and a.run_id != b.run_id]
    if len(pairs) == 1:
        partial = [run for run in pairs[0] if run.partial]
        if partial and not allow_partial:
            raise UserError([Problem(Location(Path(db)), f"run {run.describe()} did not finish, so its scores cover part of its samples",
                                     fix="finish it (run the same score command again: cached calls are free), or compare anyway "
                                         "with allow_partial (--allow-partial)") for run in partial])
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
