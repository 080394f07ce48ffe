"""DSL: criterion texts as templates (checked by `validate`, rendered per sample) and
`mean_scale` as a weighted mean sum(w*score)/sum(w), end to end through the loopback judge."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import duckdb
import pytest

from rubric_judge.errors import UserError
from rubric_judge.rubrics.loader import load_rubric_file
from rubric_judge.run import score
from rubric_judge.testing.loopback import CriterionQuestion, LoopbackJudge

CLI = [sys.executable, "-c", "from rubric_judge.cli.app import main; main()"]

SCALE = """\
rubric: lab/scale
inputs:
  body_part: text
  report: text
outputs: [report]
verdict: scale(1..10)
dimensions: [findings, style]
criteria:
  - {id: f-1, dimension: findings, weight: 3, text: "Score the {{ body_part }} findings."}
  - {id: f-2, dimension: findings, weight: 1, text: "Score completeness."}
  - {id: s-1, dimension: style, weight: 1, text: "Score the style."}
prompt: |
  {{ report }} {% for c in criteria %}{{ c.id }} {{ c.text }} {% endfor %}
scoring:
  method: mean_scale
"""

ANSWERS = {"f-1": 9, "f-2": 1, "s-1": 4}


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems_of(path: Path):
    with pytest.raises(UserError) as caught:
        load_rubric_file(path)
    return caught.value.problems


def test_unknown_name_in_a_criterion_text_is_an_error_at_its_line(tmp_path: Path) -> None:
    path = write(tmp_path / "r.yaml", SCALE.replace("{{ body_part }} findings", "{{ bodypart }} findings"))
    (problem,) = problems_of(path)
    assert (problem.location.file.name, problem.location.line, problem.field) == ("r.yaml", 9, "criteria[0].text")
    assert "`bodypart`" in problem.message and "did you mean `body_part`?" in problem.fix
    proc = subprocess.run([*CLI, "validate", str(path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and f"{path}:9:" in proc.stderr


def test_criterion_text_may_not_use_call_level_names(tmp_path: Path) -> None:
    """`criteria` and `dimension` depend on the batching mode, so a criterion text cannot use them."""
    path = write(tmp_path / "r.yaml", SCALE.replace("Score completeness.", "Score {{ dimension.name }}."))
    (problem,) = problems_of(path)
    assert (problem.location.line, problem.field) == (10, "criteria[1].text")


def test_criterion_text_is_checked_in_the_sandbox(tmp_path: Path) -> None:
    path = write(tmp_path / "r.yaml", SCALE.replace("Score completeness.", "{{ 'a' * 100000000 }}"))
    (problem,) = problems_of(path)
    assert problem.field == "criteria[1].text" and "limit" in problem.message


def test_text_without_template_syntax_is_used_as_written(tmp_path: Path) -> None:
    from rubric_judge.planning.compile import applicable_criteria
    from rubric_judge.planning.samples import Sample

    rubric = load_rubric_file(write(tmp_path / "r.yaml", SCALE.replace("Score the style.", "Score {style} and 100% of it.")))
    criteria = applicable_criteria(rubric, Sample("a", {"body_part": "hand", "report": "r"}))
    assert [c.text for c in criteria] == ["Score the hand findings.", "Score completeness.", "Score {style} and 100% of it."]


def test_mean_scale_weight_must_be_positive(tmp_path: Path) -> None:
    path = write(tmp_path / "r.yaml", SCALE.replace("weight: 1, text: \"Score completeness.", "weight: -1, text: \"Score completeness."))
    (problem,) = problems_of(path)
    assert (problem.location.line, problem.field) == (10, "criteria[1].weight")
    assert "sum(w*score)/sum(w)" in problem.message


def test_mean_scale_is_a_weighted_mean_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUBRIC_JUDGE_API_KEY", "sk-loopback-test")
    rubric = write(tmp_path / "r.yaml", SCALE)
    data = write(tmp_path / "m.jsonl", json.dumps({"id": "s1", "body_part": "wrist"}) + "\n")
    outputs = write(tmp_path / "o" / "o.jsonl", json.dumps({"id": "s1", "report": "fine"}) + "\n")

    def policy(question: CriterionQuestion) -> dict[str, Any]:
        return {"reasoning": "r", "score": ANSWERS[question.criterion_id]}

    db = tmp_path / "r.duckdb"
    with LoopbackJudge(policy=policy) as server:
        assert score(rubric, data=data, outputs=outputs, model="m", judge="openai/test-judge", api_base=server.base_url,
                     db=db, cache_dir=tmp_path / "c", concurrency=2, timeout=10.0).exit_code == 0
    con = duckdb.connect(str(db), read_only=True)
    try:
        overall = con.execute("SELECT score FROM task_scores").fetchone()[0]
        dims = dict(con.execute("SELECT dimension, score FROM dimension_scores").fetchall())
        board = dict(con.execute("SELECT dimension, score FROM leaderboard").fetchall())
        [text] = con.execute("SELECT text FROM criteria WHERE criterion_id = 'f-1'").fetchone()
    finally:
        con.close()
    # By hand: (3*9 + 1*1 + 1*4) / (3 + 1 + 1) = 32/5; the unweighted mean would be 14/3.
    assert overall == pytest.approx(32 / 5, abs=1e-12)
    assert dims == {"findings": pytest.approx((3 * 9 + 1 * 1) / 4, abs=1e-12), "style": pytest.approx(4.0)}
    assert board["overall"] == pytest.approx(32 / 5, abs=1e-12)
    assert text == "Score the wrist findings."
