"""`score --limit N` / `--sample ID`: try a rubric on a few samples; the run is marked partial."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from rubric_judge.errors import UserError
from rubric_judge.run import score
from rubric_judge.store import stats

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "illugenbench"
TASKS, MANIFEST, GOOD, WEAK = EXAMPLE / "tasks", EXAMPLE / "manifest.jsonl", EXAMPLE / "outputs" / "good-model", EXAMPLE / "outputs" / "weak-model"
JUDGE = "openai/test-judge"
CLI = [sys.executable, "-c", "from rubric_judge.cli.app import main; main()"]


def rows(db: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql).fetchall()


def test_limit_scores_the_first_samples_and_marks_the_run_partial(judge_server, tmp_path: Path):
    db, cache = tmp_path / "r.duckdb", tmp_path / "cache"
    common = {"data": MANIFEST, "judge": JUDGE, "api_base": judge_server.base_url, "db": db, "cache_dir": cache}
    trial = score(TASKS, outputs=GOOD, model="good", limit=2, **common)
    # The manifest's first two samples, each with its own task rubric; the other four task
    # rubrics are left out with their samples instead of "matching no sample".
    assert trial.status == "partial" and trial.exit_code == 0 and trial.samples == 2
    assert "the first 2 of 6 samples (--limit 2)" in trial.status_detail
    assert rows(db, "SELECT sample_id FROM samples ORDER BY sample_id") == [("cell-organelles",), ("heart-chambers",)]
    assert judge_server.request_count == trial.calls == 6
    assert rows(db, "SELECT status, samples_scored, samples_total FROM leaderboard WHERE dimension = 'overall'") == [("partial", 2, 6)]

    # compare refuses a partial run, like an interrupted one, unless allowed.
    score(TASKS, outputs=WEAK, model="weak", limit=2, **common)
    with pytest.raises(UserError, match="partial: 2 of 6 samples scored"):
        stats.find_pair(db, "good", "weak")
    a, b = stats.find_pair(db, "good", "weak", allow_partial=True)
    assert a.partial and b.partial

    # The same command without --limit finishes the run: the two samples' calls come from the cache.
    full = score(TASKS, outputs=GOOD, model="good", **common)
    assert full.status == "finished" and full.status_detail is None and full.cache_hits == 6 and full.samples == 6
    assert rows(db, "SELECT r.status, l.samples_total, r.manifest_samples FROM runs r JOIN leaderboard l USING (run_id) "
                    "WHERE l.dimension = 'overall' AND r.model_name = 'good'") == [("finished", 6, 6)]


def test_sample_ids_keep_manifest_order_and_repeats_count_once(judge_server, tmp_path: Path):
    result = score(TASKS, data=MANIFEST, outputs=GOOD, model="m", judge=JUDGE, api_base=judge_server.base_url, db=tmp_path / "r.duckdb",
                   cache_dir=tmp_path / "cache", samples=["lung-nodule", "heart-chambers", "lung-nodule"])
    assert result.status == "partial" and result.samples == 2
    assert "2 of 6 samples (--sample lung-nodule --sample heart-chambers)" in result.status_detail
    assert {r[0] for r in rows(tmp_path / "r.duckdb", "SELECT DISTINCT sample_id FROM judge_calls")} == {"lung-nodule", "heart-chambers"}
    # --sample and --limit together: the first N of the ids given, in manifest order.
    one = score(TASKS, data=MANIFEST, outputs=GOOD, model="m", judge=JUDGE, api_base=judge_server.base_url, db=tmp_path / "r.duckdb",
                cache_dir=tmp_path / "cache", samples=["lung-nodule", "heart-chambers"], limit=1)
    assert rows(tmp_path / "r.duckdb", "SELECT sample_id FROM samples") == [("heart-chambers",)] and one.cache_hits == one.calls == 3


def test_a_limit_covering_the_manifest_is_a_finished_run(judge_server, tmp_path: Path):
    result = score(TASKS, data=MANIFEST, outputs=GOOD, model="m", judge=JUDGE, api_base=judge_server.base_url, db=tmp_path / "r.duckdb",
                   cache_dir=tmp_path / "cache", limit=50)
    assert result.status == "finished" and result.samples == 6


def test_cli_unknown_sample_and_bad_limit_are_exit_2_with_nothing_written(tmp_path: Path):
    db = tmp_path / "r.duckdb"
    common = [str(TASKS), "--data", str(MANIFEST), "--outputs", str(GOOD), "--model", "m", "--judge", "offline", "--db", str(db), "--cache-dir", str(tmp_path / "c")]
    unknown = subprocess.run([*CLI, "score", *common, "--sample", "heart-chambers", "--sample", "nope"], capture_output=True, text=True, timeout=120)
    assert unknown.returncode == 2 and "Traceback" not in unknown.stderr
    assert "no sample with id 'nope' in the manifest" in unknown.stderr and "heart-chambers, cell-organelles" in unknown.stderr
    assert not db.exists()
    zero = subprocess.run([*CLI, "score", *common, "--limit", "0"], capture_output=True, text=True, timeout=120)
    assert zero.returncode == 2 and not db.exists()
    with pytest.raises(UserError, match="limit"):
        score(TASKS, data=MANIFEST, outputs=GOOD, model="m", judge="offline", db=db, cache_dir=tmp_path / "c", limit=0)


def test_cli_partial_run_in_leaderboard_and_compare(tmp_path: Path):
    db = tmp_path / "r.duckdb"
    for model, outputs in (("good", GOOD), ("weak", WEAK)):
        done = subprocess.run([*CLI, "score", str(TASKS), "--data", str(MANIFEST), "--outputs", str(outputs), "--model", model, "--judge", "offline",
                               "--db", str(db), "--cache-dir", str(tmp_path / "c"), "--limit", "2"], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        assert "Partial run: scored the first 2 of 6 samples (--limit 2)" in done.stdout
    board = subprocess.run([*CLI, "leaderboard", "--db", str(db)], capture_output=True, text=True, timeout=120)
    assert "run partial; its scores cover 2 of 6 samples" in board.stdout
    refused = subprocess.run([*CLI, "compare", "good", "weak", "--db", str(db)], capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "partial: 2 of 6 samples scored" in refused.stderr
    allowed = subprocess.run([*CLI, "compare", "good", "weak", "--db", str(db), "--allow-partial"], capture_output=True, text=True, timeout=120)
    assert allowed.returncode == 0 and "2 samples paired" in allowed.stdout
