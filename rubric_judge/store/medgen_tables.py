"""MedGEN-Bench's Table 3 from a results database: accuracy rates per format, modality and task.

The rates are the `task_scores` view's (judge pass rate) and `metric_values`' (each metric's pass
condition), grouped the way the paper's Table 3 groups them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rubric_judge.store.db import connect

CATEGORIES = ("VQA", "ImageEdit", "MMGeneration")  # MedGEN-Bench's task formats, in the paper's order

_GROUPS_SQL = """
WITH grouped AS (
    SELECT run_id, sample_id, 'overall' AS by, 'all' AS grp FROM samples
    UNION ALL SELECT run_id, sample_id, 'category', category FROM samples
    UNION ALL SELECT run_id, sample_id, 'modality', modality FROM samples
    UNION ALL SELECT run_id, sample_id, 'paper_task', json_extract_string(fields, '$.paper_task') FROM samples
)
"""

_JUDGE_SQL = _GROUPS_SQL + """
SELECT g.run_id, g.by, g.grp,
       count(DISTINCT g.sample_id) AS samples,
       avg(t.passed::INTEGER) FILTER (WHERE NOT t.excluded AND t.passed IS NOT NULL) AS judge,
       count(*) FILTER (WHERE NOT t.excluded AND t.passed IS NOT NULL) AS judge_samples
FROM grouped g LEFT JOIN task_scores t USING (run_id, sample_id)
GROUP BY g.run_id, g.by, g.grp
"""

# As the metric_summary view: `ok` values count by `passed`, a missing output counts as failed
# under the `fail` policy; error/unavailable values and values without a pass condition are left out.
_METRIC_SQL = _GROUPS_SQL + """
SELECT g.run_id, g.by, g.grp, m.metric,
       avg(CASE WHEN m.status = 'ok' THEN m.passed::INTEGER
                WHEN m.status = 'missing_output' AND r.missing_output = 'fail' THEN 0 END) AS rate,
       count(*) FILTER (WHERE (m.status = 'ok' AND m.passed IS NOT NULL)
                           OR (m.status = 'missing_output' AND r.missing_output = 'fail')) AS rated,
       list(DISTINCT m.status) AS statuses
FROM grouped g JOIN metric_values m USING (run_id, sample_id) JOIN runs r USING (run_id)
GROUP BY g.run_id, g.by, g.grp, m.metric
"""

_ORDER = {"overall": 0, "category": 1, "modality": 2, "paper_task": 3}


def table3(db_path: Path, run_id: str | None = None, model_name: str | None = None) -> list[dict[str, Any]]:
    """The paper's Table 3 from a results database: one row per (run, breakdown, group).

    Each row: `run_id`, `model_name`, `rubric_id`, `judge_model`, `status` (the run's: anything but finished
    means part of the work is missing), `by` (overall | category | modality |
    paper_task), `group` (e.g. "ImageEdit", "CT", a task name; "all" for overall), `samples`,
    `judge` (share of samples whose judge score passes the rubric threshold -- overall >= 8 for
    the MedGEN rubrics -- or None), `judge_samples`, and for every metric with a pass condition in
    the run, `<metric>` (accuracy rate, or None where no sample of the group was rated, e.g. SSIM
    on VQA or an unavailable metric) and `<metric>_samples`. Rates are fractions in [0, 1]
    (Table 3 prints them as percentages).
    """
    con = connect(Path(db_path), read_only=True)
    try:
        # A superseded run (the rubric edited since) is left out unless asked for by id, as on the leaderboard.
        runs = {r[0]: (r[1], r[2], r[3], r[4]) for r in con.execute(
            "SELECT run_id, model_name, rubric_id, status, judge_model FROM runs WHERE superseded_by IS NULL OR run_id = ?", [run_id]).fetchall()}
        judge = con.execute(_JUDGE_SQL).fetchall()
        metrics = con.execute(_METRIC_SQL).fetchall()
    finally:
        con.close()
    keep = {rid for rid, (model, _, _, _) in runs.items() if (run_id is None or rid == run_id) and (model_name is None or model == model_name)}
    # Every metric is a column, blank where nothing was rated, but companion values (BERTScore
    # precision and recall): they have no pass condition, so their only "rate" would be a missing
    # output counted as failed under `missing_output: fail` -- a 0 from nothing.
    columns: dict[str, set[str]] = {}
    for rid, _by, _grp, metric, _rate, _rated, _statuses in metrics:
        if rid in keep and not _companion(metric):
            columns.setdefault(rid, set()).add(metric)
    rows: dict[tuple[str, str, str | None], dict[str, Any]] = {}
    for rid, by, grp, samples, rate, judged in judge:
        if rid not in keep:
            continue
        model, rubric, status, judge_model = runs[rid]
        row = {"run_id": rid, "model_name": model, "rubric_id": rubric, "judge_model": judge_model, "status": status, "by": by, "group": grp,
               "samples": samples, "judge": rate, "judge_samples": judged}
        for metric in sorted(columns.get(rid, ())):
            row[metric] = None
            row[f"{metric}_samples"] = 0
        rows[(rid, by, grp)] = row
    for rid, by, grp, metric, rate, rated, _statuses in metrics:
        row = rows.get((rid, by, grp))
        if row is not None and metric in row:
            row[metric] = rate if rated else None
            row[f"{metric}_samples"] = rated
    return sorted(rows.values(), key=lambda r: (r["model_name"], r["rubric_id"], r["run_id"], _ORDER.get(r["by"], 9), _group_key(r)))


# A reference-compatible rubric (the official evaluation's counting rules) -> the rubric-judge
# default it mirrors; `rates` prints the two side by side when both ran for a model and judge.
REFERENCE_RUBRICS = {"medgen@reference": "medgen/holistic-with-gt"}
TABLE3_FIXED = frozenset({"run_id", "model_name", "rubric_id", "judge_model", "status", "by", "group", "samples", "judge", "judge_samples"})


def reference_vs_default(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Reference-compatible rates beside the default ones, from `table3` rows.

    For every row of a reference rubric (REFERENCE_RUBRICS) whose default rubric also ran for the
    same model and judge, one entry per rate (`judge` and each metric) that either run has:
    `model_name`, `judge_model`, `reference_rubric`, `default_rubric`, `by`, `group`, `rate`,
    `reference` and `default` (fractions, or None), `reference_samples` and `default_samples`
    (how many samples each rate counts), and `difference` (default - reference, or None).
    """
    index = {(r["model_name"], r["judge_model"], r["rubric_id"], r["by"], r["group"]): r for r in rows}
    out: list[dict[str, Any]] = []
    for ref in rows:
        default_id = REFERENCE_RUBRICS.get(ref["rubric_id"])
        default = index.get((ref["model_name"], ref["judge_model"], default_id, ref["by"], ref["group"])) if default_id else None
        if default is None:
            continue
        names = ["judge", *sorted({k for r in (ref, default) for k in r if k not in TABLE3_FIXED and not k.endswith("_samples")})]
        for name in names:
            a, b = ref.get(name), default.get(name)
            if a is None and b is None:
                continue
            count = "judge_samples" if name == "judge" else f"{name}_samples"
            out.append({"model_name": ref["model_name"], "judge_model": ref["judge_model"], "reference_rubric": ref["rubric_id"],
                        "default_rubric": default_id, "by": ref["by"], "group": ref["group"], "rate": name,
                        "reference": a, "default": b, "reference_samples": ref.get(count, 0), "default_samples": default.get(count, 0),
                        "difference": b - a if a is not None and b is not None else None})
    return out


def _companion(metric: str) -> bool:
    """Companion values stored beside a metric (BERTScore precision and recall) carry no pass
    condition; they are never Table 3 columns."""
    return metric.endswith(("_precision", "_recall"))


def _group_key(row: Mapping[str, Any]) -> tuple:
    group = row["group"]
    if row["by"] == "category" and group in CATEGORIES:
        return (0, CATEGORIES.index(group), "")
    return (1 if group is not None else 2, 0, group or "")
