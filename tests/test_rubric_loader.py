"""Good-path tests for the rubric loader: library rubrics, the `new` scaffold, `extends` merging,
optional inputs, `when` conditions, the template sandbox, and reporting several problems at once."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from jinja2.exceptions import SecurityError

from rubric_judge.errors import UserError
from rubric_judge.rubrics import templates
from rubric_judge.rubrics.loader import LIBRARY, load_rubric_file
from rubric_judge.rubrics.schema import InputKind

CLI = Path(sys.executable).parent / "rubric-judge"

BASE = """\
# a small base rubric that task files extend
rubric: lab/base
version: 1
description: Base description.
judge:
  model: openai/gpt-4.1
  temperature: 0
  mode: per_dimension
inputs:
  prompt: text
  category: text?
  reference_image: image?
  generated_image: image
outputs: [generated_image]
images:
  - {field: reference_image, label: "Reference"}
  - {field: generated_image, label: "Generated"}
verdict: binary
dimensions:
  - id: accuracy
  - id: alignment
    when: {category: [Anatomical, Surgical]}
criteria:
  - {id: accuracy-1, dimension: accuracy, weight: 5, text: "The heart has four chambers."}
prompt: |
  The model was asked: "{{ prompt }}"{% if category %} ({{ category }}){% endif %}
  Judge {{ generated_image }} on {{ dimension.name }}.
  {% for c in criteria -%}
  {{ c.number }}. [{{ c.id }}] {{ c.text }}
  {% endfor %}
scoring:
  method: weighted_points
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems_of(path: Path) -> list:
    with pytest.raises(UserError) as caught:
        load_rubric_file(path)
    return list(caught.value.problems)


# --- the CLI on good rubrics ----------------------------------------------------------------


def test_every_library_rubric_validates() -> None:
    files = sorted(p for p in LIBRARY.rglob("*") if p.suffix in (".yaml", ".yml"))
    assert files, "the library has rubrics"
    proc = subprocess.run([str(CLI), "validate", str(LIBRARY)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert f"{len(files)} of {len(files)} rubric file(s) valid" in proc.stdout
    assert proc.stderr == ""


def test_new_scaffold_validates(tmp_path: Path) -> None:
    made = subprocess.run([str(CLI), "new", "my-lab/chest-xray"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    written = tmp_path / "my-lab-chest-xray.yaml"
    assert written.is_file()
    checked = subprocess.run([str(CLI), "validate", written.name], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stderr
    assert "1 of 1 rubric file(s) valid" in checked.stdout
    rubric = load_rubric_file(written)
    assert rubric.rubric == "my-lab/chest-xray"
    assert rubric.inputs["reference_image"].optional


# --- extends ----------------------------------------------------------------------------------


def test_extends_merges_criteria_scalars_and_mappings(tmp_path: Path) -> None:
    write(tmp_path, "base.yaml", BASE)
    child = write(
        tmp_path,
        "tasks/heart.yaml",
        """\
        extends: ../base.yaml
        rubric: lab/heart
        version: 2
        task: heart-chambers
        judge:
          temperature: 0.5
        criteria:
          - {id: alignment-1, dimension: alignment, weight: 1, text: "Shows the view asked for."}
          - {id: accuracy-2, dimension: accuracy, weight: -3, text: "Garbled labels."}
        """,
    )
    rubric = load_rubric_file(child, root=tmp_path)
    assert [c.id for c in rubric.criteria] == ["accuracy-1", "alignment-1", "accuracy-2"]  # appended
    assert (rubric.rubric, rubric.version, rubric.task) == ("lab/heart", 2, "heart-chambers")  # scalars override
    assert rubric.description == "Base description."  # inherited
    assert rubric.judge.temperature == 0.5 and rubric.judge.model == "openai/gpt-4.1"  # nested mapping merges
    assert rubric.judge.mode.value == "per_dimension"
    assert [d.id for d in rubric.dimensions] == ["accuracy", "alignment"]


def test_extends_builtin_library_base(tmp_path: Path) -> None:
    task = write(
        tmp_path,
        "task.yaml",
        """\
        extends: builtin:illugenbench/base.yaml
        task: heart-chambers
        criteria:
          - {id: scientific_accuracy-1, dimension: scientific_accuracy, weight: 5, text: "Four chambers."}
        """,
    )
    rubric = load_rubric_file(task)
    assert rubric.rubric == "illugenbench" and rubric.task == "heart-chambers"
    assert [c.id for c in rubric.criteria] == ["scientific_accuracy-1"]


def test_errors_in_the_base_point_at_the_base_file(tmp_path: Path) -> None:
    base = write(tmp_path, "base.yaml", BASE.replace("dimension: accuracy, weight: 5", "dimension: acuracy, weight: 5"))
    child = write(
        tmp_path,
        "child.yaml",
        """\
        extends: base.yaml
        rubric: lab/child
        criteria:
          - {id: alignment-1, dimension: alignmnet, weight: 1, text: "Shows the view asked for."}
        """,
    )
    problems = problems_of(child)
    where = {(p.location.file.name, p.location.line, p.field) for p in problems}
    base_line = next(i for i, line in enumerate(base.read_text().splitlines(), 1) if "acuracy" in line)
    # criteria[0] comes from the base, criteria[1] from the child (shifted past the base's one).
    assert ("base.yaml", base_line, "criteria[0].dimension") in where
    assert ("child.yaml", 4, "criteria[1].dimension") in where
    assert len(problems) == 2


def test_overridden_base_value_is_reported_in_the_child(tmp_path: Path) -> None:
    write(tmp_path, "base.yaml", BASE)
    child = write(tmp_path, "child.yaml", "extends: base.yaml\njudge:\n  temperature: hot\n")
    (problem,) = problems_of(child)
    assert (problem.location.file.name, problem.location.line, problem.field) == ("child.yaml", 3, "judge.temperature")


# --- optional inputs and `when` ---------------------------------------------------------------


def test_optional_input_syntax(tmp_path: Path) -> None:
    text = BASE.replace("  category: text?\n", "  category: text?\n  notes: {kind: text, optional: true}\n  mask: image ?\n")
    rubric = load_rubric_file(write(tmp_path, "r.yaml", text))
    assert rubric.inputs["category"].optional and rubric.inputs["category"].kind is InputKind.text
    assert rubric.inputs["reference_image"].optional and rubric.inputs["reference_image"].kind is InputKind.image
    assert rubric.inputs["notes"].optional
    assert rubric.inputs["mask"].optional and rubric.inputs["mask"].kind is InputKind.image
    assert not rubric.inputs["generated_image"].optional and not rubric.inputs["prompt"].optional
    assert rubric.image_inputs == ["mask", "reference_image", "generated_image"]


def test_when_conditions(tmp_path: Path) -> None:
    text = BASE.replace("  - id: accuracy\n", "  - id: accuracy\n    when: {category: Surgical}\n")
    rubric = load_rubric_file(write(tmp_path, "r.yaml", text))
    accuracy, alignment = rubric.dimensions
    assert accuracy.when == {"category": ["Surgical"]}  # a single value becomes a list
    assert alignment.when == {"category": ["Anatomical", "Surgical"]}
    assert accuracy.applies_to({"category": "Surgical"}) and not accuracy.applies_to({"category": "Anatomical"})
    assert alignment.applies_to({"category": "Anatomical"}) and not alignment.applies_to({})
    assert rubric.dimension("accuracy") is accuracy


# --- templates ----------------------------------------------------------------------------------


def test_sandbox_refuses_python_internals_at_validate_time(tmp_path: Path) -> None:
    text = BASE.replace("  {% endfor %}\n", "  {% endfor %}\n  {{ ''.__class__.__mro__ }}\n")
    path = write(tmp_path, "r.yaml", text)
    (problem,) = problems_of(path)
    assert problem.field == "prompt" and "Python internals" in problem.message
    assert problem.location.line == next(i for i, line in enumerate(text.splitlines(), 1) if "__mro__" in line)


def test_internals_in_a_branch_the_trial_render_skips_are_still_refused(tmp_path: Path) -> None:
    text = BASE.replace(
        "Judge {{ generated_image }}", 'Judge {% if category == "never" %}{{ prompt.__class__ }}{% endif %}{{ generated_image }}'
    )
    (problem,) = problems_of(write(tmp_path, "r.yaml", text))
    assert "`__class__`" in problem.message
    assert problem.location.line == next(i for i, line in enumerate(text.splitlines(), 1) if "__class__" in line)


def test_sandbox_refuses_internals_at_render_time() -> None:
    with pytest.raises(SecurityError):
        templates.render("{{ x.__class__.__mro__ }}", {"x": "text"})
    assert templates.render("{{ x | upper }}", {"x": "text"}) == "TEXT"


def test_per_sample_template_must_not_need_a_dimension(tmp_path: Path) -> None:
    text = BASE.replace("mode: per_dimension", "mode: per_sample")
    (problem,) = problems_of(write(tmp_path, "r.yaml", text))
    assert problem.field == "prompt" and "undefined" in problem.message and "per_sample" in problem.fix
    guarded = text.replace("on {{ dimension.name }}", "{% if dimension %}on {{ dimension.name }}{% endif %}")
    assert load_rubric_file(write(tmp_path, "ok.yaml", guarded)).judge.mode.value == "per_sample"


def test_folded_template_errors_point_at_its_first_line(tmp_path: Path) -> None:
    text = BASE.replace("prompt: |\n", "prompt: >\n").replace("[{{ c.id }}]", "[{{ c.id }]")
    (problem,) = problems_of(write(tmp_path, "r.yaml", text))
    assert problem.location.line == next(i for i, line in enumerate(text.splitlines(), 1) if line.startswith("prompt:")) + 1


# --- several problems at once ------------------------------------------------------------------


def test_type_error_and_cross_field_problem_are_reported_together(tmp_path: Path) -> None:
    text = BASE.replace("temperature: 0", 'temperature: "hot"').replace("dimension: accuracy, weight: 5", "dimension: acuracy, weight: 5")
    problems = problems_of(write(tmp_path, "r.yaml", text))
    assert [p.field for p in problems] == ["judge.temperature", "criteria[0].dimension"]
    assert "did you mean 'accuracy'?" in problems[1].fix


def test_a_broken_entry_does_not_cascade(tmp_path: Path) -> None:
    # A bad input kind, a dimension with a typo'd key and a criterion with a quoted weight:
    # three problems, and no "undeclared input" / "unknown dimension" echoes of them.
    text = (
        BASE.replace("  prompt: text\n", "  prompt: txt\n")
        .replace("  - id: alignment\n", "  - id: alignment\n    descripton: Matches the prompt.\n")
        .replace("weight: 5", 'weight: "5"')
        + "  threshold: hot\n"
    )
    text = text.replace("criteria:\n", "criteria:\n  - {id: alignment-1, dimension: alignment, weight: 1, text: Shown.}\n", 1)
    problems = problems_of(write(tmp_path, "r.yaml", text))
    fields = [p.field for p in problems]
    assert fields == ["inputs.prompt", "dimensions[1].descripton", "criteria[1].weight", "scoring.threshold"], fields
    assert all(p.fix and "see the DSL reference" not in p.fix for p in problems)


def test_an_unknown_template_filter_is_a_located_problem_not_a_traceback(tmp_path: Path) -> None:
    text = BASE.replace("prompt: |", "prompt: |\n  {{ prompt | nofilter }}", 1)
    path = write(tmp_path, "r.yaml", text)
    with pytest.raises(UserError) as raised:
        load_rubric_file(path)
    [problem] = raised.value.problems
    assert "No filter named 'nofilter'" in problem.message and problem.field == "prompt"
    assert problem.location.line == next(i for i, line in enumerate(text.splitlines(), start=1) if "nofilter" in line)
