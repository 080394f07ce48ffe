"""The README's authoring walkthrough, run line by line as a user would: scaffold a text rubric,
preview a sample, score two samples, edit a criterion, re-score, compare the versions and query
the failed criteria. If the README's commands stop working, this fails."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def walkthrough() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- walkthrough -->\n```bash\n(.*?)```\n<!-- /walkthrough -->", text, re.DOTALL)
    assert block, "README.md lost its walkthrough block"
    return block.group(1)


def test_the_readme_walkthrough_runs_as_written(tmp_path: Path) -> None:
    script = walkthrough()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "TMPDIR": str(tmp_path),
           "COLUMNS": "200", "RUBRIC_JUDGE_DB": "", "RUBRIC_JUDGE_CACHE_DIR": ""}
    # Each line echoed before it runs, and the first failing line stops the script.
    done = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", "set -v\n" + script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    assert "Traceback" not in out
    assert "wrote lab-summary.yaml" in out
    # preview: the rendered criterion text and the cache key, nothing sent
    assert "The chest anatomy in the report is correct." in out and "(not cached)" in out
    assert out.count("Partial run: scored the first 2 of 3 samples (--limit 2)") == 2
    # the edit kept the first version as a superseded run, and compare names the changed criterion
    assert "(superseded)" in out and "alignment-1" in out
    assert "The report answers what the prompt asked, in plain words." in out
    # the scaffold wrote the files where the walkthrough said: nothing in the repository
    assert not (ROOT / "lab-summary.yaml").exists() and not (ROOT / "examples" / "reports" / "lab-summary.yaml").exists()
