"""Databases for the report tests: the bundled examples scored offline, and one full of markup.

`example_db` scores what `make demo` scores (IlluGenBench good-model and weak-model, and the
MedGEN example with its metrics) with the built-in offline judge, once per test session.
`xss_db` writes two runs whose model, judge, sample, category, dimension, criterion, reasoning,
metric detail and image file names all hold HTML and JavaScript.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "illugenbench"
MEDGEN = ROOT / "examples" / "medgen"

SCRIPT = "<script>window.__pwned=1</script>"
IMG = '<img src=x onerror="window.__pwned=1">'
SVG = "\"'><svg onload=window.__pwned=1>"
PAYLOADS = (SCRIPT, IMG, SVG)

_built: dict[str, Path] = {}


def example_db() -> Path:
    """The examples scored offline into one database (built once per process)."""
    if "examples" not in _built:
        from rubric_judge.run import score

        root = Path(tempfile.mkdtemp(prefix="rj-report-examples-"))
        atexit.register(shutil.rmtree, root, ignore_errors=True)  # shared by two test modules: removed at exit
        db, cache = root / "rubric-judge.duckdb", root / "cache"
        for model in ("good-model", "weak-model"):  # the library prints nothing
            score(EXAMPLE / "tasks", data=EXAMPLE / "manifest.jsonl", outputs=EXAMPLE / "outputs" / model,
                  model=model, judge="offline", db=db, cache_dir=cache)
        score("builtin:medgen/holistic-with-gt.yaml", data=MEDGEN / "manifest.jsonl",
              outputs=MEDGEN / "outputs" / "demo-model" / "outputs.jsonl", model="demo-model", judge="offline",
              db=db, cache_dir=cache, device="cpu")
        _built["examples"] = db
    return _built["examples"]


def xss_db(root: Path) -> Path:
    """Two imported runs of a rubric whose every data-derived string is an HTML/JS payload."""
    from PIL import Image

    from rubric_judge.metrics import MetricRow
    from rubric_judge.rubrics.loader import load_rubric_set
    from rubric_judge.store.db import ResultStore, RunInfo, write_imported_run

    root.mkdir(parents=True, exist_ok=True)
    image = root / f"ref {IMG} {SVG}.png".replace("/", "_")
    Image.new("RGB", (40, 30), (200, 40, 40)).save(image)
    rubric = load_rubric_set("builtin:illugenbench/base.yaml")[0]
    db = root / "xss.duckdb"
    store = ResultStore(db)
    try:
        sample = f"sample {SVG}"
        dimension = f"dim{SCRIPT}"
        fields = {"prompt": f"prompt {SCRIPT} {IMG}", "category": f"cat {IMG}", "reference_image": str(image),
                  "generated_image": str(root / f"missing {SCRIPT}.png".replace("/", "_"))}
        samples = [[sample, fields["category"], f"mod {SCRIPT}", [], json.dumps(fields)]]
        criteria = [[sample, f"c-{i}{SVG}", i, dimension, f"Dimension {SCRIPT}", weight, f"criterion {i} {SCRIPT} {IMG} {SVG}"]
                    for i, weight in enumerate((5.0, -3.0))]
        run_fields = [["reference_image", "image", False, f"Reference {IMG}", 0], ["generated_image", "image", True, f"Generated {SCRIPT}", 1]]
        for n, model in enumerate((f"model {SCRIPT}", f"model {IMG} {SVG}")):
            calls = [[f"{sample}/{dimension}/0", sample, dimension, 0, "key", False, 1, "ok", None, 12.0, 10, 5, 0.001, f"prompt {SCRIPT}",
                      json.dumps({"x": SCRIPT})]]
            verdicts = [[sample, c[1], 0, dimension, c[5], bool((i + n) % 2), None, 0.9, f"reasoning {SCRIPT} {IMG} {SVG}", "ok", calls[0][0]]
                        for i, c in enumerate(criteria)]
            config = {"data": str(root / "manifest.jsonl"), "note": SCRIPT}
            run_id = write_imported_run(store, RunInfo(rubric, model, f"judge {IMG}", None, config), samples, calls, verdicts, criteria, run_fields)
            store.write_metrics(run_id, [MetricRow(sample, f"metric{SCRIPT}", None, None, "error", f"detail {SCRIPT} {IMG}")])
    finally:
        store.close()
    return db


def chromium_or_fail() -> str:
    """The browser for the tests; never a skip: CI must run them (`make test` installs chromium)."""
    import pytest
    from browser import INSTALL_HINT, chromium_path

    path = chromium_path()
    if path is None or not os.access(path, os.X_OK):
        pytest.fail(INSTALL_HINT)
    return path


TRUST_RATERS = ("r1", "r2", f"r3 {IMG}")


def trust_db(root: Path, seed: int = 5) -> Path:
    """A binary run with two replicates per verdict and a bias-probe run, and three experts'
    labels (one rater id is markup), imported through the real importer: everything the
    report's "How far to trust this judge" section reads."""
    import duckdb
    import numpy as np

    from rubric_judge.rubrics.loader import load_rubric_set
    from rubric_judge.store.db import ResultStore, RunInfo, write_imported_run
    from rubric_judge.store.labels import import_labels

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rubric = load_rubric_set("builtin:illugenbench/base.yaml")[0]
    dimensions = ("scientific_accuracy", "structural_correctness", "semantic_alignment")
    items = [(f"s{s:02d}", f"{dimensions[i % 3]}-{i}") for s in range(24) for i in range(5)]
    truth = {item: bool(rng.random() < 0.4) for item in items}
    db = root / "trust.duckdb"
    store = ResultStore(db)
    try:
        samples = [[s, f"cat-{int(s[1:]) % 2}", None, [], "{}"] for s in sorted({s for s, _ in items})]
        criteria = [[s, c, i % 5, c.rsplit("-", 1)[0], None, 1.0, f"criterion {c} of {s} {SCRIPT}"] for i, (s, c) in enumerate(items)]

        def verdicts(flip: float, replicates: int) -> list[list]:
            rows = []
            for s, c in items:
                for replicate in range(replicates):
                    met = truth[(s, c)] ^ bool(rng.random() < flip)
                    rows.append([s, c, replicate, c.rsplit("-", 1)[0], 1.0, met, None, 0.9, f"reasoning {IMG}", "ok", None])
            return rows

        run = write_imported_run(store, RunInfo(rubric, "model", "judge-a", None, {}), samples, [], verdicts(0.2, 2), criteria)
        probe = write_imported_run(store, RunInfo(rubric, "model", "judge-a probe", None, {}), samples, [], verdicts(0.3, 1), criteria)
    finally:
        store.close()
    con = duckdb.connect(str(db))
    try:
        con.execute("UPDATE runs SET role = 'probe', parent_run_id = ?, probe = 'verbosity' WHERE run_id = ?", [run, probe])
    finally:
        con.close()
    labels = [{"sample_id": s, "criterion_id": c, "rater_id": r, "label": truth[(s, c)] ^ bool(rng.random() < 0.15)}
              for r in TRUST_RATERS for (s, c) in items if rng.random() < 0.8]
    path = root / "labels.jsonl"
    path.write_text("".join(json.dumps(label) + "\n" for label in labels))
    import_labels(db, path)
    return db
