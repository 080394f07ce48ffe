"""Seeded bootstrap confidence intervals (store/stats.sql) and the `leaderboard` / `compare` CLI.

Runs are written through `write_imported_run` into a real DuckDB file. With the IlluGenBench
rubric (weighted points) and ten weight-1 criteria per task, a task's score is the share of its
criteria met, so tests can set scores in steps of 0.1.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import duckdb
import numpy as np
import pytest

from rubric_judge.errors import UserError
from rubric_judge.rubrics.loader import load_rubric_set
from rubric_judge.rubrics.schema import MissingOutputPolicy, Rubric
from rubric_judge.store import stats
from rubric_judge.store.db import ResultStore, RunInfo, connect, write_imported_run
from rubric_judge.store.query import run_query

CLI = [sys.executable, "-c", "from rubric_judge.cli.app import main; main()"]
DIMENSIONS = ("scientific_accuracy", "structural_correctness", "semantic_alignment")
CRITERIA = 10


@pytest.fixture(scope="module")
def weighted() -> Rubric:
    return load_rubric_set("builtin:illugenbench/base.yaml")[0]


@pytest.fixture(scope="module")
def pass_rate() -> Rubric:
    return load_rubric_set("builtin:medgen/holistic-without-gt.yaml")[0]


def write_run(db: Path, rubric: Rubric, model: str, met: dict[str, Sequence[int]], judge: str = "judge", missing: Sequence[str] = ()) -> str:
    """One run: sample -> criteria met per replicate (criterion i is met when i < count), and
    samples whose output is missing."""
    verdicts = [
        [sample, f"{DIMENSIONS[i % 3]}-{i}", replicate, DIMENSIONS[i % 3], 1.0, i < count, None, None, None, "ok", None]
        for sample, counts in met.items() for replicate, count in enumerate(counts) for i in range(CRITERIA)
    ] + [[sample, f"{DIMENSIONS[0]}-0", 0, DIMENSIONS[0], 1.0, None, None, None, None, "missing_output", None] for sample in missing]
    return _write(db, rubric, model, judge, [*met, *missing], verdicts)


def write_scale_run(db: Path, rubric: Rubric, model: str, scores: dict[str, float]) -> str:
    """A MedGEN pass_rate run: every criterion of a sample gets the same 1..10 score."""
    verdicts = [[sample, c.id, 0, c.dimension, 1.0, None, score, None, None, "ok", None] for sample, score in scores.items() for c in rubric.criteria]
    return _write(db, rubric, model, "judge", list(scores), verdicts)


def _write(db: Path, rubric: Rubric, model: str, judge: str, samples: list[str], verdicts: list[list]) -> str:
    store = ResultStore(db)
    try:
        rows = [[s, None, None, [], "{}"] for s in samples]
        return write_imported_run(store, RunInfo(rubric, model, judge, None, {}), rows, [], verdicts)
    finally:
        store.close()


def select(db: Path, sql: str, params: Sequence = ()) -> list[dict]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        cursor = con.execute(sql, list(params))
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    finally:
        con.close()


def bootstrap(db: Path, run_id: str, dimension: str = "overall", **options: float) -> dict:
    args = ", ".join(f"{k} := {v}" for k, v in options.items())
    [row] = select(db, f"SELECT * FROM leaderboard_bootstrap({args}) WHERE run_id = ? AND dimension = ?", [run_id, dimension])
    return row


def random_counts(n: int, seed: int) -> dict[str, list[int]]:
    rng = np.random.default_rng(seed)
    return {f"task-{i:04d}": [int(c)] for i, c in enumerate(rng.binomial(CRITERIA, 0.6, size=n))}


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120)


def test_interval_agrees_with_numpy_percentile_bootstrap(tmp_path: Path, weighted: Rubric):
    db = tmp_path / "r.duckdb"
    run = write_run(db, weighted, "m", random_counts(50, seed=1))
    rng = np.random.default_rng(2024)
    for dimension in ("overall", *DIMENSIONS):
        sql = "SELECT score FROM task_scores" if dimension == "overall" else "SELECT score FROM dimension_scores WHERE dimension = ?"
        scores = np.array([r["score"] for r in select(db, sql, [] if dimension == "overall" else [dimension])])
        means = scores[rng.integers(0, len(scores), size=(20_000, len(scores)))].mean(axis=1)
        low, high = np.percentile(means, [2.5, 97.5])
        got = bootstrap(db, run, dimension, resamples=20_000, seed=5)
        assert got["samples"] == 50
        assert got["ci_low"] == pytest.approx(low, abs=0.01) and got["ci_high"] == pytest.approx(high, abs=0.01), dimension
        assert got["score"] == pytest.approx(scores.mean(), abs=1e-12)
    # the default view is the macro with its defaults, and is close to the long run
    [view] = select(db, "SELECT * FROM leaderboard_ci WHERE dimension = 'overall'")
    assert view == bootstrap(db, run, resamples=1000, seed=0, level=0.95)
    assert (view["resamples"], view["seed"], view["level"]) == (1000, 0, 0.95)


def test_score_is_the_leaderboards_and_lies_inside_its_interval(tmp_path: Path, weighted: Rubric):
    db = tmp_path / "r.duckdb"
    write_run(db, weighted, "a", random_counts(40, seed=3))
    write_run(db, weighted, "b", random_counts(25, seed=4))
    board = {(r["model_name"], r["dimension"]): r["score"] for r in select(db, "SELECT * FROM leaderboard")}
    rows = select(db, "SELECT * FROM leaderboard_ci")
    assert {(r["model_name"], r["dimension"]) for r in rows} == set(board) and len(rows) == 8
    for row in rows:
        # to the last bits: the view's avg() itself differs that much between executions
        assert row["score"] == pytest.approx(board[row["model_name"], row["dimension"]], rel=0, abs=1e-12)
        assert row["ci_low"] <= row["score"] <= row["ci_high"]
        assert row["accuracy_rate"] is None and row["accuracy_ci_low"] is None and row["accuracy_ci_high"] is None


def test_width_shrinks_with_more_samples(tmp_path: Path, weighted: Rubric):
    db = tmp_path / "r.duckdb"
    small = write_run(db, weighted, "small", random_counts(20, seed=7))
    large = write_run(db, weighted, "large", random_counts(320, seed=7))
    width = {run: (r := bootstrap(db, run))["ci_high"] - r["ci_low"] for run in (small, large)}
    assert 0 < width[large] < width[small] / 2  # ~1/sqrt(16) = 1/4 in expectation


def test_seeded_reproducible_and_seed_dependent(tmp_path: Path, weighted: Rubric):
    db = tmp_path / "r.duckdb"
    write_run(db, weighted, "m", random_counts(60, seed=11))
    query = "SELECT * FROM leaderboard_bootstrap(resamples := 500, seed := ?) ORDER BY run_id, dimension"
    first = select(db, query, [42])
    assert select(db, query, [42]) == first  # bit for bit, across connections
    con = duckdb.connect(str(db), read_only=True)
    con.execute("SET threads = 1")  # and whatever the parallelism
    assert con.execute(query, [42]).fetchall() == [tuple(r.values()) for r in first]
    con.close()
    other = select(db, query, [43])
    assert [(r["ci_low"], r["ci_high"]) for r in other] != [(r["ci_low"], r["ci_high"]) for r in first]
    assert [r["score"] for r in other] == [r["score"] for r in first]
    narrower = select(db, "SELECT * FROM leaderboard_bootstrap(resamples := 500, seed := 42, level := 0.5) ORDER BY run_id, dimension")
    assert all(n["ci_high"] - n["ci_low"] < f["ci_high"] - f["ci_low"] for n, f in zip(narrower, first, strict=True))


def test_equal_scores_give_a_zero_width_interval(tmp_path: Path, weighted: Rubric):
    db = tmp_path / "r.duckdb"
    run = write_run(db, weighted, "m", {f"t{i}": [7] for i in range(30)})
    row = bootstrap(db, run)
    assert row["ci_low"] == row["ci_high"] == row["score"]


def test_replicates_are_one_cluster(tmp_path: Path, weighted: Rubric):
    db = tmp_path / "r.duckdb"
    counts = random_counts(40, seed=5)
    single = write_run(db, weighted, "single", counts)
    # The same verdicts judged twice: resampling replicates as if they were tasks would narrow
    # the interval; as clusters the interval is that of the single judgement.
    twice = write_run(db, weighted, "twice", {s: c * 2 for s, c in counts.items()})
    one, two = bootstrap(db, single), bootstrap(db, twice)
    assert two["samples"] == one["samples"] == 40
    assert (two["ci_low"], two["ci_high"]) == pytest.approx((one["ci_low"], one["ci_high"]), abs=1e-12)
    # Unequal replicates: the score is the mean of the samples' replicate means.
    uneven = write_run(db, weighted, "uneven", {"t0": [10, 0, 0], "t1": [10]})
    assert bootstrap(db, uneven)["score"] == pytest.approx((1 / 3 + 1) / 2)


def test_pass_rate_accuracy_interval(tmp_path: Path, pass_rate: Rubric):
    db = tmp_path / "r.duckdb"
    rng = np.random.default_rng(3)
    run = write_scale_run(db, pass_rate, "m", {f"t{i}": float(s) for i, s in enumerate(rng.integers(1, 11, size=80))})
    passed = np.array([r["passed"] for r in select(db, "SELECT passed::INTEGER AS passed FROM task_scores")])
    means = passed[rng.integers(0, len(passed), size=(20_000, len(passed)))].mean(axis=1)
    row = bootstrap(db, run, resamples=20_000)
    [board] = select(db, "SELECT accuracy_rate FROM leaderboard WHERE dimension = 'overall'")
    assert row["accuracy_rate"] == board["accuracy_rate"] == pytest.approx(passed.mean())
    assert (row["accuracy_ci_low"], row["accuracy_ci_high"]) == pytest.approx(tuple(np.percentile(means, [2.5, 97.5])), abs=0.01)
    assert all(r["accuracy_ci_low"] is None for r in select(db, "SELECT * FROM leaderboard_ci WHERE dimension <> 'overall'"))


def test_paired_difference_is_the_difference_of_means(tmp_path: Path, weighted: Rubric):
    db = tmp_path / "r.duckdb"
    a = write_run(db, weighted, "a", random_counts(45, seed=8))
    b = write_run(db, weighted, "b", random_counts(45, seed=9))
    rows = select(db, "SELECT * FROM paired_bootstrap(?, ?)", [a, b])
    assert [r["dimension"] for r in rows] == ["overall", *sorted(DIMENSIONS)]
    board = {(r["run_id"], r["dimension"]): r["score"] for r in select(db, "SELECT * FROM leaderboard")}
    for row in rows:
        assert row["samples_paired"] == 45 and row["only_in_a"] == row["only_in_b"] == 0
        assert row["mean_a"] == pytest.approx(board[a, row["dimension"]]) and row["mean_b"] == pytest.approx(board[b, row["dimension"]])
        assert row["difference"] == pytest.approx(row["mean_a"] - row["mean_b"], abs=1e-12)
        assert row["ci_low"] <= row["difference"] <= row["ci_high"]
    # against itself: no difference at all
    assert all(r["difference"] == r["ci_low"] == r["ci_high"] == 0 for r in select(db, "SELECT * FROM paired_bootstrap(?, ?)", [a, a]))


def test_constant_shift_has_a_zero_width_interval(tmp_path: Path, weighted: Rubric):
    db = tmp_path / "r.duckdb"
    counts = {s: [min(c[0], CRITERIA - 1)] for s, c in random_counts(40, seed=12).items()}
    a = write_run(db, weighted, "a", counts)
    b = write_run(db, weighted, "b", {s: [c[0] + 1] for s, c in counts.items()})  # every task +0.1
    [overall] = select(db, "SELECT * FROM paired_bootstrap(?, ?, resamples := 300) WHERE dimension = 'overall'", [a, b])
    assert overall["difference"] == pytest.approx(-0.1, abs=1e-12)
    assert overall["ci_low"] == pytest.approx(-0.1, abs=1e-12) and overall["ci_high"] == pytest.approx(-0.1, abs=1e-12)


def test_unpaired_samples_are_counted(tmp_path: Path, weighted: Rubric):
    db = tmp_path / "r.duckdb"
    counts = random_counts(30, seed=13)
    a = write_run(db, weighted, "a", counts)
    b_counts = {s: c for s, c in list(counts.items())[3:]} | {"extra-1": [5], "extra-2": [6]}
    b = write_run(db, weighted, "b", b_counts)
    [overall] = select(db, "SELECT * FROM paired_bootstrap(?, ?) WHERE dimension = 'overall'", [a, b])
    assert (overall["samples_paired"], overall["only_in_a"], overall["only_in_b"]) == (27, 3, 2)
    assert overall["difference"] == pytest.approx(0, abs=1e-12)  # the paired samples have the same verdicts


def test_old_database_gets_the_macros(tmp_path: Path, weighted: Rubric):
    db = tmp_path / "r.duckdb"
    write_run(db, weighted, "m", random_counts(10, seed=1))
    con = duckdb.connect(str(db))  # as written before stats.sql existed
    con.execute("DROP VIEW leaderboard_ci; DROP MACRO TABLE leaderboard_bootstrap; DROP MACRO TABLE paired_bootstrap; DROP TABLE _store_version")
    con.close()
    # Any reader brings it up to date first: the read-only query path included.
    assert len(run_query(db, "SELECT * FROM leaderboard_ci")[1]) == 4
    names, rows = stats.leaderboard(db, stats.Bootstrap())
    assert "ci_low" in names and len(rows) == 4


def test_objects_survive_reopening_read_write(tmp_path: Path, weighted: Rubric):
    db = tmp_path / "r.duckdb"
    connect(db).close()
    assert run_query(db, "SELECT * FROM leaderboard_ci")[1] == []
    run = write_run(db, weighted, "m", random_counts(10, seed=1))  # opens it again: views and macros replaced
    connect(db).close()
    assert len(run_query(db, "SELECT * FROM leaderboard_ci")[1]) == 4
    assert run_query(db, f"SELECT samples_paired FROM paired_bootstrap('{run}', '{run}') WHERE dimension = 'overall'")[1] == [(10,)]


def test_excluded_and_missing_samples(tmp_path: Path, weighted: Rubric):
    db = tmp_path / "r.duckdb"

    def policy(name: str, missing_output: MissingOutputPolicy) -> Rubric:
        return weighted.model_copy(update={"rubric": name, "scoring": weighted.scoring.model_copy(update={"missing_output": missing_output})})

    gone = [f"gone-{i}" for i in range(5)]
    skipped = write_run(db, policy("skip", MissingOutputPolicy.skip), "m", random_counts(20, seed=4), missing=gone)
    failed = write_run(db, policy("fail", MissingOutputPolicy.fail), "m", random_counts(20, seed=4), missing=gone)
    assert bootstrap(db, skipped)["samples"] == 20  # left out
    assert bootstrap(db, failed)["samples"] == 25  # scored 0
    # a run without any scored sample keeps its leaderboard row, without an interval
    empty = write_run(db, policy("empty", MissingOutputPolicy.skip), "m", {}, missing=gone)
    row = bootstrap(db, empty)
    assert (row["score"], row["ci_low"], row["ci_high"], row["samples"]) == (None, None, None, 0)


@pytest.mark.parametrize(
    ("options", "message"),
    [({"resamples": 0}, "resamples"), ({"level": 1.0}, "level"), ({"level": float("nan")}, "level"), ({"seed": 2**63}, "seed")],
)
def test_bad_options_are_user_errors(options: dict, message: str):
    # Worded by the option's name, as the Python API and the CLI (--resamples) both call it.
    with pytest.raises(UserError) as raised:
        stats.Bootstrap(**options)
    assert raised.value.problems[0].field == message


@pytest.fixture(scope="module")
def compared_db(tmp_path_factory: pytest.TempPathFactory, weighted: Rubric) -> Path:
    db = tmp_path_factory.mktemp("compare") / "r.duckdb"
    counts = random_counts(30, seed=21)
    write_run(db, weighted, "good", counts)
    write_run(db, weighted, "weak", {s: [max(c[0] - 2, 0)] for s, c in list(counts.items())[1:]})
    return db


def test_cli_leaderboard_shows_intervals(compared_db: Path):
    done = cli("leaderboard", "--db", str(compared_db), "--resamples", "200", "--seed", "3")
    assert done.returncode == 0, done.stderr
    assert "ci_low" in done.stdout and "ci_high" in done.stdout
    assert "accuracy_ci" not in done.stdout  # no pass_rate rubric here
    for row in select(compared_db, "SELECT ci_low, ci_high FROM leaderboard_bootstrap(resamples := 200, seed := 3)"):
        assert f"{row['ci_low']:.4f}" in done.stdout and f"{row['ci_high']:.4f}" in done.stdout
    refused = cli("leaderboard", "--db", str(compared_db), "--resamples", "0")
    assert refused.returncode == 2 and "resamples: must be between 1 and" in refused.stderr


def test_cli_compare(compared_db: Path):
    done = cli("compare", "good", "weak", "--db", str(compared_db), "--resamples", "300")
    assert done.returncode == 0, done.stderr
    assert "difference" in done.stdout and "29 samples paired; 1 scored only in A, 0 only in B" in done.stdout
    listed = cli("compare", "good", "weak", "--db", str(compared_db), "--format", "json")
    assert listed.returncode == 0, listed.stderr
    overall = json.loads(listed.stdout)[0]
    assert overall["dimension"] == "overall" and overall["difference"] > 0 and overall["ci_low"] > 0  # 'weak' is 0.2 lower on 29 tasks
    unknown = cli("compare", "good", "nobody", "--db", str(compared_db))
    assert unknown.returncode == 2 and "no run of model 'nobody'" in unknown.stderr and "good, weak" in unknown.stderr


def test_ambiguous_runs_are_refused_with_the_choices(tmp_path: Path, weighted: Rubric):
    db = tmp_path / "r.duckdb"
    counts = random_counts(10, seed=2)
    for model in ("a", "b"):
        write_run(db, weighted, model, counts)
        write_run(db, weighted.model_copy(update={"rubric": "other"}), model, counts)
    write_run(db, weighted, "a", counts, judge="second-judge")
    with pytest.raises(UserError) as caught:
        stats.find_pair(db, "a", "b")
    assert all(word in str(caught.value) for word in ("--rubric", "--judge", "other", "second-judge"))
    a, b = stats.find_pair(db, "a", "b", rubric_id="other")
    assert (a.model_name, b.model_name, a.rubric_id, b.rubric_id) == ("a", "b", "other", "other")
    a, b = stats.find_pair(db, "a", "b", rubric_id="illugenbench", judge_model="judge")
    assert stats.find_pair(db, a.run_id, b.run_id) == (a, b)  # run ids name runs directly
    with pytest.raises(UserError, match="second-judge"):
        stats.find_pair(db, "a", "b", rubric_id="illugenbench")  # two judges of 'a'
    with pytest.raises(UserError, match="no runs of a common rubric"):
        stats.find_pair(db, "a", "b", judge_model="second-judge")
    ambiguous = cli("compare", "a", "b", "--db", str(db))
    assert ambiguous.returncode == 2 and "--rubric" in ambiguous.stderr


def test_cli_query_reads_leaderboard_ci_read_only(compared_db: Path):
    done = cli("query", "SELECT model_name, dimension, ci_low, ci_high FROM leaderboard_ci ORDER BY ALL", "--db", str(compared_db), "--format", "json")
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert len(rows) == 8 and all(r["ci_low"] <= r["ci_high"] for r in rows)
