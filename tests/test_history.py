"""Run history: a re-run whose rubric content changed keeps the earlier run, marked superseded,
instead of overwriting it; `rubric-judge runs` lists runs; `compare` pairs two versions of a
rubric on one model. Real DuckDB files, scored through the loopback judge over HTTP."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml

from rubric_judge.errors import UserError
from rubric_judge.run import score
from rubric_judge.store import stats
from rubric_judge.testing.loopback import CriterionQuestion, LoopbackJudge

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "illugenbench"
MANIFEST = EXAMPLE / "manifest.jsonl"
GOOD = EXAMPLE / "outputs" / "good-model"
CLI = [sys.executable, "-c", "from rubric_judge.cli.app import main; main()"]
EDITED = "heart-chambers"
STRICT = " (STRICT)"


def strictness_policy(question: CriterionQuestion) -> dict[str, Any]:
    """Every `*-1` criterion is met unless its text says STRICT, so an edit changes verdicts."""
    met = question.criterion_id.endswith("-1") and "STRICT" not in question.text
    return {"reasoning": f"answer for {question.criterion_id}", "satisfied": met, "confidence": 0.9}


@pytest.fixture
def judge() -> Any:
    with LoopbackJudge(policy=strictness_policy) as server:
        yield server


def run_score(judge: LoopbackJudge, tmp: Path, tasks: Path, model: str = "good-model", **extra: Any):
    result = score(rubric=tasks, data=MANIFEST, outputs=GOOD, model=model, judge="openai/test-judge", api_base=judge.base_url,
                   db=tmp / "r.duckdb", cache_dir=tmp / "cache", concurrency=4, timeout=10.0, **extra)
    assert result.exit_code == 0, result.status_detail
    return result


def edit(tasks: Path, criterion_id: str, suffix: str, task: str = EDITED) -> None:
    path = tasks / f"{task}.yaml"
    doc = yaml.safe_load(path.read_text())
    for criterion in doc["criteria"]:
        if criterion["id"] == criterion_id:
            criterion["text"] += suffix
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def rows(db: Path, sql: str, params: list[Any] | tuple = ()) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql, list(params)).fetchall()
    finally:
        con.close()


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120)


@pytest.fixture
def tasks(tmp_path: Path) -> Path:
    copy = tmp_path / "tasks"
    shutil.copytree(EXAMPLE / "tasks", copy)
    return copy


def test_a_rerun_with_an_edited_rubric_keeps_the_earlier_run_as_superseded(judge, tmp_path: Path, tasks: Path) -> None:
    db = tmp_path / "r.duckdb"
    first = run_score(judge, tmp_path, tasks)
    verdicts = rows(db, "SELECT count(*) FROM verdicts")[0][0]
    old_board = dict(rows(db, "SELECT dimension, score FROM leaderboard"))

    # Unchanged content: the run is replaced (resumed), as before -- one run, no duplicate rows.
    again = run_score(judge, tmp_path, tasks)
    assert again.run_id == first.run_id
    assert rows(db, "SELECT count(*), count(superseded_by) FROM runs") == [(1, 0)]
    assert rows(db, "SELECT count(*) FROM verdicts")[0][0] == verdicts

    edit(tasks, "scientific_accuracy-1", STRICT)
    edited = run_score(judge, tmp_path, tasks)
    assert edited.run_id == first.run_id  # the id names the latest run of (rubric, version, model, judge)
    runs = rows(db, "SELECT run_id, superseded_by, rubric_digest FROM runs ORDER BY started_at")
    assert len(runs) == 2
    (old_id, superseded_by, old_digest), (new_id, current, new_digest) = runs
    assert (superseded_by, new_id, current) == (first.run_id, first.run_id, None)
    assert old_digest != new_digest and len(new_digest) == 64
    # The earlier run keeps all of its rows: verdicts, criteria texts, calls, samples.
    assert rows(db, "SELECT count(*) FROM verdicts WHERE run_id = ?", [old_id])[0][0] == verdicts
    texts = dict(rows(db, "SELECT run_id, text FROM criteria WHERE sample_id = ? AND criterion_id = 'scientific_accuracy-1'", [EDITED]))
    assert STRICT not in texts[old_id] and texts[new_id].endswith(STRICT)
    assert rows(db, "SELECT count(*) FROM judge_calls WHERE run_id = ?", [old_id]) == rows(db, "SELECT count(*) FROM judge_calls WHERE run_id = ?", [new_id])
    # The leaderboard shows the current run only; the superseded run stays in task_scores.
    board = dict(rows(db, "SELECT dimension, score FROM leaderboard"))
    assert board.keys() == old_board.keys() and board["scientific_accuracy"] < old_board["scientific_accuracy"]
    assert rows(db, "SELECT count(DISTINCT run_id) FROM task_scores") == [(2,)]
    old_scores = dict(rows(db, "SELECT dimension, avg(score) FROM dimension_scores WHERE run_id = ? GROUP BY ALL", [old_id]))
    assert old_scores["scientific_accuracy"] == pytest.approx(old_board["scientific_accuracy"], abs=1e-12)

    # A third version: the history grows; every earlier version names the run now in its place.
    edit(tasks, "semantic_alignment-1", STRICT)
    run_score(judge, tmp_path, tasks)
    assert rows(db, "SELECT count(*), count(superseded_by), count(DISTINCT rubric_digest) FROM runs") == [(3, 2, 3)]
    assert rows(db, "SELECT DISTINCT superseded_by FROM runs WHERE superseded_by IS NOT NULL") == [(first.run_id,)]


def test_a_run_written_before_digests_is_replaced_as_before(judge, tmp_path: Path, tasks: Path) -> None:
    db = tmp_path / "r.duckdb"
    run_score(judge, tmp_path, tasks)
    con = duckdb.connect(str(db))
    con.execute("UPDATE runs SET rubric_digest = NULL")  # as migration 7 leaves an older run
    con.close()
    edit(tasks, "scientific_accuracy-1", STRICT)
    run_score(judge, tmp_path, tasks)
    assert rows(db, "SELECT count(*), count(superseded_by), count(rubric_digest) FROM runs") == [(1, 0, 1)]


def test_a_probe_is_superseded_with_the_run_it_probes(judge, tmp_path: Path, tasks: Path) -> None:
    db = tmp_path / "r.duckdb"
    first = run_score(judge, tmp_path, tasks, probe="swap-images")
    edit(tasks, "scientific_accuracy-1", STRICT)
    second = run_score(judge, tmp_path, tasks, probe="swap-images")
    assert second.probe is not None and second.probe.run_id == first.probe.run_id
    by_role = rows(db, "SELECT role, run_id, parent_run_id, superseded_by FROM runs WHERE superseded_by IS NOT NULL ORDER BY role")
    (probe_role, _, probe_parent, probe_successor), (run_role, archived_run, _, run_successor) = by_role
    assert (probe_role, run_role) == ("probe", "run")
    assert probe_parent == archived_run  # the archived probe still belongs to the archived run
    assert (run_successor, probe_successor) == (first.run_id, first.probe.run_id)
    assert rows(db, "SELECT parent_run_id FROM runs WHERE run_id = ?", [second.probe.run_id]) == [(second.run_id,)]


def test_runs_lists_current_runs_and_all_with_coverage_and_cost(judge, tmp_path: Path, tasks: Path) -> None:
    db = tmp_path / "r.duckdb"
    run_score(judge, tmp_path, tasks)
    edit(tasks, "scientific_accuracy-1", STRICT)
    run_score(judge, tmp_path, tasks)

    current = cli("runs", "--db", str(db), "--format", "json")
    assert current.returncode == 0, current.stderr
    (listed,) = json.loads(current.stdout)
    assert listed["superseded_by"] is None and listed["status"] == "finished" and listed["model_name"] == "good-model"
    assert (listed["samples_scored"], listed["samples_total"]) == (6, 6)
    assert listed["calls"] == 18 and listed["cached_calls"] == 17  # one edited call was judged again
    assert listed["judge_model"] == "openai/test-judge" and len(listed["rubric_digest"]) == 64

    every = json.loads(cli("runs", "--db", str(db), "--all", "--format", "json").stdout)
    assert [r["superseded_by"] for r in every] == [listed["run_id"], None]
    assert every[0]["cached_calls"] == 0 and every[0]["rubric_digest"] != listed["rubric_digest"]

    table = cli("runs", "--db", str(db))
    assert table.returncode == 0 and "6/6" in table.stdout and "1 superseded run(s) not shown" in table.stdout
    csv_lines = cli("runs", "--db", str(db), "--all", "--format", "csv").stdout.splitlines()
    assert csv_lines[0].startswith("run_id,status,superseded_by") and len(csv_lines) == 3


def test_compare_shows_what_a_rubric_edit_changed(judge, tmp_path: Path, tasks: Path) -> None:
    db = tmp_path / "r.duckdb"
    run_score(judge, tmp_path, tasks)
    edit(tasks, "scientific_accuracy-1", STRICT)
    run_score(judge, tmp_path, tasks)
    old, new = (r[0] for r in rows(db, "SELECT run_id FROM runs ORDER BY started_at"))

    # By run id (or its start), A then B: old - new. The strict text is never met: the old
    # version met it on the edited task, the new one does not.
    by_criterion = cli("compare", "--run", old[:8], "--run", new, "--by", "criterion", "--db", str(db), "--format", "json")
    assert by_criterion.returncode == 0, by_criterion.stderr
    criteria = {c["criterion_id"]: c for c in json.loads(by_criterion.stdout)}
    edited = criteria["scientific_accuracy-1"]
    assert edited["change"] == "text" and edited["text_b"].endswith(STRICT) and STRICT not in edited["text_a"]
    assert edited["verdicts_changed"] == 1 and edited["samples_paired"] == 6
    assert edited["difference"] == pytest.approx(1 / 6)
    assert all(c["change"] == "" and c["verdicts_changed"] == 0 for name, c in criteria.items() if name != "scientific_accuracy-1")

    # --previous: the model's current run (A) against the run it superseded (B): new - old.
    by_dimension = cli("compare", "good-model", "--previous", "--db", str(db), "--format", "json")
    assert by_dimension.returncode == 0, by_dimension.stderr
    dimensions = {d["dimension"]: d for d in json.loads(by_dimension.stdout)}
    assert dimensions["scientific_accuracy"]["difference"] < 0 and dimensions["semantic_alignment"]["difference"] == 0
    table = cli("compare", "good-model", "--previous", "--db", str(db))
    assert "criteria that differ between the versions: scientific_accuracy-1 (text)" in table.stdout

    # Comparing models by name uses their current runs only.
    a, b = stats.find_previous(db, "good-model")
    assert (a.run_id, b.run_id) == (new, old)
    with pytest.raises(UserError, match="no run with run id 'nope'"):
        stats.find_runs(db, "nope", new)
    refused = cli("compare", "--run", new, "--db", str(db))
    assert refused.returncode == 2 and "exactly twice" in refused.stderr and "Traceback" not in refused.stderr


def test_previous_without_an_earlier_version_says_what_to_do(judge, tmp_path: Path, tasks: Path) -> None:
    run_score(judge, tmp_path, tasks)
    done = cli("compare", "good-model", "--previous", "--db", str(tmp_path / "r.duckdb"))
    assert done.returncode == 2 and "has no earlier version" in done.stderr and "edit the rubric and score again" in done.stderr


_DIGEST_RUBRIC = """rubric: lab/digest
inputs:
  category: text
  answer: text
  response: text?
outputs: [response]
dimensions:
  - {id: accuracy}
criteria:
  - {id: accuracy-1, dimension: accuracy, text: "The answer is correct."}
prompt: "{{ response }}"
scoring: {method: weighted_points}
metrics:
  - {metric: bertscore, output: response, reference: answer, pass: ">= 0.9"}
"""


def test_settings_added_later_leave_the_content_digest_of_rubrics_without_them_as_it_was(tmp_path: Path) -> None:
    """A rubric that uses neither `required_outputs` nor `text_form` keeps the digest the code
    before them stored (computed at 3c1f20a), so an upgrade does not supersede every stored run;
    using either is a content change."""
    from rubric_judge.rubrics.loader import load_rubric_file
    from rubric_judge.store.db import rubric_digest

    def digest(text: str) -> str:
        path = tmp_path / "r.yaml"
        path.write_text(text)
        return rubric_digest([load_rubric_file(path)])

    assert digest(_DIGEST_RUBRIC) == "2a19ba889fb3094f3de6c6b44f0c625f66d16548a0d617d6b6015c13aa86a667"
    assert digest(_DIGEST_RUBRIC + "required_outputs:\n  - {outputs: []}\n") != digest(_DIGEST_RUBRIC)
    assert digest(_DIGEST_RUBRIC.replace('pass: ">= 0.9"}', 'pass: ">= 0.9", text_form: medgen_eval}')) != digest(_DIGEST_RUBRIC)
