"""`rubric-judge new --kind text|image --verdict binary|scale` writes a scaffold of that kind that validates."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rubric_judge.rubrics.loader import load_rubric_file

CLI = [sys.executable, "-c", "from rubric_judge.cli.app import main; main()"]


@pytest.mark.parametrize("kind", ["text", "image"])
@pytest.mark.parametrize("verdict", ["binary", "scale"])
def test_new_writes_the_matching_scaffold(tmp_path: Path, kind: str, verdict: str) -> None:
    path = tmp_path / "r.yaml"
    proc = subprocess.run([*CLI, "new", "lab/r", "--out", str(path), "--kind", kind, "--verdict", verdict],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rubric = load_rubric_file(path)
    assert rubric.verdict.kind == verdict
    assert rubric.scoring.method.value == ("weighted_points" if verdict == "binary" else "mean_scale")
    assert bool(rubric.image_inputs) == (kind == "image") and bool(rubric.images) == (kind == "image")
    assert all(c.tags for c in rubric.criteria[:1]) and "{{ body_part }}" in rubric.criteria[0].text
    if verdict == "scale":
        assert all(c.weight > 0 for c in rubric.criteria)
    text = path.read_text()
    assert "bump to re-judge" not in text and "the rubric's digest identifies its content; bump version for humans" in text
    assert yaml.safe_load(text)["rubric"] == "lab/r"


def test_new_refuses_an_unknown_kind(tmp_path: Path) -> None:
    proc = subprocess.run([*CLI, "new", "lab/r", "--out", str(tmp_path / "r.yaml"), "--kind", "audio"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "audio" in proc.stderr and not (tmp_path / "r.yaml").exists()
