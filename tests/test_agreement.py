"""`rubric-judge agree` and `labels import` (store/agreement.py, store/labels.py).

Runs are written through `write_imported_run` into a real DuckDB file, labels through the real
importer; the statistics are checked against scikit-learn and the `krippendorff` package (test
dependencies only) on randomised label sets with missing values and unscored verdicts.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import duckdb
import krippendorff
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import cohen_kappa_score, f1_score

from rubric_judge import agree
from rubric_judge.errors import UserError
from rubric_judge.rubrics.loader import load_rubric_set
from rubric_judge.rubrics.schema import Rubric
from rubric_judge.store.db import ResultStore, RunInfo, write_imported_run
from rubric_judge.store.labels import import_labels

CLI = [sys.executable, "-c", "from rubric_judge.cli.app import main; main()"]
DIMENSIONS = ("scientific_accuracy", "structural_correctness", "semantic_alignment")


@pytest.fixture(scope="module")
def binary() -> Rubric:
    return load_rubric_set("builtin:illugenbench/base.yaml")[0]


@pytest.fixture(scope="module")
def scale() -> Rubric:
    return load_rubric_set("builtin:medgen/holistic-without-gt.yaml")[0]


def write_run(db: Path, rubric: Rubric, judge: str, verdicts: dict[tuple[str, str], object], replicates: dict[tuple[str, str], list] | None = None,
              broken: dict[tuple[str, str], str] | None = None) -> str:
    """A run: (sample, criterion) -> met (binary) or score (scale) for replicate 0, more
    replicates' values, and (sample, criterion) -> status for error/unscored verdicts (which
    carry a stale `met = false`, so reading them as "not met" would show)."""
    is_scale = rubric.verdict.kind == "scale"
    dimension = {c.id: c.dimension for c in rubric.criteria} if is_scale else {}
    rows = []
    for (sample, criterion), value in verdicts.items():
        for replicate, v in enumerate([value, *(replicates or {}).get((sample, criterion), [])]):
            dim = dimension.get(criterion) or criterion.rsplit("-", 1)[0]
            rows.append([sample, criterion, replicate, dim, 1.0, None if is_scale else bool(v), v if is_scale else None, None, None, "ok", None])
    for (sample, criterion), status in (broken or {}).items():
        rows.append([sample, criterion, 0, dimension.get(criterion) or criterion.rsplit("-", 1)[0], 1.0, False, None, None, None, status, None])
    samples = sorted({s for s, _ in verdicts} | {s for s, _ in (broken or {})})
    store = ResultStore(db)
    try:
        return write_imported_run(store, RunInfo(rubric, "model", judge, None, {}), [[s, f"cat-{int(s[1:]) % 2}", None, [], "{}"] for s in samples], [], rows)
    finally:
        store.close()


def write_labels(path: Path, labels: list[dict]) -> Path:
    path.write_text("".join(json.dumps(label) + "\n" for label in labels))
    return path


def row(frame: pd.DataFrame, **where) -> pd.Series:
    selected = frame
    for column, value in where.items():
        selected = selected[selected[column].isna()] if value is None else selected[selected[column] == value]
    assert len(selected) == 1, (where, selected)
    return selected.iloc[0]


def healthbench_balanced_f1(grader: list[bool], reference: list[bool]) -> float:
    """HealthBench's meta-eval formula, independently: F1 of the met class and of the not-met
    class over the (grader, reference) pairs, averaged."""
    return (f1_score(reference, grader, pos_label=True) + f1_score(reference, grader, pos_label=False)) / 2


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120)


def test_binary_statistics_equal_sklearn_and_krippendorff(tmp_path: Path, binary: Rubric):
    rng = np.random.default_rng(7)
    db = tmp_path / "r.duckdb"
    items = [(f"s{s:02d}", f"{DIMENSIONS[i % 3]}-{i}") for s in range(40) for i in range(6)]
    truth = {item: bool(rng.random() < 0.35) for item in items}
    judged = {item: v ^ bool(rng.random() < 0.2) for item, v in truth.items()}
    broken = {item: str(rng.choice(["error", "unscored"])) for item in items if rng.random() < 0.1}
    run = write_run(db, binary, "judge", {i: v for i, v in judged.items() if i not in broken}, broken=broken)
    raters = ("r1", "r2", "r3")
    # each rater labels a random ~70 % of the items, agreeing with the truth ~85 % of the time
    labels = {r: {i: v ^ bool(rng.random() < 0.15) for i, v in truth.items() if rng.random() < 0.7} for r in raters}
    write_labels(tmp_path / "l.jsonl", [{"sample_id": s, "criterion_id": c, "rater_id": r, "label": v} for r in raters for (s, c), v in labels[r].items()])
    import_labels(db, tmp_path / "l.jsonl")

    frame = agree(db, resamples=200)
    assert set(frame["run_id"]) == {run}
    ok = {i: v for i, v in judged.items() if i not in broken}
    pooled_judge, pooled_reference = [], []
    for r in raters:
        both = [i for i in items if i in ok and i in labels[r]]
        grader, reference = [ok[i] for i in both], [labels[r][i] for i in both]
        pooled_judge += grader
        pooled_reference += reference
        kappa = row(frame, compared=f"judge vs rater {r}", statistic="cohen_kappa")
        assert kappa["value"] == pytest.approx(cohen_kappa_score(grader, reference), abs=1e-12) and kappa["n"] == len(both)
        f1 = row(frame, compared=f"judge vs rater {r}", statistic="balanced_f1")
        assert f1["value"] == pytest.approx(healthbench_balanced_f1(grader, reference), abs=1e-12)
        assert row(frame, compared=f"judge vs rater {r}", statistic="base_rate")["value"] == pytest.approx(np.mean(reference), abs=1e-12)
        assert f1["ci_low"] <= f1["value"] <= f1["ci_high"]
        # the experts' baseline: this rater graded against every other rater, pairs pooled
        grader, reference = zip(*[(labels[r][i], labels[o][i]) for o in raters if o != r for i in items if i in labels[r] and i in labels[o]], strict=True)
        assert row(frame, compared=f"rater {r} vs other raters (leave-one-out)", statistic="balanced_f1")["value"] == pytest.approx(
            healthbench_balanced_f1(list(grader), list(reference)), abs=1e-12)
    assert row(frame, compared="judge vs raters (pooled pairs)", statistic="balanced_f1")["value"] == pytest.approx(
        healthbench_balanced_f1(pooled_judge, pooled_reference), abs=1e-12)
    # Krippendorff's alpha: units = labelled items; missing labels and unscored verdicts are NaN
    labelled = [i for i in items if any(i in labels[r] for r in raters)]
    matrix = [[float(labels[r][i]) if i in labels[r] else np.nan for i in labelled] for r in raters]
    judge_row = [float(ok[i]) if i in ok else np.nan for i in labelled]
    for with_judge, data in ((False, matrix), (True, [*matrix, judge_row])):
        got = row(frame, statistic="krippendorff_alpha", with_judge=with_judge, level="nominal")
        assert got["value"] == pytest.approx(krippendorff.alpha(np.array(data), level_of_measurement="nominal"), abs=1e-9)


def test_scale_statistics_equal_sklearn_and_krippendorff(tmp_path: Path, scale: Rubric):
    rng = np.random.default_rng(11)
    db = tmp_path / "r.duckdb"
    criteria = {c.id: c.dimension for c in scale.criteria}
    truth = {(f"s{s:02d}", c): int(rng.integers(1, 11)) for s in range(30) for c in criteria}
    judged = {i: int(np.clip(v + rng.integers(-2, 3), 1, 10)) for i, v in truth.items()}
    broken = {i: "unscored" for i in list(judged)[::9]}
    write_run(db, scale, "judge", {i: v for i, v in judged.items() if i not in broken}, broken=broken)
    raters = ("a", "b")
    labels = {r: {(s, criteria[c]): int(np.clip(v + rng.integers(-1, 2), 1, 10)) for (s, c), v in truth.items() if rng.random() < 0.8} for r in raters}
    write_labels(tmp_path / "l.jsonl", [{"sample_id": s, "dimension": d, "rater_id": r, "label": v} for r in raters for (s, d), v in labels[r].items()])
    import_labels(db, tmp_path / "l.jsonl", rubric_id=scale.rubric)

    frame = agree(db, resamples=100)
    ok = {(s, criteria[c]): float(v) for (s, c), v in judged.items() if (s, c) not in broken}
    for r in raters:
        both = [i for i in sorted(labels[r]) if i in ok]
        got = row(frame, compared=f"judge vs rater {r}", statistic="cohen_kappa")
        assert got["value"] == pytest.approx(cohen_kappa_score([ok[i] for i in both], [float(labels[r][i]) for i in both]), abs=1e-12)
    assert not (frame["statistic"].isin(["balanced_f1", "base_rate"])).any()  # met/not met statistics only for binary rubrics
    labelled = sorted({i for r in raters for i in labels[r]})
    matrix = [[labels[r].get(i, np.nan) for i in labelled] for r in raters]
    with_judge = [*matrix, [ok.get(i, np.nan) for i in labelled]]
    for level in ("ordinal", "interval"):
        for judge_in, data in ((False, matrix), (True, with_judge)):
            got = row(frame, statistic="krippendorff_alpha", with_judge=judge_in, level=level)
            assert got["value"] == pytest.approx(krippendorff.alpha(np.array(data, dtype=float), level_of_measurement=level), abs=1e-9)


def planted(tmp_path: Path, binary: Rubric, rate: float = 0.1):
    """A synthetic expert's labels and a judge that flips exactly `rate` of them."""
    rng = np.random.default_rng(3)
    items = [(f"s{s:03d}", f"{DIMENSIONS[i % 3]}-{i}") for s in range(300) for i in range(10)]
    expert = {i: bool(rng.random() < 0.4) for i in items}
    flipped = set(rng.choice(len(items), size=int(rate * len(items)), replace=False).tolist())
    judge = {item: v ^ (k in flipped) for k, (item, v) in enumerate(expert.items())}
    db = tmp_path / "planted.duckdb"
    run = write_run(db, binary, "judge", judge, replicates={i: [v] for i, v in judge.items()})
    twin = write_run(db, binary, "judge-twin", judge)
    write_labels(tmp_path / "expert.jsonl", [{"sample_id": s, "criterion_id": c, "rater_id": "expert", "label": v} for (s, c), v in expert.items()])
    import_labels(db, tmp_path / "expert.jsonl")
    return db, run, twin, expert


def test_planted_disagreement_is_recovered_within_the_intervals(tmp_path: Path, binary: Rubric):
    db, run, twin, expert = planted(tmp_path, binary)
    frame = agree(db, [run], resamples=1000, seed=1)
    # population values for base rate p = 0.4 and 10 % of labels flipped at random:
    # judge says met with q = 0.9 p + 0.1 (1 - p); p_e = p q + (1 - p)(1 - q); kappa = (0.9 - p_e) / (1 - p_e)
    p, flip = 0.4, 0.1
    q = (1 - flip) * p + flip * (1 - p)
    chance = p * q + (1 - p) * (1 - q)
    expected_kappa = (1 - flip - chance) / (1 - chance)
    f1_met = 2 * (1 - flip) * p / (2 * (1 - flip) * p + flip)
    f1_not = 2 * (1 - flip) * (1 - p) / (2 * (1 - flip) * (1 - p) + flip)
    kappa = row(frame, compared="judge vs rater expert", statistic="cohen_kappa")
    f1 = row(frame, compared="judge vs rater expert", statistic="balanced_f1")
    assert kappa["ci_low"] < expected_kappa < kappa["ci_high"] and kappa["ci_high"] - kappa["ci_low"] < 0.1
    assert f1["ci_low"] < (f1_met + f1_not) / 2 < f1["ci_high"]
    assert kappa["n"] == len(expert) and kappa["samples"] == 300
    # replicates identical: the judge agrees with itself
    assert row(frame, compared=f"replicates of run {run}", statistic="flip_rate")["value"] == 0
    assert row(frame, compared=f"replicates of run {run}", statistic="krippendorff_alpha")["value"] == 1

    both = agree(db, [run, twin], resamples=200)
    same = both[both["compared"] == f"run {run} vs run {twin}"].set_index("statistic")["value"]
    assert same["cohen_kappa"] == 1 and same["flip_rate"] == 0 and same["balanced_f1"] == 1 and same["krippendorff_alpha"] == 1


def test_bootstrap_draws_are_the_stores_and_seeded(tmp_path: Path, binary: Rubric):
    db, run, _, _ = planted(tmp_path, binary)
    one = agree(db, [run], resamples=300, seed=5, store=False)
    assert one.equals(agree(db, [run], resamples=300, seed=5, store=False))
    assert not one["ci_low"].equals(agree(db, [run], resamples=300, seed=6, store=False)["ci_low"])
    # the base rate's interval by hand: the SQL macro's draws over samples sorted by id, the
    # share of "met" expert labels in each resample, numpy's percentiles
    con = duckdb.connect(str(db), read_only=True)
    per_sample = con.execute("""SELECT sample_id, sum(label), count(*) FROM labels GROUP BY sample_id ORDER BY sample_id""").fetchall()
    n = len(per_sample)
    draws = np.array(con.execute("SELECT _bootstrap_pick(5, r.b, j.j, ?) FROM range(300) r(b), range(?) j(j) ORDER BY r.b, j.j",
                                 [n, n]).fetchall()).reshape(300, n)
    con.close()
    counts = np.array([[met, total] for _, met, total in per_sample], dtype=float)
    resampled = counts[draws].sum(axis=1)
    low, high = np.quantile(resampled[:, 0] / resampled[:, 1], [0.025, 0.975])
    base = row(one, compared="judge vs rater expert", statistic="base_rate")
    assert base["samples"] == n == 300
    assert (base["ci_low"], base["ci_high"]) == (pytest.approx(low, abs=1e-12), pytest.approx(high, abs=1e-12))


def test_probe_runs_get_flip_rates_overall_and_per_dimension(tmp_path: Path, binary: Rubric):
    db = tmp_path / "r.duckdb"
    items = [(f"s{s}", f"{DIMENSIONS[i % 3]}-{i}") for s in range(20) for i in range(6)]
    original = dict.fromkeys(items, True)
    probe_values = {i: not (i[1].startswith("scientific") and int(i[0][1:]) < 10) for i in items}  # flips half of one dimension
    run = write_run(db, binary, "judge", original)
    probe = write_run(db, binary, "judge-probe", probe_values)
    con = duckdb.connect(str(db))
    con.execute("UPDATE runs SET role = 'probe', parent_run_id = ?, probe = 'swap-images' WHERE run_id = ?", [run, probe])
    con.close()
    frame = agree(db, resamples=100)  # the probe is no judged run of its own: one run, no argument needed
    compared = f"probe swap-images ({probe}) vs run {run}"
    flips = frame[(frame["compared"] == compared) & (frame["statistic"] == "flip_rate")].set_index(["by", "group"])["value"]
    assert flips[("overall", "overall")] == pytest.approx(20 / 120)
    assert flips[("dimension", "scientific_accuracy")] == pytest.approx(0.5)
    assert flips[("dimension", "semantic_alignment")] == 0


def test_agree_groups_and_stores_rows_for_sql(tmp_path: Path, binary: Rubric):
    db, run, _, _ = planted(tmp_path, binary)
    frame = agree(db, [run], by="dimension", resamples=100)
    assert set(frame["group"]) == set(DIMENSIONS) and set(frame["by"]) == {"dimension"}
    cli_out = cli("query", "SELECT count(*) AS rows FROM agreement_results WHERE \"by\" = 'dimension'", "--db", str(db), "--format", "json")
    assert json.loads(cli_out.stdout) == [{"rows": len(frame)}]
    agree(db, [run], by="dimension", resamples=100)  # recomputing replaces, never duplicates
    assert json.loads(cli("query", "SELECT count(*) AS rows FROM agreement_results", "--db", str(db), "--format", "json").stdout) == [{"rows": len(frame)}]
    with pytest.raises(UserError, match="judged runs"):
        agree(db, resamples=10)  # two judged runs: name them
    with pytest.raises(UserError, match="by"):
        agree(db, [run], by="modality")


def test_cli_agree_json_and_csv(tmp_path: Path, binary: Rubric):
    db, run, _twin, _ = planted(tmp_path, binary)
    result = cli("agree", run, "--labels", "--db", str(db), "--format", "json", "--resamples", "200", "--seed", "3")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert {"statistic", "value", "ci_low", "ci_high", "n", "by", "group", "rater", "with_judge", "compared", "level"} <= set(rows[0])
    assert {r["statistic"] for r in rows} == {"balanced_f1", "cohen_kappa", "base_rate", "krippendorff_alpha"}
    assert all(r["compared"] in ("judge vs rater expert", "judge vs raters (pooled pairs)", "raters + judge") for r in rows)
    result = cli("agree", run, "--db", str(db), "--format", "csv", "--resamples", "200", "--seed", "3", "--no-store")
    assert result.returncode == 0, result.stderr
    table = list(csv.DictReader(io.StringIO(result.stdout)))
    kappa = next(r for r in table if r["compared"] == "judge vs rater expert" and r["statistic"] == "cohen_kappa")
    assert float(kappa["value"]) == pytest.approx(next(r["value"] for r in rows if r["compared"] == "judge vs rater expert" and r["statistic"] == "cohen_kappa"))
    assert any(r["statistic"] == "flip_rate" for r in table)  # replicates: without --labels
    shown = cli("agree", run, "--db", str(db), "--resamples", "50")
    assert shown.returncode == 0 and "judge vs rater expert" in shown.stdout
    bad = cli("agree", "nope", "--db", str(db))
    assert bad.returncode == 2 and "'nope' names no run" in bad.stderr


# ---- labels import ------------------------------------------------------------------------

def count_labels(db: Path) -> int:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute("SELECT count(*) FROM labels").fetchone()[0]
    finally:
        con.close()


def test_labels_import_and_reimport_replaces(tmp_path: Path, binary: Rubric):
    db = tmp_path / "r.duckdb"
    write_run(db, binary, "judge", {("s1", "scientific_accuracy-0"): True, ("s1", "structural_correctness-1"): False})
    path = write_labels(tmp_path / "l.jsonl", [
        {"sample_id": "s1", "criterion_id": "scientific_accuracy-0", "rater_id": "r1", "label": True, "note": "clear"},
        {"sample_id": "s1", "criterion_id": "structural_correctness-1", "rater_id": "r1", "label": False},
        {"sample_id": "s1", "criterion_id": "scientific_accuracy-0", "rater_id": "r2", "label": False},
    ])
    result = cli("labels", "import", str(path), "--db", str(db))
    assert result.returncode == 0, result.stderr
    assert "imported 3 labels from 2 raters on 1 samples" in result.stdout
    write_labels(path, [{"sample_id": "s1", "criterion_id": "scientific_accuracy-0", "rater_id": "r1", "label": False}])
    again = import_labels(db, path)
    assert (again.labels, again.replaced) == (1, 3) and count_labels(db) == 1
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT source, line, label FROM labels").fetchall() == [(str(path.resolve()), 1, 0.0)]
    con.close()


def test_bad_label_rows_are_all_reported_and_nothing_is_written(tmp_path: Path, binary: Rubric, scale: Rubric):
    db = tmp_path / "r.duckdb"
    write_run(db, binary, "judge", {("s1", "scientific_accuracy-0"): True})
    write_run(db, scale, "judge", {("s1", "overall"): 7})
    good = write_labels(tmp_path / "good.jsonl", [{"sample_id": "s1", "criterion_id": "scientific_accuracy-0", "rater_id": "r1", "label": True}])
    import_labels(db, good)
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join([
        json.dumps({"sample_id": "s1", "criterion_id": "scientific_accuracy-0", "rater_id": "r1", "label": True}),   # 1: fine
        '{"sample_id": "s1", "criterion_id": ',                                                                       # 2: bad JSON
        json.dumps({"sample_id": "s1", "criterion_id": "scientific_accuracy-0", "label": True}),                      # 3: no rater
        json.dumps({"sample_id": "s1", "criterion_id": "scientific_accuracy-0", "rater_id": "r2", "label": "yes"}),   # 4: not boolean
        json.dumps({"sample_id": "s1", "dimension": "overall_quality", "rater_id": "r1", "label": 11}),               # 5: off the scale
        json.dumps({"sample_id": "s1", "criterion_id": "scientific_accuracy-0", "rater_id": "r1", "label": False}),   # 6: duplicate of 1
    ]) + "\n")
    result = cli("labels", "import", str(bad), "--db", str(db))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    err = " ".join(result.stderr.split())
    for expected in (f"{bad}:2:", "not valid JSON", f"{bad}:3:1: rater_id: missing", f"{bad}:4:1: label: must be true or false",
                     f"{bad}:5:1: label: 11 is outside the scale 1..10", f"{bad}:6:1: rater_id:", "on line 1", "5 problems"):
        assert expected in err, expected
    assert count_labels(db) == 1  # the good file's label only: nothing of the bad file was written
    scale_only = write_labels(tmp_path / "scale.jsonl", [{"sample_id": "s1", "dimension": "overall_quality", "rater_id": "r1", "label": 7.5}])
    with pytest.raises(UserError, match="integer on the rubric's scale"):
        import_labels(db, scale_only, rubric_id=scale.rubric)
    with pytest.raises(UserError, match="judged met/not met"):
        import_labels(db, write_labels(tmp_path / "d.jsonl", [{"sample_id": "s1", "dimension": "scientific_accuracy", "rater_id": "r", "label": 3}]),
                      rubric_id=binary.rubric)
    assert not (tmp_path / "new.duckdb").exists()
    with pytest.raises(UserError):
        import_labels(tmp_path / "new.duckdb", bad)
    assert not (tmp_path / "new.duckdb").exists()  # a bad file creates no database either
