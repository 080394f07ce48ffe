"""DSL `extends`: a child entry with an inherited id replaces it, `remove: [ids]` drops inherited
criteria and dimensions, `abstract: true` marks a base validated as a fragment and never scored,
and a problem in an inherited value names both files with a fix for the child."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rubric_judge.errors import UserError
from rubric_judge.rubrics.loader import load_rubric_file, load_rubric_set

CLI = [sys.executable, "-c", "from rubric_judge.cli.app import main; main()"]

BASE = """\
rubric: lab/base
abstract: true
inputs:
  report: text
outputs: [report]
dimensions:
  - id: accuracy
  - id: style
criteria:
  - {id: acc-1, dimension: accuracy, weight: 5, text: "Findings are correct."}
  - {id: acc-2, dimension: accuracy, weight: -3, text: "A finding is invented."}
  - {id: style-1, dimension: style, weight: 1, text: "Reads well."}
"""

CHILD = """\
extends: base.yaml
rubric: lab/child
prompt: |
  Judge {{ report }}: {% for c in criteria %}{{ c.id }} {{ c.text }}; {% endfor %}
scoring:
  method: weighted_points
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems_of(path: Path, root: Path | None = None):
    with pytest.raises(UserError) as caught:
        load_rubric_file(path, root)
    return caught.value.problems


def test_child_entry_with_a_parent_id_replaces_it_in_place(tmp_path: Path) -> None:
    write(tmp_path, "base.yaml", BASE)
    child = write(tmp_path, "child.yaml", CHILD + """\
criteria:
  - {id: acc-1, dimension: accuracy, weight: 2, text: "Findings match the images."}
  - {id: acc-9, dimension: accuracy, weight: 1, text: "New."}
dimensions:
  - {id: style, name: Writing style}
""")
    rubric = load_rubric_file(child)
    assert [(c.id, c.weight, c.text) for c in rubric.criteria] == [
        ("acc-1", 2.0, "Findings match the images."), ("acc-2", -3.0, "A finding is invented."),
        ("style-1", 1.0, "Reads well."), ("acc-9", 1.0, "New.")]
    assert [(d.id, d.title) for d in rubric.dimensions] == [("accuracy", "Accuracy"), ("style", "Writing style")]
    assert not rubric.abstract  # `abstract` is not inherited


def test_remove_drops_inherited_criteria_and_dimensions(tmp_path: Path) -> None:
    write(tmp_path, "base.yaml", BASE)
    child = write(tmp_path, "child.yaml", CHILD + "remove: [acc-2, style]\n")
    rubric = load_rubric_file(child)
    assert [c.id for c in rubric.criteria] == ["acc-1"]  # style-1 leaves with its dimension
    assert [d.id for d in rubric.dimensions] == ["accuracy"]


def test_remove_of_an_unknown_id_is_an_error_at_its_line(tmp_path: Path) -> None:
    write(tmp_path, "base.yaml", BASE)
    child = write(tmp_path, "child.yaml", CHILD + "remove:\n  - acc-3\n")
    (problem,) = problems_of(child)
    assert (problem.location.file.name, problem.location.line, problem.field) == ("child.yaml", 8, "remove[0]")
    assert "acc-3" in problem.message and "acc-1" in problem.fix


def test_error_in_an_inherited_field_names_both_files_and_fixes_the_child(tmp_path: Path) -> None:
    write(tmp_path, "base.yaml", BASE)
    # The child switches to a 1-10 scale: the base's negative weight is wrong *for the child*.
    child = write(tmp_path, "child.yaml", CHILD.replace("weighted_points", "mean_scale") + "verdict: scale(1..10)\n")
    (problem,) = problems_of(child)
    assert (problem.location.file.name, problem.location.line, problem.field) == ("base.yaml", 11, "criteria[1].weight")
    assert f"inherited by {child}:1" in problem.message
    assert "in child.yaml, restate criterion `acc-2`" in problem.fix and "remove: [acc-2]" in problem.fix


def test_validate_dir_passes_on_a_suite_with_an_abstract_base(tmp_path: Path) -> None:
    write(tmp_path, "base.yaml", BASE)
    write(tmp_path, "tasks/one.yaml", CHILD.replace("base.yaml", "../base.yaml").replace("lab/child", "lab/one"))
    proc = subprocess.run([*CLI, "validate", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 of 2 rubric file(s) valid" in proc.stdout and "abstract" in proc.stdout
    # The same base without `abstract: true` is an incomplete rubric.
    write(tmp_path, "base.yaml", BASE.replace("abstract: true\n", ""))
    proc = subprocess.run([*CLI, "validate", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "base.yaml" in proc.stderr and "prompt" in proc.stderr


def test_an_abstract_base_is_still_checked_for_what_it_declares(tmp_path: Path) -> None:
    base = write(tmp_path, "base.yaml", BASE.replace("dimension: style,", "dimension: stlye,"))
    (problem,) = problems_of(base)
    assert (problem.location.line, problem.field) == (12, "criteria[2].dimension")


def test_an_abstract_rubric_is_never_scored(tmp_path: Path) -> None:
    base = write(tmp_path, "base.yaml", BASE)
    write(tmp_path, "child.yaml", CHILD)
    assert [r.rubric for r in load_rubric_set(tmp_path)] == ["lab/child"]  # the base is left out of the set
    with pytest.raises(UserError) as caught:
        load_rubric_set(base)
    assert "abstract" in str(caught.value) and "extends" in caught.value.problems[0].fix
    manifest = write(tmp_path, "data/m.jsonl", '{"id": "s1"}\n')
    outputs = write(tmp_path, "out/o.jsonl", '{"id": "s1", "report": "x"}\n')
    proc = subprocess.run([*CLI, "score", str(base), "--data", str(manifest), "--outputs", str(outputs), "--model", "m",
                           "--judge", "offline", "--db", str(tmp_path / "r.duckdb"), "--cache-dir", str(tmp_path / "c")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "is abstract" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "r.duckdb").exists()
