"""Rubric files from strangers cannot crash or exhaust the machine: deep YAML nesting is refused
before libyaml's recursive composer overflows the C stack, and prompt templates render within
limits on output size, steps and time (a validation error at the trial render, a per-sample
error when scoring)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from rubric_judge.errors import UserError
from rubric_judge.planning.compile import JudgeTarget, build_plan
from rubric_judge.planning.samples import Sample
from rubric_judge.rubrics import templates
from rubric_judge.rubrics.loader import LIBRARY, load_rubric_file
from rubric_judge.rubrics.yamlsrc import MAX_DEPTH, load_yaml

ROOT = Path(__file__).resolve().parents[1]
CLI = Path(sys.executable).parent / "rubric-judge"
# The CLI subprocess imports this checkout, whatever the venv was installed from.
CLI_ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)}


def validate(*paths: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CLI), "validate", *map(str, paths)], capture_output=True, text=True, timeout=timeout, env=CLI_ENV)


def rubric_with_prompt(folder: Path, name: str, prompt_line: str) -> Path:
    """A valid rubric whose prompt's second line (file line 12) is `prompt_line`."""
    path = folder / f"{name}.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            rubric: lab/bomb
            version: 1
            inputs:
              prompt: text
            verdict: binary
            dimensions:
              - id: accuracy
            criteria:
              - {id: accuracy-1, dimension: accuracy, weight: 1, text: "A criterion."}
            prompt: |
              Judge this.
            """
        )
        + f"  {prompt_line}\n"
        + "scoring:\n  method: weighted_points\n",
        encoding="utf-8",
    )
    return path


# --- YAML nesting -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("style", "value", "line"),
    [("flow", "extra: " + "[" * 50_000, 4), ("block", "extra:\n  " + "- " * 50_000 + "x", 5)],
)
def test_fifty_thousand_nested_levels_are_a_clean_error_not_a_segfault(tmp_path: Path, style: str, value: str, line: int) -> None:
    path = tmp_path / f"deep-{style}.yaml"
    path.write_text("rubric: lab/deep\nversion: 1\nprompt: hi\n" + value + "\n", encoding="utf-8")
    proc = validate(path)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, output[-2000:]  # was -11: SIGSEGV in libyaml's recursive composer
    assert f"{path}:{line}:" in output
    assert f"nested more than {MAX_DEPTH} levels" in output
    assert "Traceback" not in output


def test_deep_block_nesting_is_refused_at_its_line() -> None:
    # Indented lists nest without brackets; the same limit applies, at the line that goes over.
    text = "a:\n" + "".join(" " * level + "-\n" for level in range(MAX_DEPTH + 5))
    with pytest.raises(UserError) as caught:
        load_yaml(text, Path("deep.yaml"))
    problem = caught.value.problems[0]
    assert f"nested more than {MAX_DEPTH} levels" in problem.message
    assert problem.location.line == MAX_DEPTH + 1  # the first `-` one level too deep


def test_nesting_up_to_the_limit_still_loads(tmp_path: Path) -> None:
    # The mapping is level 1, so MAX_DEPTH - 1 brackets reach exactly the limit.
    nested = "[" * (MAX_DEPTH - 1) + "x" + "]" * (MAX_DEPTH - 1)
    assert load_yaml(f"a: {nested}\n", None).data["a"] is not None
    with pytest.raises(UserError):
        load_yaml(f"a: [{nested}]\n", None)
    # A real rubric, with flow mappings in lists in mappings, is unaffected.
    assert load_rubric_file(LIBRARY / "illugenbench" / "base.yaml").rubric == "illugenbench"


# --- template limits ----------------------------------------------------------------------------

BOMBS = {
    "repeat": "{{ 'a' * 1000000000 }}",
    "power": "{{ 10 ** (10 ** 10) }}",
    "nested-ranges": "{% for i in range(100000) %}{% for j in range(100000) %}{{ j }}{% endfor %}{% endfor %}",
    "filtered-loop": "{% for i in range(100000) %}{% for j in range(100000) if j < 0 %}{% endfor %}{% endfor %}",
    "center-width": "{{ prompt | center(1000000000) }}",
    "indent-width": "{{ prompt | indent(1000000000) }}",
    "percent-width": "{{ '%1000000000s' % prompt }}",
    "format-width": "{{ '{:>1000000000}'.format(prompt) }}",
    "method-width": "{{ prompt.ljust(1000000000) }}",
    "doubling": "{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}",
    "shared-list": "{{ ['x' * 1000000] * 100000 }}",
    "macro-recursion": "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(60) }}",
}


def test_template_bombs_are_validation_errors_at_their_line(tmp_path: Path) -> None:
    paths = [rubric_with_prompt(tmp_path, name, source) for name, source in BOMBS.items()]
    proc = validate(*paths, timeout=300)  # the old code hung here (or took gigabytes)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, output[-3000:]
    assert "Traceback" not in output
    for path in paths:
        assert f"{path}:12:1: prompt: template goes over a render limit" in output, path.name


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_each_bomb_names_its_limit(tmp_path: Path, name: str) -> None:
    with pytest.raises(UserError) as caught:
        load_rubric_file(rubric_with_prompt(tmp_path, name, BOMBS[name]))
    (problem,) = caught.value.problems
    assert problem.location.line == 12
    assert problem.field == "prompt"
    assert "render limit" in problem.message
    assert "characters" in problem.fix and "steps" in problem.fix


def test_a_large_input_over_the_limit_is_a_per_sample_error_when_scoring(tmp_path: Path) -> None:
    # Passes validation (the trial value is short), but a real 20,000-character input repeated
    # 1,000 times is 20 million characters: that sample is reported, the others are judged.
    rubric = load_rubric_file(rubric_with_prompt(tmp_path, "echo", "{{ prompt * 1000 }}"))
    samples = [Sample("short", {"prompt": "a heart"}), Sample("long", {"prompt": "x" * 20_000})]
    plan = build_plan([rubric], samples, JudgeTarget("openai/gpt-4.1"))
    assert [call.sample_id for call in plan.calls] == ["short"]
    (problem,) = plan.problems
    assert "'long'" in problem.message
    assert "characters long" in problem.message


def test_real_prompts_render_unchanged_within_the_limits() -> None:
    base = yaml.safe_load((LIBRARY / "illugenbench" / "base.yaml").read_text(encoding="utf-8"))
    criteria = [
        {"id": f"scientific_accuracy-{n}", "text": "The heart has four chambers.", "weight": 3, "dimension": "d", "number": n}
        for n in range(1, 35_001)
    ]
    context = {
        "prompt": "Draw a heart",
        "category": "Anatomical",
        "reference_image": "Image 1",
        "generated_image": "Image 2",
        "criteria": criteria,
        "dimension": {"id": "d", "name": "Scientific accuracy", "description": "Facts are right."},
    }
    rendered = templates.render(base["prompt"], context)
    assert rendered.count("(weight +3) The heart has four chambers.") == 35_000
    assert "35000. [scientific_accuracy-35000]" in rendered
    # What the sandbox always allowed still works: formatting, joins, filters, macros.
    source = (
        "{% macro item(c) %}{{ c.number }}:{{ c.id }}{% endmacro %}"
        "{{ '%+g' % -2 }}|{{ '{:>4}'.format('x') }}|{{ criteria[:2] | map(attribute='id') | join(', ') }}|"
        "{{ 'ab' | replace('a', 'xx') }}|{{ 'x' * 3 }}|{{ 2 ** 10 }}|{{ item(criteria[0]) }}|{{ 'a' ~ 1 }}"
    )
    assert templates.render(source, context) == "-2|   x|scientific_accuracy-1, scientific_accuracy-2|xxb|xxx|1024|1:scientific_accuracy-1|a1"
