"""DSL: a binary checklist and 1-10 dimensions in one rubric and one run, each dimension scored by
its own method; `mean_scale` as a weighted mean; criterion texts rendered per sample; tags stored.

Scored end to end through the loopback judge over real HTTP; every DuckDB number is checked
against a computation by hand from the policy's answers.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import duckdb
import pytest

from rubric_judge.errors import UserError
from rubric_judge.rubrics.loader import load_rubric_file
from rubric_judge.run import score
from rubric_judge.testing.loopback import CriterionQuestion, LoopbackJudge

MIXED = """\
rubric: lab/mixed
inputs:
  body_part: text
  report: text
outputs: [report]
verdict: binary
dimensions:
  - id: accuracy
    verdict: {kind: binary}
    scoring: weighted_points
  - id: clarity
    verdict: {kind: scale, min: 1, max: 10}
    scoring: mean_scale
criteria:
  - {id: acc-1, dimension: accuracy, weight: 3, text: "The {{ body_part }} findings are correct.", tags: [axis:accuracy, theme:radiology]}
  - {id: acc-2, dimension: accuracy, weight: 1, text: "Laterality is stated."}
  - {id: acc-3, dimension: accuracy, weight: -2, text: "A finding is invented.", tags: [axis:accuracy]}
  - {id: clar-1, dimension: clarity, weight: 2, text: "Score how clear the {{ body_part }} summary is.", tags: [axis:communication]}
  - {id: clar-2, dimension: clarity, weight: 1, text: "Score the structure."}
prompt: |
  Judge the report: {{ report }}
  {% for c in criteria %}{{ c.id }}: {{ c.text }} ({{ verdict.kind }})
  {% endfor %}
scoring:
  method: weighted_points
judge:
  mode: {mode}
"""

# What the loopback judge answers, by criterion id and sample (via the rendered body part).
MET = {"acc-1": True, "acc-2": False, "acc-3": True}
SCALE = {("clar-1", "chest"): 8, ("clar-2", "chest"): 5, ("clar-1", "knee"): 3, ("clar-2", "knee"): 9}


def policy(question: CriterionQuestion) -> dict[str, Any]:
    if question.kind == "binary":
        return {"reasoning": "r", "satisfied": MET[question.criterion_id], "confidence": 0.9}
    part = "chest" if "chest" in question.prompt_text else "knee"
    return {"reasoning": "r", "score": SCALE[(question.criterion_id, part)]}


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def setup(tmp_path: Path, mode: str) -> dict[str, Any]:
    rubric = write(tmp_path / "mixed.yaml", MIXED.replace("{mode}", mode))
    manifest = write(tmp_path / "data" / "manifest.jsonl", "\n".join(json.dumps(r) for r in (
        {"id": "s1", "body_part": "chest"}, {"id": "s2", "body_part": "knee"})) + "\n")
    outputs = write(tmp_path / "out" / "outputs.jsonl", "\n".join(json.dumps(r) for r in (
        {"id": "s1", "report": "Clear lungs."}, {"id": "s2", "report": "Torn meniscus."})) + "\n")
    return {"rubric": rubric, "data": manifest, "outputs": outputs}


def rows(db: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


@pytest.fixture(autouse=True)
def _api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUBRIC_JUDGE_API_KEY", "sk-loopback-test")


@pytest.mark.parametrize("mode", ["per_dimension", "per_sample"])
def test_mixed_rubric_scores_each_dimension_by_its_method(tmp_path: Path, mode: str) -> None:
    files = setup(tmp_path, mode)
    db = tmp_path / "r.duckdb"
    with LoopbackJudge(policy=policy) as server:
        result = score(files["rubric"], data=files["data"], outputs=files["outputs"], model="m", judge="openai/test-judge",
                       api_base=server.base_url, db=db, cache_dir=tmp_path / "cache", concurrency=2, timeout=10.0)
        assert result.exit_code == 0
        bodies = [json.dumps(body) for body in server.requests]
    # Two calls per sample (one per verdict kind) in both modes: a call never mixes kinds.
    assert len(bodies) == 4
    for body in bodies:
        assert ("satisfied" in body) != ("score" in body)
    # The judge saw the rendered criterion text, never the braces.
    assert not any("{{ body_part }}" in body for body in bodies)
    assert any("The chest findings are correct." in body for body in bodies)
    assert any("Score how clear the knee summary is." in body for body in bodies)

    # accuracy (weighted_points): (3*1 + 1*0 + -2*1) / (3 + 1) = 0.25 for both samples.
    accuracy = (3 * 1 + 1 * 0 + -2 * 1) / (3 + 1)
    # clarity (mean_scale, weighted mean): s1 (2*8 + 1*5) / 3 = 7, s2 (2*3 + 1*9) / 3 = 5.
    clarity = {"s1": (2 * 8 + 1 * 5) / 3, "s2": (2 * 3 + 1 * 9) / 3}
    dims = {(s, d): (m, v) for s, d, m, v in rows(db, "SELECT sample_id, dimension, method, score FROM dimension_scores")}
    assert dims[("s1", "accuracy")] == ("weighted_points", pytest.approx(accuracy, abs=1e-12))
    assert dims[("s2", "accuracy")] == ("weighted_points", pytest.approx(accuracy, abs=1e-12))
    assert dims[("s1", "clarity")] == ("mean_scale", pytest.approx(clarity["s1"], abs=1e-12))
    assert dims[("s2", "clarity")] == ("mean_scale", pytest.approx(clarity["s2"], abs=1e-12))
    # Overall: the rubric-level method (weighted_points) over the rubric-level kind's (binary) criteria.
    tasks = dict(rows(db, "SELECT sample_id, score FROM task_scores"))
    assert tasks == {"s1": pytest.approx(accuracy, abs=1e-12), "s2": pytest.approx(accuracy, abs=1e-12)}
    board = dict(rows(db, "SELECT dimension, score FROM leaderboard"))
    assert board["overall"] == pytest.approx(accuracy, abs=1e-12)
    assert board["clarity"] == pytest.approx((clarity["s1"] + clarity["s2"]) / 2, abs=1e-12)

    # The criteria table: the rendered text per sample, how each was judged, and its tags.
    crit = {(s, c): rest for s, c, *rest in rows(db, "SELECT sample_id, criterion_id, text, verdict_kind, scale_min, scale_max, "
                                                     "scoring_method, in_overall, tags FROM criteria")}
    assert crit[("s2", "acc-1")] == ["The knee findings are correct.", "binary", None, None, "weighted_points", True,
                                     ["axis:accuracy", "theme:radiology"]]
    assert crit[("s1", "clar-1")] == ["Score how clear the chest summary is.", "scale", 1, 10, "mean_scale", False, ["axis:communication"]]
    assert crit[("s1", "clar-2")][-1] == []
    per_tag = dict(rows(db, "SELECT tag, count(*) FROM (SELECT unnest(tags) AS tag FROM criteria) GROUP BY tag"))
    assert per_tag == {"axis:accuracy": 4, "theme:radiology": 2, "axis:communication": 2}


def test_criterion_template_values_are_part_of_the_cache_key(tmp_path: Path) -> None:
    """Two samples whose criterion texts render differently never share a cached answer."""
    from rubric_judge.planning.compile import JudgeTarget, compile_sample
    from rubric_judge.planning.samples import Sample

    files = setup(tmp_path, "per_dimension")
    rubric = load_rubric_file(files["rubric"])
    target = JudgeTarget("openai/test-judge")
    plans = [compile_sample(rubric, Sample(sid, {"body_part": part, "report": "same"}), target) for sid, part in (("a", "chest"), ("b", "knee"))]
    keys = [{c.group: c.cache_key for c in plan.calls} for plan in plans]
    assert keys[0]["accuracy"] != keys[1]["accuracy"]
    assert next(c.text for c in plans[0].calls[0].criteria) == "The chest findings are correct."


def test_a_call_verdict_and_schema_follow_the_dimension(tmp_path: Path) -> None:
    from rubric_judge.planning.compile import JudgeTarget, compile_sample
    from rubric_judge.planning.samples import Sample

    rubric = load_rubric_file(setup(tmp_path, "per_sample")["rubric"])
    plan = compile_sample(rubric, Sample("a", {"body_part": "chest", "report": "r"}), JudgeTarget("openai/test-judge"))
    assert {c.group: c.verdict.kind for c in plan.calls} == {"all-binary": "binary", "all-scale1-10": "scale"}
    scale_call = next(c for c in plan.calls if c.verdict.kind == "scale")
    assert "verdict.kind" not in scale_call.parts[0].text and "(scale)" in scale_call.parts[0].text
    assert set(scale_call.response_model.model_json_schema(by_alias=True)["properties"]) == {"clar-1", "clar-2"}


def test_dimension_scoring_must_suit_its_verdict(tmp_path: Path) -> None:
    text = MIXED.replace("{mode}", "per_dimension").replace("    scoring: mean_scale\n", "    scoring: weighted_points\n")
    path = write(tmp_path / "bad.yaml", text)
    with pytest.raises(UserError) as caught:
        load_rubric_file(path)
    (problem,) = caught.value.problems
    line = text.splitlines().index("    scoring: weighted_points", 12) + 1
    assert (problem.location.line, problem.field) == (line, "dimensions[1].scoring")
    assert "weighted_points needs binary verdicts" in problem.message and "mean_scale" in problem.fix


def test_tags_are_validated(tmp_path: Path) -> None:
    text = MIXED.replace("{mode}", "per_dimension").replace("tags: [axis:communication]", "tags: [" + "x" * 65 + "]")
    path = write(tmp_path / "bad.yaml", text)
    with pytest.raises(UserError) as caught:
        load_rubric_file(path)
    (problem,) = caught.value.problems
    line = next(i for i, row in enumerate(text.splitlines(), 1) if "clar-1" in row)
    assert (problem.location.line, problem.field) == (line, "criteria[3].tags")
    assert "1 to 64 characters" in problem.message


def test_a_broken_dimension_verdict_is_one_problem_not_a_cascade(tmp_path: Path) -> None:
    text = MIXED.replace("{mode}", "per_dimension").replace("{kind: scale, min: 1, max: 10}", "{kind: scale, mn: 1, max: 10}")
    (problem,) = _problems(write(tmp_path / "bad.yaml", text))
    assert (problem.location.line, problem.field) == (12, "dimensions[1].verdict.mn")
    assert "did you mean `min`?" in problem.fix


def _problems(path: Path):
    with pytest.raises(UserError) as caught:
        load_rubric_file(path)
    return caught.value.problems
