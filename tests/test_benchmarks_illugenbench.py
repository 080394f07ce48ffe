"""IlluGenBench import: the benchmark file becomes task rubrics that validate, and the official
evaluation script's verdicts become runs whose reference-compatible leaderboard equals the
official formula, computed here independently of the SQL views on randomised files."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import duckdb
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from rubric_judge.benchmarks.illugenbench import DIMENSIONS, import_bench, import_results, safe_name
from rubric_judge.cli.app import app
from rubric_judge.cli.importers import import_app
from rubric_judge.errors import UserError
from rubric_judge.planning.job import load_job
from rubric_judge.rubrics.loader import discover, load_rubric_file, load_rubric_set
from rubric_judge.rubrics.templates import render

WEIGHTS = [5.0, 3.0, 1.0, 2.5, 0.5, -1.0, -3.0, -5.0, 0.0]
NASTY = ['the "aorta": {{ arises }} from the LV', "a colon: here", "{% raw %} # not a comment", "- dash first", "'single'", "multi\nline", "yes"]


def _bench(rng: random.Random, tasks: int) -> dict:
    bench = {}
    for i in range(tasks):
        key = rng.choice([f"task_{i:03d}.jpg", f"case {i} (a).png", f"ümlaut-{i}.jpeg", f"t{i}"])
        rubric: dict[str, list] = {}
        all_negative = rng.random() < 0.1
        for dimension in DIMENSIONS:
            if rng.random() < 0.1:
                continue  # the dimension is absent for this task
            count = rng.randint(0, 6)
            items = []
            for k in range(count):
                weight = -rng.choice([1.0, 3.0]) if all_negative else rng.choice(WEIGHTS)
                if rng.random() < 0.3:
                    weight = int(weight) if weight == int(weight) else weight
                items.append({"description": f"{rng.choice(NASTY)} #{i}.{dimension}.{k}", "weight": weight})
            rubric[dimension] = items
        bench[key] = {"prompt": f"Draw task {i}: {rng.choice(NASTY)}", "category": rng.choice(["Anatomical", "Surgical", "Educational"]), "rubric": rubric}
    return bench


def _results(rng: random.Random, bench: dict) -> dict:
    results = {}
    for key, task in bench.items():
        if rng.random() < 0.15:
            continue  # no generated image: the task is absent from the results
        if rng.random() < 0.05:
            results[key] = {"error": "timeout"}  # no rubric_eval at all
            continue
        evaluation = {}
        for dimension, items in task["rubric"].items():
            if rng.random() < 0.05:
                continue  # the whole dimension's call failed
            out = []
            for item in items:
                entry = {"description": item["description"], "weight": item["weight"]}
                roll = rng.random()
                if roll < 0.08:
                    pass  # no evaluation
                elif roll < 0.12:
                    entry["evaluation"] = {"verdict": "N/A", "reasoning": "parse failure"}
                else:
                    met = rng.random() < 0.6
                    entry["evaluation"] = {"verdict": "Satisfied" if met else "Not Satisfied", "score": int(met),
                                           "confidence": round(rng.random(), 3), "reasoning": "because", "evidence": "x"}
                out.append(entry)
            if out and rng.random() < 0.05:
                out = out[: rng.randint(0, len(out) - 1)]  # truncated list: trailing verdicts missing
            evaluation[dimension] = out
        results[key] = {"rubric_eval": evaluation}
    return results


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def official_scores(bench: dict, results: dict) -> dict[str, float | None]:
    """BENCHMARKS.md section 1, read literally: S_k = sum(w*m) / sum(w > 0) per task, pooled and per
    dimension; m = 1 only for a "Satisfied" verdict (a missing verdict counts as not satisfied);
    a task absent from the results is skipped; a task (or task dimension) without a positive
    weight is skipped; the score is the plain mean over the remaining tasks."""
    pooled: list[float] = []
    per: dict[str, list[float]] = {d: [] for d in DIMENSIONS}
    for key, task in bench.items():
        if key not in results:
            continue
        evaluation = results[key].get("rubric_eval") or {}
        total_num = total_den = 0.0
        for dimension, items in task["rubric"].items():
            got = evaluation.get(dimension) or []
            num = den = 0.0
            for i, item in enumerate(items):
                w = float(item["weight"])
                verdict = (got[i].get("evaluation") or {}).get("verdict") if i < len(got) else None
                num += w * (1 if verdict == "Satisfied" else 0)
                den += w if w > 0 else 0.0
            total_num, total_den = total_num + num, total_den + den
            if den > 0:
                per[dimension].append(num / den)
        if total_den > 0:
            pooled.append(total_num / total_den)
    return {"overall": _mean(pooled), **{d: _mean(v) for d, v in per.items()}}


def default_scores(bench: dict, results: dict) -> dict[str, float | None]:
    """rubric-judge's default policy: a task absent from the results counts (every criterion
    unmet); a missing verdict is left out of numerator and denominator."""
    pooled: list[float] = []
    per: dict[str, list[float]] = {d: [] for d in DIMENSIONS}
    for key, task in bench.items():
        missing = key not in results
        evaluation = {} if missing else (results[key].get("rubric_eval") or {})
        total_num = total_den = 0.0
        for dimension, items in task["rubric"].items():
            got = evaluation.get(dimension) or []
            num = den = 0.0
            for i, item in enumerate(items):
                w = float(item["weight"])
                verdict = (got[i].get("evaluation") or {}).get("verdict") if i < len(got) else None
                if not missing and verdict not in ("Satisfied", "Not Satisfied"):
                    continue
                num += w * (1 if verdict == "Satisfied" else 0)
                den += w if w > 0 else 0.0
            total_num, total_den = total_num + num, total_den + den
            if den > 0:
                per[dimension].append(num / den)
        if total_den > 0:
            pooled.append(total_num / total_den)
    return {"overall": _mean(pooled), **{d: _mean(v) for d, v in per.items()}}


def _leaderboard(db: Path, rubric_id: str) -> dict[str, float | None]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = con.execute("SELECT dimension, score FROM leaderboard WHERE rubric_id = ?", [rubric_id]).fetchall()
    finally:
        con.close()
    return dict(rows)


def _write(path: Path, data) -> Path:
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def _images(folder: Path, keys, skip_every: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for n, key in enumerate(keys):
        if skip_every and n % skip_every == 0:
            continue
        stem = key.rsplit(".", 1)[0] if "." in key else key
        Image.new("RGB", (4, 4), (n % 256, 0, 0)).save(folder / f"{stem}.png")  # official convention: fall back to <stem>.png
    return folder


def _close(a: float | None, b: float | None) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and abs(a - b) <= 1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4, 5])
def test_reference_leaderboard_equals_official_formula(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    bench = _bench(rng, rng.randint(25, 45))
    results = _results(rng, bench)
    bench_file, results_file = _write(tmp_path / "illubench.json", bench), _write(tmp_path / "gemini.json", results)
    db = tmp_path / "r.duckdb"
    imported = import_results(results_file, bench_file, "model-x", db)

    expected = official_scores(bench, results)
    got = _leaderboard(db, "illugenbench@reference")
    assert set(got) <= set(expected)
    for dimension, value in expected.items():
        assert _close(got.get(dimension), value), (seed, dimension, got.get(dimension), value)
    expected_default = default_scores(bench, results)
    got_default = _leaderboard(db, "illugenbench")
    for dimension, value in expected_default.items():
        assert _close(got_default.get(dimension), value), (seed, dimension, got_default.get(dimension), value)
    assert _close(imported.scores["reference"]["overall"], got["overall"])
    assert imported.missing_outputs == tuple(k for k in bench if k not in results)

    con = duckdb.connect(str(db), read_only=True)
    runs = con.execute("SELECT rubric_id, model_name, judge_model, missing_output, unscored_policy FROM runs ORDER BY rubric_id").fetchall()
    statuses = dict(con.execute("SELECT status, count(*) FROM verdicts WHERE run_id = ? GROUP BY status", [imported.runs["reference"]]).fetchall())
    texts = con.execute("SELECT sample_id, criterion_id, weight, text FROM criteria WHERE run_id = ? ORDER BY ALL", [imported.runs["reference"]]).fetchall()
    con.close()
    # The criterion texts travel with the verdicts, so a report can show what was judged.
    assert texts == sorted((key, f"{dim}-{i}", float(item["weight"]), item["description"])
                           for key, task in bench.items() for dim, items in task["rubric"].items() for i, item in enumerate(items, 1))
    assert runs == [("illugenbench", "model-x", "imported:gemini.json", "fail", "exclude"),
                    ("illugenbench@reference", "model-x", "imported:gemini.json", "skip", "fail")]
    assert statuses.get("unscored", 0) == imported.unscored
    assert statuses.get("ok", 0) == imported.verdicts
    # Re-importing replaces the runs' rows instead of duplicating them.
    import_results(results_file, bench_file, "model-x", db)
    again = _leaderboard(db, "illugenbench@reference")
    assert again.keys() == got.keys() and all(_close(again[d], got[d]) for d in got)  # DuckDB's sum order may vary: not bit-equal


def test_import_round_trip_validates_and_loads(tmp_path: Path) -> None:
    rng = random.Random(7)
    bench = _bench(rng, 30)
    keys = list(bench)
    bench_file = _write(tmp_path / "illubench.json", bench)
    images = _images(tmp_path / "ori", keys, skip_every=10)
    out = tmp_path / "dataset"
    result = import_bench(bench_file, images, out)

    assert result.tasks == len(bench)
    assert result.criteria == sum(len(v) for t in bench.values() for v in t["rubric"].values())
    assert set(result.missing_references) == {k for n, k in enumerate(keys) if n % 10 == 0}
    assert set(result.without_positive_weight) == {k for k, t in bench.items() if not any(i["weight"] > 0 for v in t["rubric"].values() for i in v)}
    rubrics = {r.task: r for r in load_rubric_set(out / "tasks")}
    assert set(rubrics) == set(bench)  # exact keys, quoting and all
    for key, task in bench.items():
        expected = [(f"{d}-{i}", d, float(item["weight"]), item["description"].strip()) for d, items in task["rubric"].items() for i, item in enumerate(items, 1)]
        # Criterion texts are templates; the benchmark's braces are escaped and render as written.
        assert [(c.id, c.dimension, c.weight, render(c.text, {})) for c in rubrics[key].criteria] == expected
    assert CliRunner().invoke(app, ["validate", str(out / "tasks")]).exit_code == 0

    # The dataset binds: references resolve inside the dataset, every task id is a manifest id.
    present = [k for n, k in enumerate(keys) if n % 10 != 0]
    lines = [json.loads(line) for line in (out / "manifest.jsonl").read_text(encoding="utf-8").splitlines()]
    subset = out / "subset.jsonl"
    subset.write_text("".join(json.dumps(r) + "\n" for r in lines if r["id"] in present), encoding="utf-8")
    job = load_job(out / "tasks", subset, None)
    assert {s.id for s in job.samples} == set(present)
    assert all(s.fields["reference_image"].is_file() for s in job.samples)
    assert [r["id"] for r in lines] == keys
    assert all(r["prompt"] == bench[r["id"]]["prompt"] for r in lines)

    # Re-import is idempotent; a stale task file of an earlier import is removed.
    (out / "tasks" / "gone.yaml").write_text((out / "tasks" / f"{safe_name(keys[0])}.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    import_bench(bench_file, images, out)
    assert not (out / "tasks" / "gone.yaml").exists()
    (out / "tasks" / "mine.yaml").write_text("rubric: mine\n", encoding="utf-8")
    with pytest.raises(UserError, match="not written by this importer"):
        import_bench(bench_file, images, out)


def test_bench_shapes_and_problems(tmp_path: Path) -> None:
    images = _images(tmp_path / "ori", ["a.jpg", "b.jpg", "B.jpg"])
    part1 = {"a.jpg": {"caption": "A", "rubric": {"scientific_accuracy": [{"description": "x", "weight": 1},
                                                                          {"description": "", "weight": 1},
                                                                          {"description": "y", "weight": "heavy"},
                                                                          {"description": "z", "weight": 2}],
                                                  "style_quality": [{"description": "pretty", "weight": 1}],
                                                  "bad dimension!": [{"description": "q", "weight": 1}]}}}
    part2 = {"b.jpg": {"text": "B", "rubric": {"semantic_alignment": [{"description": "s", "weight": 1}]}},
             "B.jpg": {"question": "C", "rubric": {"semantic_alignment": [{"description": "s", "weight": 1}]}}}
    bench_file = _write(tmp_path / "bench.json", [part1, part2])
    result = import_bench(bench_file, images, tmp_path / "out", prompt_field=None)
    messages = "\n".join(p.message for p in result.problems)
    assert "criterion scientific_accuracy-2 has no description" in messages
    assert "scientific_accuracy-3 has a non-numeric weight" in messages
    assert "unknown dimension 'style_quality'; kept" in messages and "'bad dimension!' is not an identifier" in messages
    assert "task 'B.jpg' has no prompt" in messages
    a = load_rubric_file(tmp_path / "out" / "tasks" / "a.yaml", tmp_path / "out" / "tasks")
    assert [c.id for c in a.criteria] == ["scientific_accuracy-1", "scientific_accuracy-4", "style_quality-1"]  # gaps, never shifted ids
    assert sorted(p.name for p in (tmp_path / "out" / "tasks").iterdir()) == ["B-2.yaml", "a.yaml", "b.yaml"]  # case-insensitive unique
    # --prompt-field picks another name.
    result = import_bench(bench_file, images, tmp_path / "out2", prompt_field="question")
    assert json.loads((tmp_path / "out2" / "manifest.jsonl").read_text().splitlines()[2])["prompt"] == "C"

    with pytest.raises(UserError, match=r"'a.jpg' is in object \[0\] and in object \[1\]"):
        import_bench(_write(tmp_path / "dup.json", [part1, part1]), images, tmp_path / "out3")
    (tmp_path / "dup2.json").write_text('{"a.jpg": {"rubric": {}}, "a.jpg": {"rubric": {}}}')
    with pytest.raises(UserError, match="appears twice"):
        import_bench(tmp_path / "dup2.json", images, tmp_path / "out4")


def test_results_mismatch_is_refused_unless_allowed(tmp_path: Path) -> None:
    bench = {"a.jpg": {"prompt": "A", "rubric": {"scientific_accuracy": [{"description": "x", "weight": 1}, {"description": "y", "weight": 2}]}}}
    results = {"a.jpg": {"rubric_eval": {"scientific_accuracy": [
        {"description": "x", "weight": 1, "evaluation": {"verdict": "Satisfied"}},
        {"description": "something else", "weight": 2, "evaluation": {"verdict": "satisfied"}}]}},
        "stray.jpg": {"rubric_eval": {}}}
    bench_file, results_file = _write(tmp_path / "b.json", bench), _write(tmp_path / "r.json", results)
    with pytest.raises(UserError, match="differ from the benchmark"):
        import_results(results_file, bench_file, "m", tmp_path / "db.duckdb")
    imported = import_results(results_file, bench_file, "m", tmp_path / "db.duckdb", allow_mismatch=True)
    assert imported.scores["reference"]["overall"] == 1.0
    assert any("stray.jpg" in p.message for p in imported.problems)


def test_cli_commands(tmp_path: Path) -> None:
    rng = random.Random(11)
    bench = _bench(rng, 8)
    bench_file = _write(tmp_path / "illubench.json", bench)
    results_file = _write(tmp_path / "results.json", _results(rng, bench))
    images = _images(tmp_path / "ori", list(bench))
    runner = CliRunner()
    res = runner.invoke(import_app, ["illugenbench", str(bench_file), "--images", str(images), "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert "IlluGenBench import: 8 tasks" in res.output and "negative weights" in res.output
    res = runner.invoke(import_app, ["illugenbench-results", str(results_file), "--bench", str(bench_file), "--model", "m", "--db", str(tmp_path / "db.duckdb")])
    assert res.exit_code == 0, res.output
    assert "illugenbench@reference (official)" in res.output and "difference" in res.output
    res = runner.invoke(import_app, ["illugenbench-results", str(results_file), "--bench", str(bench_file), "--model", "m2",
                                     "--db", str(tmp_path / "db.duckdb"), "--policy", "reference"])
    assert res.exit_code == 0, res.output
    con = duckdb.connect(str(tmp_path / "db.duckdb"), read_only=True)
    assert con.execute("SELECT rubric_id FROM runs WHERE model_name = 'm2'").fetchall() == [("illugenbench@reference",)]
    con.close()


def test_full_scale_import_and_validate_time(tmp_path: Path) -> None:
    """296 tasks, 9,015 criteria with signed weights: import + validate (printed, not asserted)."""
    rng = random.Random(3)
    total, n = 9015, 296
    bench = {}
    for i in range(n):
        count = total // n + (1 if i < total % n else 0)
        split = [count // 3 + (1 if j < count % 3 else 0) for j in range(3)]
        bench[f"task_{i:03d}.jpg"] = {"prompt": f"Draw {i}: {rng.choice(NASTY)}", "category": "Anatomical", "rubric": {
            d: [{"description": f"{rng.choice(NASTY)} {i}.{d}.{k}", "weight": rng.choice(WEIGHTS[:-1])} for k in range(s)] for d, s in zip(DIMENSIONS, split, strict=True)}}
    bench_file = _write(tmp_path / "illubench.json", bench)
    images = _images(tmp_path / "ori", list(bench))
    start = time.perf_counter()
    result = import_bench(bench_file, images, tmp_path / "out")
    imported = time.perf_counter() - start
    rubrics = [load_rubric_file(f, root) for f, root in discover([tmp_path / "out" / "tasks"])]
    total_s = time.perf_counter() - start
    assert result.criteria == total and sum(len(r.criteria) for r in rubrics) == total
    print(f"\nfull-scale IlluGenBench: import {imported:.2f} s, import + validate {total_s:.2f} s (296 tasks, 9,015 criteria)")


def test_task_yaml_is_safe_yaml(tmp_path: Path) -> None:
    bench = {'we"ird: key #1.jpg': {"prompt": "p", "rubric": {"semantic_alignment": [{"description": t, "weight": 1} for t in NASTY]}}}
    result = import_bench(_write(tmp_path / "b.json", bench), _images(tmp_path / "ori", []), tmp_path / "out")
    file = result.written[0]
    data = yaml.safe_load(file.read_text(encoding="utf-8"))
    assert data["task"] == 'we"ird: key #1.jpg'
    assert [render(c["text"], {}) for c in data["criteria"]] == [t.strip() for t in NASTY]
    assert load_rubric_file(file, file.parent).task == 'we"ird: key #1.jpg'


def test_cli_medgen_is_wired(tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (4, 4)).save(images / "a.png")
    records = _write(tmp_path / "records.json", [{"id": "q1", "category": "VQA", "sub-category": "s", "paper_task": "t", "modality": "CT",
                                                  "instruction": "What is shown?", "input_image": "a.png", "ground_truth_image": "", "answer": "a lung"}])
    res = CliRunner().invoke(import_app, ["medgen", str(records), "--images", str(images), "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "out" / "manifest.jsonl").is_file()
