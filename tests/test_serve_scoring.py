"""The reward server's Python scoring formula against the DuckDB views `score` uses: the same
verdicts must give the same task and dimension scores, under every method and policy, so the
two can never drift."""

from __future__ import annotations

import math
from pathlib import Path

import duckdb
import pytest
from conftest import mixed_policy

from rubric_judge.rubrics.loader import load_rubric_set
from rubric_judge.rubrics.schema import MissingOutputPolicy
from rubric_judge.run import score
from rubric_judge.serve.scoring import Verdict, sample_score

ROOT = Path(__file__).resolve().parents[1]


ILLUGEN = ROOT / "examples" / "illugenbench"
MEDGEN = ROOT / "examples" / "medgen"


def _scored_db(tmp_path: Path, judge_server, rubric, data, outputs) -> Path:
    db = tmp_path / "r.duckdb"
    judge_server.policy = mixed_policy
    result = score(rubric, data=data, outputs=outputs, model="m", judge="openai/test-judge", api_base=judge_server.base_url,
                   transport="direct", db=db, cache_dir=tmp_path / "cache")
    assert result.status == "finished"
    return db


def _compare(db: Path, rubrics: dict[str, object], general) -> int:
    """Every sample's views score against sample_score on the same verdicts; returns samples compared."""
    con = duckdb.connect(str(db))
    try:
        verdicts: dict[str, list[Verdict]] = {}
        for sample_id, criterion_id, dimension, weight, status, met, value in con.execute(
                "SELECT sample_id, criterion_id, dimension, weight, status, met, score FROM verdicts ORDER BY sample_id, criterion_id").fetchall():
            verdicts.setdefault(sample_id, []).append(Verdict(criterion_id, dimension, weight, status, met, value))
        tasks = {row[0]: row[1:] for row in con.execute("SELECT sample_id, score, passed, excluded FROM task_scores").fetchall()}
        dims = {(r[0], r[1]): r[2] for r in con.execute("SELECT sample_id, dimension, score FROM dimension_scores").fetchall()}
    finally:
        con.close()
    assert tasks
    for sample_id, rows in verdicts.items():
        rubric = rubrics.get(sample_id, general)
        mine = sample_score(rubric, rows)
        view_score, view_passed, view_excluded = tasks[sample_id]
        assert _same(mine.score, view_score), (sample_id, mine.score, view_score)
        assert mine.passed == view_passed and mine.excluded == view_excluded, sample_id
        for dimension, value in mine.dimensions.items():
            assert _same(value, dims[(sample_id, dimension)]), (sample_id, dimension)
    return len(verdicts)


def _same(a, b) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and math.isclose(a, b, abs_tol=1e-9))


def _degrade(db: Path, unscored_policy: str, missing_policy: str) -> None:
    """Make every third verdict unscored and every fifth an error, and set the run's policies, so
    the views and the Python formula see the same unusual verdicts."""
    con = duckdb.connect(str(db))
    try:
        con.execute("UPDATE verdicts SET status = 'unscored', met = NULL, score = NULL WHERE hash(criterion_id || sample_id) % 3 = 0 AND status = 'ok'")
        con.execute("UPDATE verdicts SET status = 'error', met = NULL, score = NULL WHERE hash(criterion_id || sample_id) % 5 = 1 AND status = 'ok'")
        con.execute("UPDATE runs SET unscored_policy = ?, missing_output = ?", [unscored_policy, missing_policy])
    finally:
        con.close()


def _with_policies(rubric, unscored_policy: str, missing_policy: str):
    scoring = rubric.scoring.model_copy(update={"unscored": unscored_policy, "missing_output": MissingOutputPolicy(missing_policy)})
    return rubric.model_copy(update={"scoring": scoring})


@pytest.mark.parametrize(("unscored_policy", "missing_policy"), [(None, None), ("exclude", "skip"), ("fail", "fail")])
def test_weighted_points_matches_the_views(tmp_path: Path, judge_server, unscored_policy, missing_policy):
    db = _scored_db(tmp_path, judge_server, ILLUGEN / "tasks", ILLUGEN / "manifest.jsonl", ILLUGEN / "outputs" / "weak-model")
    rubrics = {r.task: r for r in load_rubric_set(ILLUGEN / "tasks")}
    if unscored_policy is not None:
        _degrade(db, unscored_policy, missing_policy)
        rubrics = {task: _with_policies(r, unscored_policy, missing_policy) for task, r in rubrics.items()}
    assert _compare(db, rubrics, None) == 6


@pytest.mark.parametrize(("unscored_policy", "missing_policy"), [(None, None), ("fail", "skip"), ("exclude", "fail")])
def test_pass_rate_on_a_scale_matches_the_views(tmp_path: Path, judge_server, unscored_policy, missing_policy):
    db = _scored_db(tmp_path, judge_server, "builtin:medgen/holistic-with-gt.yaml", MEDGEN / "manifest.jsonl", MEDGEN / "outputs" / "demo-model" / "outputs.jsonl")
    [rubric] = load_rubric_set("builtin:medgen/holistic-with-gt.yaml")
    if unscored_policy is not None:
        _degrade(db, unscored_policy, missing_policy)
        rubric = _with_policies(rubric, unscored_policy, missing_policy)
    assert _compare(db, {}, rubric) >= 3
    con = duckdb.connect(str(db))
    assert con.execute("SELECT count(*) FROM verdicts WHERE status = 'ok' AND score IS NOT NULL").fetchone()[0] > 0  # real scale verdicts compared
    con.close()
