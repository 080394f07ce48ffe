"""A catalogue of broken rubrics: `rubric-judge validate` must reject each one with exit code 2,
point at the right file and line, say what is wrong and give a concrete fix.

Every file under tests/rubrics/broken/ holds one realistic rubric with exactly one mistake,
described in its first-line comment. The expected line of each case is written here by hand
(read off the file), never taken from the validator's output. Most cases run the CLI in-process
(typer's CliRunner, fast); a few and the whole directory run the installed console script as a
subprocess, to check exit codes end to end.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

import pytest
from typer.testing import CliRunner

from rubric_judge.cli.app import app

BROKEN = Path(__file__).parent / "rubrics" / "broken"
CLI = Path(sys.executable).parent / "rubric-judge"


class Case(NamedTuple):
    path: str  # relative to BROKEN
    line: int  # the line the error must point at
    fragment: str  # must appear in the problem (message or fix)


CASES = [
    # YAML itself
    Case("yaml-tab-indent.yaml", 8, "tab character"),
    Case("yaml-unclosed-bracket.yaml", 16, "`[` opened here is not closed"),
    Case("yaml-duplicate-key.yaml", 9, "duplicate key 'temperature' (first at line 8)"),
    Case("yaml-alias-bomb.yaml", 8, "alias bomb"),
    Case("yaml-recursive-alias.yaml", 4, "contains itself through a YAML alias"),
    Case("python-object-tag.yaml", 4, "`!!python/object/apply:os.system` is not allowed"),
    Case("metric-pass-unquoted.yaml", 50, 'put the value in quotes: `pass: ">= 0.7"`'),
    Case("empty.yaml", 1, "the file is empty"),
    Case("top-level-list.yaml", 2, "must be a YAML mapping"),
    Case("not-utf8.yaml", 4, "not UTF-8"),
    # keys and types
    Case("unknown-key-prompts.yaml", 35, "did you mean `prompt`?"),
    Case("judge-temprature.yaml", 8, "did you mean `temperature`?"),
    Case("temperature-hot.yaml", 8, "expected a number, got the text 'hot'"),
    Case("temperature-out-of-range.yaml", 8, "use a number from 0 to 2"),
    Case("judge-mode-invalid.yaml", 9, "did you mean `per_dimension`?"),
    Case("scoring-missing.yaml", 2, "add `scoring:` with `method: weighted_points`"),
    Case("input-kind-invalid.yaml", 12, "did you mean `text`?"),
    Case("input-name-reserved.yaml", 13, "reserved for templates"),
    # criteria and dimensions
    Case("criterion-missing-text.yaml", 33, "criteria[2].text: required field is missing"),
    Case("criterion-blank-text.yaml", 32, "criterion text is blank"),
    Case("criterion-duplicate-id.yaml", 33, "already used by criteria[1]"),
    Case("criterion-id-invalid.yaml", 31, "write e.g. `accuracy-1`"),
    Case("weight-not-number.yaml", 31, "weight must be a number, not the text 'heavy'"),
    Case("weight-quoted.yaml", 31, "remove the quotes: `weight: 5`"),
    Case("weight-nan.yaml", 32, "finite number"),
    Case("criterion-unknown-dimension.yaml", 33, "did you mean 'alignment'?"),
    Case("dimension-id-invalid.yaml", 25, "write e.g. `medical_accuracy`"),
    Case("dimension-overall-reserved.yaml", 25, "is reserved for the score pooled over all dimensions"),
    Case("dimensions-empty.yaml", 24, "at least one dimension"),
    Case("when-undeclared-field.yaml", 29, "`when` uses 'task_type', which is not a declared input"),
    # templates
    Case("template-undeclared-input.yaml", 37, "did you mean `generated_image`?"),
    Case("template-dunder-class.yaml", 37, "Python internals (`__class__`)"),
    Case("template-mro.yaml", 41, "Python internals"),
    Case("template-syntax-error.yaml", 39, "template syntax error: unexpected '}'"),
    Case("template-unclosed-for.yaml", 38, "add `{% endfor %}`"),
    # extends
    Case("extends-cycle/a.yaml", 2, "`extends` cycle: a.yaml -> b.yaml -> a.yaml"),
    Case("extends-cycle/b.yaml", 4, "`extends` cycle: b.yaml -> a.yaml -> b.yaml"),
    Case("extends-missing-target.yaml", 2, "`extends` target not found: chest_base.yaml"),
    Case("extends-outside-root.yaml", 2, "points outside the rubric directory"),
    Case("extends-builtin-nope.yaml", 2, "library rubrics: illugenbench/base.yaml"),
    # verdicts and scoring
    Case("verdict-scale-reversed.yaml", 22, "scale minimum 10 is not below maximum 1"),
    Case("verdict-bad.yaml", 22, "write `verdict: scale(1..10)`"),
    Case("weighted-points-with-scale.yaml", 43, "weighted_points needs binary verdicts"),
    Case("mean-scale-with-binary.yaml", 43, "mean_scale needs scale verdicts"),
    Case("pass-rate-no-threshold.yaml", 42, "pass_rate needs a `threshold`"),
    Case("pass-rate-unknown-criterion.yaml", 44, "did you mean 'accuracy-1'?"),
    # inputs, outputs, images, metrics
    Case("image-slot-text-input.yaml", 19, "'prompt' is declared as text, not image"),
    Case("image-slot-undeclared.yaml", 20, "'output_image', which is not a declared input"),
    Case("image-strip-without-label.yaml", 20, "a label strip needs a `label`"),
    Case("outputs-undeclared.yaml", 16, "did you mean 'generated_image'?"),
    Case("metric-image-vs-text.yaml", 47, "ssim compares images but 'caption' is text"),
    Case("metric-bad-pass.yaml", 47, '`pass: ">= 0.7"`'),
]

# Run these as real subprocesses too: exit codes through the console script's `main`.
SUBPROCESS = ["yaml-tab-indent.yaml", "yaml-alias-bomb.yaml", "python-object-tag.yaml", "template-mro.yaml", "extends-cycle/a.yaml"]

GENERIC_FIX = "see the DSL reference"


def flat(text: str) -> str:
    """The terminal wraps long problems; compare on whitespace-normalised text."""
    return " ".join(text.split())


def check_report(case: Case, code: int, stderr: str) -> None:
    assert code == 2, f"{case.path}: exit code {code}\n{stderr}"
    assert f"{case.path}:{case.line}:" in stderr, f"{case.path}: expected a problem at line {case.line}\n{stderr}"
    assert re.search(r"^\s*fix: \S", stderr, re.M), f"{case.path}: no `fix:` line\n{stderr}"
    assert case.fragment in flat(stderr), f"{case.path}: expected {case.fragment!r}\n{stderr}"
    # One mistake per file: one problem, and a concrete fix rather than the generic pointer.
    assert "1 problem" in stderr and stderr.count("error ") == 1, f"{case.path}: expected exactly one problem\n{stderr}"
    assert GENERIC_FIX not in stderr, f"{case.path}: generic fix\n{stderr}"


@pytest.fixture
def in_broken(monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(BROKEN)
    return BROKEN


@pytest.mark.parametrize("case", CASES, ids=[c.path for c in CASES])
def test_broken_rubric_in_process(case: Case, in_broken: Path) -> None:
    result = CliRunner().invoke(app, ["validate", case.path])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    check_report(case, result.exit_code, result.stderr)


@pytest.mark.parametrize("name", SUBPROCESS)
def test_broken_rubric_subprocess(name: str) -> None:
    case = next(c for c in CASES if c.path == name)
    proc = subprocess.run([str(CLI), "validate", case.path], cwd=BROKEN, capture_output=True, text=True, timeout=60)
    check_report(case, proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr


def test_whole_directory_reports_every_file() -> None:
    proc = subprocess.run([str(CLI), "validate", "."], cwd=BROKEN, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    for case in CASES:
        assert f"{case.path}:{case.line}:" in proc.stderr, f"{case.path} not reported at line {case.line}"
    assert f"{len(CASES)} problems" in proc.stderr
    assert f"0 of {len(CASES)} rubric file(s) valid" in proc.stdout


def test_catalogue_is_complete_and_documented() -> None:
    files = sorted(p.relative_to(BROKEN).as_posix() for p in BROKEN.rglob("*.yaml"))
    assert files == sorted(c.path for c in CASES), "every broken rubric needs a case, and every case a file"
    assert len(files) >= 28
    for name in files:
        first = (BROKEN / name).read_bytes().split(b"\n", 1)[0]
        assert first.startswith(b"# ") and len(first) > 10, f"{name}: the first line must say what is wrong"


def test_alias_bomb_fails_fast(in_broken: Path) -> None:
    from rubric_judge.errors import UserError
    from rubric_judge.rubrics.loader import load_rubric_file

    started = time.perf_counter()
    with pytest.raises(UserError) as caught:
        load_rubric_file(Path("yaml-alias-bomb.yaml"))
    assert time.perf_counter() - started < 1.0
    assert "alias bomb" in caught.value.problems[0].message
