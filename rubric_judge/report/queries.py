"""Reading the results database for the report: the SQL, and assembling report.model's dataclasses.

The numbers come from the store's SQL (views.sql for scores, stats.sql for bootstrap intervals)
and are never recomputed here, so every figure on the page can be re-derived with
`rubric-judge query`. This module only groups rows, orders them for reading (failed criteria
first) and resolves image paths; which sample fields are images or texts is report.fields'
decision, and it does no HTML.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rubric_judge.errors import UserError
from rubric_judge.report.fields import pretty, sample_fields
from rubric_judge.report.model import (
    OUTCOME_ORDER,
    CallStats,
    Card,
    Comparison,
    Disagreement,
    ExpertDisagreement,
    Media,
    MetricSummary,
    MetricValue,
    PairedRow,
    ReportData,
    Run,
    ScoreCell,
    Section,
    TaskDifference,
    TextField,
    Trust,
    TrustRow,
    TrustStat,
    Verdict,
)
from rubric_judge.store.db import connect, records

DISAGREEMENTS_SHOWN = 500
TRUST_DISAGREEMENTS_SHOWN = 20


def load_report_data(db: Path, rubric: str | None = None, compare: Sequence[str] = (), resamples: int = 1000, seed: int = 0,
                     level: float = 0.95) -> ReportData:
    """Read the database at `db` (read-only) for the report; `rubric` keeps one rubric id,
    `compare` names the two runs (model names or run ids) to compare, by default the two best."""
    db = Path(db)
    if compare and len(compare) != 2:
        raise UserError(f"--compare takes exactly two runs (model names or run ids), got {len(compare)}")
    con = connect(db, read_only=True, external_access=False)
    try:
        return _Reader(con, db, resamples, seed, level).read(rubric, tuple(compare))
    finally:
        con.close()


class _Reader:
    def __init__(self, con, db: Path, resamples: int, seed: int, level: float):
        self.con, self.db, self.resamples, self.seed, self.level = con, db, resamples, seed, level
        self.objects = {name for (name,) in con.execute(
            "SELECT table_name FROM duckdb_tables() UNION ALL SELECT view_name FROM duckdb_views() "
            "UNION ALL SELECT function_name FROM duckdb_functions() WHERE function_type = 'table_macro'").fetchall()}
        self.notes: list[str] = []
        self._resolved: dict[tuple[str, tuple[Path, ...]], Path | None] = {}

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        return records(self.con.execute(sql, list(params)))

    def read(self, rubric: str | None, compare: tuple[str, ...]) -> ReportData:
        if "runs" not in self.objects:
            raise UserError(f"{self.db} is not a rubric-judge database (it has no `runs` table)")
        runs = self.rows("SELECT * FROM runs ORDER BY rubric_id, rubric_version, started_at")
        if not runs:
            raise UserError(f"{self.db} holds no runs yet; score something with `rubric-judge score` first")
        if rubric is not None:
            known = sorted({r["rubric_id"] for r in runs})
            runs = [r for r in runs if r["rubric_id"] == rubric]
            if not runs:
                raise UserError(f"no runs of rubric {rubric!r} in {self.db}; it holds: {', '.join(known)}")
        groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        for run in runs:
            groups[(run["rubric_id"], run["rubric_version"])].append(run)
        cells = self._cells({r["run_id"] for r in runs})
        totals = self._samples_total()
        for run_id in {r["run_id"] for r in runs}:
            cells.setdefault((run_id, "overall"), ScoreCell(None, samples_total=totals.get(run_id, 0)))
        calls = self._call_stats()
        metrics = self._metric_summaries()
        sections = tuple(
            self._section(f"s{i}", rows, cells, calls, metrics, compare) for i, rows in enumerate(groups.values())
        )
        if compare and not any(s.comparison and _named(compare, s.comparison.a, s.comparison.b) for s in sections):
            raise UserError(f"--compare {compare[0]} {compare[1]}: no rubric in {self.db} has exactly one run of each "
                            "(give model names, or run ids where a model has several runs)")
        return ReportData(self.db, datetime.now(UTC).replace(tzinfo=None), sections, self.resamples, self.seed, self.level,
                          tuple(self.notes))

    # --- per-run figures -----------------------------------------------------------------

    def _cells(self, run_ids: set[str]) -> dict[tuple[str, str], ScoreCell]:
        board = {(r["run_id"], r["dimension"]): r for r in self.rows("SELECT * FROM leaderboard")}
        ci = {(r["run_id"], r["dimension"]): r for r in self.rows(
            "SELECT * FROM leaderboard_bootstrap(resamples := ?, seed := ?, level := ?)", [self.resamples, self.seed, self.level])}
        cells = {}
        for key, row in board.items():
            if key[0] not in run_ids:
                continue
            interval = ci.get(key, {})
            cells[key] = ScoreCell(
                score=_num(row["score"]), ci_low=_num(interval.get("ci_low")), ci_high=_num(interval.get("ci_high")),
                samples=row["samples_scored"], excluded=row["samples_excluded"], missing_outputs=row["missing_outputs"],
                unscored=int(row["unscored_verdicts"] or 0), accuracy=_num(row["accuracy_rate"]),
                accuracy_low=_num(interval.get("accuracy_ci_low")), accuracy_high=_num(interval.get("accuracy_ci_high")),
                samples_total=int(row.get("samples_total") or 0),
            )
        return cells

    def _samples_total(self) -> dict[str, int]:
        """Samples in each run's manifest, as the leaderboard view counts them, for the runs the
        view leaves out (no sample judged yet: a run interrupted at once)."""
        return dict(self.con.execute("SELECT run_id, count(*) FROM samples GROUP BY run_id").fetchall())

    def _call_stats(self) -> dict[str, CallStats]:
        rows = self.rows("""
            SELECT run_id, count(*) AS calls,
                   count(*) FILTER (WHERE cache_hit) AS cache_hits,
                   count(*) FILTER (WHERE status <> 'ok') AS failed,
                   coalesce(sum(greatest(attempts - 1, 0)), 0) AS retries,
                   coalesce(sum(prompt_tokens) FILTER (WHERE NOT cache_hit), 0) AS prompt_tokens,
                   coalesce(sum(completion_tokens) FILTER (WHERE NOT cache_hit), 0) AS completion_tokens,
                   -- Nothing paid (every answer from the cache) is $0, not "unknown".
                   CASE WHEN count(*) FILTER (WHERE NOT cache_hit AND attempts > 0) = 0 THEN 0.0
                        ELSE sum(cost_usd) FILTER (WHERE NOT cache_hit) END AS cost_usd,
                   CASE WHEN count(*) FILTER (WHERE cache_hit) = 0 THEN NULL
                        ELSE coalesce(sum(original_cost_usd) FILTER (WHERE cache_hit), 0.0) END AS saved_usd,
                   count(*) FILTER (WHERE NOT cache_hit AND attempts > 0 AND cost_usd IS NULL) AS unpriced_calls,
                   quantile_cont(latency_ms, 0.5) FILTER (WHERE NOT cache_hit AND attempts > 0) AS latency_p50_ms,
                   quantile_cont(latency_ms, 0.95) FILTER (WHERE NOT cache_hit AND attempts > 0) AS latency_p95_ms
            FROM judge_calls GROUP BY run_id""")
        return {r.pop("run_id"): CallStats(**{k: (_num(v) if isinstance(v, float) else v) for k, v in r.items()}) for r in rows}

    def _metric_summaries(self) -> dict[str, tuple[MetricSummary, ...]]:
        out: dict[str, list[MetricSummary]] = defaultdict(list)
        for r in self.rows("SELECT * FROM metric_summary ORDER BY run_id, metric"):
            out[r["run_id"]].append(MetricSummary(r["metric"], _num(r["mean_value"]), _num(r["accuracy_rate"]), r["samples_ok"],
                                                  r["samples_rated"], r["missing_outputs"], r["not_computed"], r["example_problem"]))
        return {k: tuple(v) for k, v in out.items()}

    # --- one rubric ----------------------------------------------------------------------

    def _section(self, key: str, rows: list[dict[str, Any]], cells, calls, metrics, compare: tuple[str, ...]) -> Section:
        ids = [r["run_id"] for r in rows]
        # Best first: the order of the leaderboard, the charts and the colours.
        def best_first(row: Mapping[str, Any]) -> tuple[float, str]:
            score = cells.get((row["run_id"], "overall"), ScoreCell(None)).score
            return (math.inf if score is None else -score, row["model_name"])

        rows = sorted(rows, key=best_first)
        labels = _labels(rows)
        runs = []
        for index, r in enumerate(rows):
            config = _json(r["config"]) or {}
            dims = {d: c for (run_id, d), c in cells.items() if run_id == r["run_id"] and d != "overall"}
            runs.append(Run(
                index=index, run_id=r["run_id"], label=labels[r["run_id"]], model_name=r["model_name"], judge_model=r["judge_model"],
                rubric_id=r["rubric_id"], rubric_version=r["rubric_version"], method=r["scoring_method"], missing_policy=r["missing_output"],
                unscored_policy=r["unscored_policy"], threshold=_num(r["threshold"]), pass_criterion=r["pass_criterion"],
                scale_min=r["scale_min"], scale_max=r["scale_max"], started_at=r["started_at"], finished_at=r["finished_at"],
                status=r["status"], config=config if isinstance(config, dict) else {},
                overall=cells.get((r["run_id"], "overall"), ScoreCell(None)), dimensions=dims,
                calls=calls.get(r["run_id"], CallStats()), metrics=metrics.get(r["run_id"], ()),
                status_detail=r.get("status_detail"),
            ))
        for run in runs:
            if not run.finished:
                self.notes.append(_unfinished_note(run))
        by_id = {run.run_id: run for run in runs}
        placeholders = ", ".join("?" * len(ids))
        texts_stored = "criteria" in self.objects and bool(
            self.con.execute(f"SELECT count(*) FROM criteria WHERE run_id IN ({placeholders})", ids).fetchone()[0])
        dimensions = self._dimensions(ids, placeholders, texts_stored)
        cards = self._cards(by_id, ids, placeholders, texts_stored, {d: i for i, (d, _) in enumerate(dimensions)})
        categories = tuple(sorted({c.category for c in cards if c.category}))
        by_category: dict[str, dict[int, tuple[float | None, int]]] = {}
        for category in categories:
            by_category[category] = {}
            for run in runs:
                scores = [c.score for c in cards if c.run == run.index and c.category == category and c.score is not None and not c.excluded]
                by_category[category][run.index] = (sum(scores) / len(scores) if scores else None, len(scores))
        comparison = None
        if len(runs) >= 2:
            a, b = _pair(runs, compare)
            comparison = self._comparison(a, b, cards)
        verdict_kind = "scale" if runs[0].scale_min is not None else "binary"
        roles = {r["run_id"]: r.get("role") or "run" for r in rows}
        trust = self._trust([run for run in runs if roles[run.run_id] not in ("probe", "panel_member")], cards, dict(dimensions))
        return Section(key, runs[0].rubric_id, runs[0].rubric_version, runs[0].method, verdict_kind, tuple(runs), dimensions, categories,
                       by_category, cards, comparison, texts_stored, trust)

    def _dimensions(self, ids: list[str], placeholders: str, texts_stored: bool) -> tuple[tuple[str, str], ...]:
        if texts_stored:
            rows = self.con.execute(
                f"SELECT dimension, any_value(dimension_name), min(position) AS p FROM criteria WHERE run_id IN ({placeholders}) "
                "GROUP BY dimension ORDER BY p, dimension", ids).fetchall()
            named = [(d, name or pretty(d)) for d, name, _ in rows]
        else:
            rows = self.con.execute(f"SELECT DISTINCT dimension FROM verdicts WHERE run_id IN ({placeholders}) ORDER BY dimension", ids).fetchall()
            named = [(d, pretty(d)) for (d,) in rows]
        # The pooled score is shown as "Overall": a dimension named so (MedGEN's overall_quality) gets its id added.
        return tuple((d, f"{name} ({d})" if name.strip().casefold() == "overall" and d != "overall" else name) for d, name in named)

    def _cards(self, runs: Mapping[str, Run], ids: list[str], placeholders: str, texts_stored: bool,
               dim_rank: Mapping[str, int]) -> tuple[Card, ...]:
        fields_by_run: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
        if "run_fields" in self.objects:
            for r in self.rows(f"SELECT * FROM run_fields WHERE run_id IN ({placeholders})", ids):
                fields_by_run[r["run_id"]][r["field"]] = r
        scores = {(r["run_id"], r["sample_id"]): r for r in self.rows(f"""
            SELECT run_id, sample_id, avg(score) FILTER (WHERE NOT excluded) AS score,
                   avg(passed::INTEGER) FILTER (WHERE NOT excluded) AS passed, bool_and(excluded) AS excluded
            FROM task_scores WHERE run_id IN ({placeholders}) GROUP BY ALL""", ids)}
        dim_scores: dict[tuple[str, str], dict[str, float | None]] = defaultdict(dict)
        for r in self.rows(f"""SELECT run_id, sample_id, dimension, avg(score) FILTER (WHERE NOT excluded) AS score
                               FROM dimension_scores WHERE run_id IN ({placeholders}) GROUP BY ALL""", ids):
            dim_scores[(r["run_id"], r["sample_id"])][r["dimension"]] = _num(r["score"])
        verdicts: dict[tuple[str, str], list[Verdict]] = defaultdict(list)
        text_join = "LEFT JOIN criteria c USING (run_id, sample_id, criterion_id)" if texts_stored else ""
        text_cols = "c.text, c.position" if texts_stored else "NULL AS text, 0 AS position"
        for r in self.rows(f"""SELECT v.run_id, v.sample_id, v.criterion_id, v.replicate, v.dimension, v.weight, v.met, v.score,
                                      v.confidence, v.reasoning, v.status, {text_cols}
                               FROM verdicts v {text_join} WHERE v.run_id IN ({placeholders})""", ids):
            run = runs[r["run_id"]]
            verdicts[(r["run_id"], r["sample_id"])].append(_verdict(r, run))
        metric_values: dict[tuple[str, str], list[MetricValue]] = defaultdict(list)
        for r in self.rows(f"SELECT * FROM metric_values WHERE run_id IN ({placeholders}) ORDER BY metric", ids):
            metric_values[(r["run_id"], r["sample_id"])].append(MetricValue(r["metric"], _num(r["value"]), r["passed"], r["status"], r["detail"]))
        cards = []
        for r in self.rows(f"SELECT * FROM samples WHERE run_id IN ({placeholders})", ids):
            run = runs[r["run_id"]]
            key = (r["run_id"], r["sample_id"])
            score = scores.get(key, {})
            fields = _json(r["fields"])
            fields = fields if isinstance(fields, dict) else {}
            missing = tuple(r["missing_outputs"] or ())
            images, texts = self._media(run, fields, fields_by_run.get(run.run_id, {}), missing)
            ordered = sorted(verdicts.get(key, ()), key=lambda v: (OUTCOME_ORDER[v.outcome], dim_rank.get(v.dimension, 99), -abs(v.weight),
                                                                    v.position, v.criterion_id, v.replicate))
            passed = score.get("passed")
            cards.append(Card(
                run=run.index, sample_id=r["sample_id"], category=r["category"], modality=r["modality"], score=_num(score.get("score")),
                passed=None if passed is None else passed >= 0.5, excluded=bool(score.get("excluded")), missing_outputs=missing,
                dimension_scores=dim_scores.get(key, {}), images=images, texts=texts, verdicts=tuple(ordered),
                metrics=tuple(metric_values.get(key, ())),
            ))
        cards.sort(key=lambda c: (c.sample_id, c.run))
        return tuple(cards)

    def _media(self, run: Run, fields: Mapping[str, Any], declared: Mapping[str, dict[str, Any]],
               missing: tuple[str, ...]) -> tuple[tuple[Media, ...], tuple[TextField, ...]]:
        """The sample's images and text fields (report.fields decides which is which), image
        paths resolved against the run's input and output folders."""
        inputs, outputs = self._bases(run)
        return sample_fields(fields, declared, missing, lambda value, is_output: self._resolve(value, outputs if is_output else inputs))

    def _bases(self, run: Run) -> tuple[tuple[Path, ...], tuple[Path, ...]]:
        """Directories a relative path may be relative to: (inputs, outputs). Paths are written
        relative to the manifest (or the outputs JSONL); the run's config names both, relative
        to where `score` ran, which is usually where `report` runs, else next to the database."""
        def around(value: Any) -> list[Path]:
            if not isinstance(value, str) or not value:
                return []
            path = Path(value)
            anchors = [path] if path.is_absolute() else [Path.cwd() / path, self.db.parent / path]
            return [p if p.is_dir() else p.parent for p in anchors]

        data = around(run.config.get("data"))
        outputs = around(run.config.get("outputs"))
        fallback = [Path.cwd(), self.db.parent]
        return tuple(data + fallback), tuple(outputs + data + fallback)

    def _resolve(self, value: str, bases: tuple[Path, ...]) -> Path | None:
        key = (value, bases)
        if key not in self._resolved:
            path = Path(value).expanduser()
            candidates = [path] if path.is_absolute() else [base / path for base in bases]
            self._resolved[key] = next((c for c in candidates if c.is_file()), None)
        return self._resolved[key]

    # --- two runs ------------------------------------------------------------------------

    def _comparison(self, a: Run, b: Run, cards: Sequence[Card]) -> Comparison:
        paired = tuple(PairedRow(r["dimension"], r["samples_paired"], _num(r["mean_a"]), _num(r["mean_b"]), _num(r["difference"]),
                                 _num(r["ci_low"]), _num(r["ci_high"]), r["only_in_a"], r["only_in_b"])
                       for r in self.rows("SELECT * FROM paired_bootstrap(?, ?, resamples := ?, seed := ?, level := ?)",
                                          [a.run_id, b.run_id, self.resamples, self.seed, self.level]))
        by_sample: dict[str, dict[int, Card]] = defaultdict(dict)
        for card in cards:
            if card.run in (a.index, b.index):
                by_sample[card.sample_id][card.run] = card
        tasks = []
        for sample_id, pair in by_sample.items():
            ca, cb = pair.get(a.index), pair.get(b.index)
            category = (ca or cb).category if (ca or cb) else None
            tasks.append(TaskDifference(sample_id, category, _scored(ca), _scored(cb)))
        tasks.sort(key=lambda t: (t.difference is None, -abs(t.difference or 0.0), t.sample_id))
        disagreements = []
        compared = 0
        for sample_id, pair in by_sample.items():
            ca, cb = pair.get(a.index), pair.get(b.index)
            if ca is None or cb is None:
                continue
            theirs = {(v.criterion_id, v.replicate): v for v in cb.verdicts}
            for va in ca.verdicts:
                vb = theirs.get((va.criterion_id, va.replicate))
                if vb is None or va.status != "ok" or vb.status != "ok":
                    continue
                compared += 1
                if va.outcome != vb.outcome:
                    disagreements.append(Disagreement(sample_id, va.criterion_id, va.text or vb.text, va.dimension, va.weight, va, vb))
        disagreements.sort(key=lambda d: (-abs(d.weight), d.sample_id, d.a.position, d.criterion_id))
        return Comparison(a, b, paired, tuple(tasks), tuple(disagreements[:DISAGREEMENTS_SHOWN]), len(disagreements), compared)

    # --- how far to trust the judge ---------------------------------------------------------

    def _trust(self, runs: Sequence[Run], cards: Sequence[Card], dimension_names: Mapping[str, str]) -> tuple[Trust, ...]:
        """The agreement statistics of the section's judged runs (store.agreement, overall): the
        stored `agreement_results` rows when they were computed with the report's bootstrap
        options after the latest labels and runs, else computed now. Runs of one model are
        computed together, so a model judged by two judges gets the judge-vs-judge rows."""
        if not runs or not {"labels", "verdicts"} <= self.objects:
            return ()
        from rubric_judge.store import agreement
        from rubric_judge.store.stats import Bootstrap

        options = Bootstrap(self.resamples, self.seed, self.level)
        by_model: dict[str, list[Run]] = defaultdict(list)
        for run in runs:
            by_model[run.model_name].append(run)
        rows: dict[str, list[dict[str, Any]]] = {}
        source: dict[str, str] = {}
        for group in by_model.values():
            stored = {run.run_id: self._stored_agreement(run.run_id) for run in group}
            paired = len(group) < 2 or any(r["compared"].startswith("run ") for rs in stored.values() for r in rs or ())
            if paired and all(r is not None for r in stored.values()):
                rows.update({k: v for k, v in stored.items() if v is not None})
                source.update(dict.fromkeys(stored, "stored"))
                continue
            computed, _ = agreement.compute(self.con, [run.run_id for run in group], "overall", options)
            for run in group:
                rows[run.run_id] = [r for r in computed if r["run_id"] == run.run_id]
                source[run.run_id] = "computed"
        texts = {(c.sample_id, v.criterion_id): v.text for c in cards for v in c.verdicts if v.text}
        out = []
        for run in runs:
            if rows.get(run.run_id):
                out.append(self._trust_of(run, rows[run.run_id], source[run.run_id], texts, dimension_names))
        return tuple(out)

    def _stored_agreement(self, run_id: str) -> list[dict[str, Any]] | None:
        """The stored overall rows of `run_id` for the report's bootstrap options, or None when
        there are none, they are older than the latest labels or runs, or they lack a kind of
        comparison the database now has (e.g. stored by `agree --labels` before a probe ran)."""
        if "agreement_results" not in self.objects:
            return None
        stored = self.rows("""SELECT * FROM agreement_results WHERE run_id = ? AND ("by" = 'overall' OR ("by" = 'dimension' AND compared LIKE 'probe %'))
                                AND resamples = ? AND seed = ?
                                AND abs(ci_level - ?) < 1e-12
                                AND computed_at >= greatest((SELECT max(imported_at) FROM labels), (SELECT max(started_at) FROM runs))""",
                           [run_id, self.resamples, self.seed, self.level])
        if not stored:
            return None
        kinds = {r["compared"].split(" ", 1)[0] for r in stored}
        expected = self.con.execute("""SELECT
              EXISTS (SELECT 1 FROM labels l JOIN verdicts v ON v.run_id = ? AND v.sample_id = l.sample_id
                      AND (v.criterion_id = l.criterion_id OR (l.criterion_id IS NULL AND v.dimension = l.dimension))),
              EXISTS (SELECT 1 FROM verdicts WHERE run_id = ? AND replicate > 0),
              EXISTS (SELECT 1 FROM runs WHERE role = 'probe' AND parent_run_id = ?)""", [run_id] * 3).fetchone()
        needed = {kind for kind, present in zip(("judge", "replicates", "probe"), expected, strict=True) if present}
        return stored if needed <= kinds else None

    def _trust_of(self, run: Run, rows: list[dict[str, Any]], source: str, texts: Mapping[tuple[str, str], str],
                  dimension_names: Mapping[str, str]) -> Trust:
        stats = [TrustStat(r["compared"], r["statistic"], r["level"], _num(r["value"]), _num(r["ci_low"]), _num(r["ci_high"]), int(r["n"]),
                           r["rater"], r["other_run_id"], r["with_judge"], r["group"]) for r in rows]

        def find(compared: str, statistic: str) -> TrustStat | None:
            return next((t for t in stats if t.compared == compared and t.statistic == statistic and t.group == "overall"), None)

        def pair_row(who: str, compared: str) -> TrustRow:
            return TrustRow(who, find(compared, "balanced_f1"), find(compared, "cohen_kappa"), find(compared, "base_rate"))

        raters = sorted({t.rater for t in stats if t.rater})
        judge_rows = [pair_row("judge vs every expert (pooled pairs)", "judge vs raters (pooled pairs)"),
                      pair_row("judge vs experts (mean over raters)", "judge vs raters (mean over raters)")]
        judge_rows += [pair_row(f"judge vs rater {r}", f"judge vs rater {r}") for r in raters]
        expert_rows = [pair_row(f"rater {r} vs the other raters", f"rater {r} vs other raters (leave-one-out)") for r in raters]
        expert_rows.append(pair_row("experts (mean over raters)", "raters (leave-one-out)"))
        judge_rows = [r for r in judge_rows if r.f1 or r.kappa]
        expert_rows = [r for r in expert_rows if r.f1 or r.kappa]
        scale = run.scale_min is not None
        # The judge's number against the experts' own: HealthBench puts the model's pooled F1 among
        # the physicians' leave-one-out F1s (kappa for scale rubrics, which have no F1).
        statistic = "cohen_kappa" if scale else "balanced_f1"
        headline = find("judge vs raters (pooled pairs)", statistic)
        baseline = [v for r in raters if (t := find(f"rater {r} vs other raters (leave-one-out)", statistic)) and (v := t.value) is not None]
        placement = expert_range = None
        if headline is not None and headline.value is not None and len(baseline) >= 2:
            expert_range = (min(baseline), max(baseline))
            placement = "below" if headline.value < expert_range[0] else "above" if headline.value > expert_range[1] else "inside"
        alphas = tuple(t for t in stats if t.statistic == "krippendorff_alpha" and t.compared in ("raters", "raters + judge"))
        consistency = tuple(t for t in stats if t.compared.split(" ", 1)[0] in ("replicates", "probe", "run")
                            and (t.statistic != "krippendorff_alpha" or t.level in ("nominal", "interval")))
        disagreements, count, labelled = self._expert_disagreements(run, texts, dimension_names) if judge_rows else ((), 0, 0)
        return Trust(run, scale, source, tuple(judge_rows), tuple(expert_rows) if len(raters) > 1 else (), alphas, consistency,
                     placement, headline, expert_range, disagreements, count, labelled)

    def _expert_disagreements(self, run: Run, texts: Mapping[tuple[str, str], str],
                              dimension_names: Mapping[str, str]) -> tuple[tuple[ExpertDisagreement, ...], int, int]:
        """Items where the judge's verdict and the experts' labels differ most (the mean distance
        over raters), the number of such items and the number of labelled items judged."""
        from rubric_judge.store import agreement

        data, labels = agreement.judged_and_labelled(self.con, run.run_id)
        found = []
        labelled = 0
        for item, judged in data.first.items():
            given = tuple((rater, per_item[item]) for rater, per_item in sorted(labels.items()) if item in per_item)
            if not given:
                continue
            labelled += 1
            distance = sum(abs(judged - label) for _, label in given) / len(given)
            if distance > 0:
                sample, name = item
                dimension = data.dimension.get(item) or name
                text = dimension_names.get(name) if data.scale else texts.get(item)
                found.append(ExpertDisagreement(sample, name, text, dimension, judged, given, distance))
        found.sort(key=lambda d: (-d.distance, -len(d.labels), d.sample_id, d.item))
        return tuple(found[:TRUST_DISAGREEMENTS_SHOWN]), len(found), labelled


def _unfinished_note(run: Run) -> str:
    """The overview's warning for a run that did not go through its whole manifest."""
    why = f" — {run.status_detail.rstrip('.')}" if run.status_detail else ""
    cell = run.overall
    covered = f"{cell.samples:,} of {cell.samples_total:,}" if cell.samples_total else f"{cell.samples:,}"
    return (f"{run.label} on {run.rubric_id} v{run.rubric_version}: run {run.status}{why}. Its scores cover {covered} samples, "
            "so they are not comparable with a finished run's.")


def _pair(runs: Sequence[Run], compare: tuple[str, ...]) -> tuple[Run, Run]:
    """The two runs named by --compare when both are in this section, else the best two."""
    if compare:
        chosen = []
        for name in compare:
            matches = [r for r in runs if _is(name, r)]
            if len(matches) == 1 and matches[0] not in chosen:
                chosen.append(matches[0])
        if len(chosen) == 2:
            return chosen[0], chosen[1]
    return runs[0], runs[1]


def _is(name: str, run: Run) -> bool:
    """Whether --compare's `name` means `run`: its model name, label, run id or a run id prefix."""
    return name in (run.model_name, run.label, run.run_id) or (len(name) >= 6 and run.run_id.startswith(name))


def _named(compare: tuple[str, ...], a: Run, b: Run) -> bool:
    return _is(compare[0], a) and _is(compare[1], b)


def _verdict(row: Mapping[str, Any], run: Run) -> Verdict:
    status = row["status"]
    weight = float(row["weight"])
    if status == "missing_output":
        outcome = "missing"
    elif status != "ok":
        outcome = "unscored"
    elif row["met"] is not None:
        # A negative weight marks something that must NOT appear: present (met) is a failure.
        outcome = "pass" if bool(row["met"]) == (weight >= 0) else "fail"
    elif row["score"] is not None:
        outcome = "pass" if row["score"] >= _scale_pass(run) else "fail"
    else:
        outcome = "unscored"
    return Verdict(row["criterion_id"], row["text"], row["dimension"], weight, row["replicate"], status, row["met"], _num(row["score"]),
                   _num(row["confidence"]), row["reasoning"], outcome, row["position"] if row["position"] is not None else 1 << 30)


def _scale_pass(run: Run) -> float:
    """A scale verdict passes at the rubric's threshold, or without one at the scale's midpoint."""
    if run.threshold is not None:
        return run.threshold
    low, high = run.scale_min or 0, run.scale_max or 1
    return (low + high) / 2


def _scored(card: Card | None) -> float | None:
    return None if card is None or card.excluded else card.score


def _labels(rows: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """Model names, with the judge (then the run id) added where one model has several runs."""
    labels = {}
    for r in rows:
        same = [o for o in rows if o["model_name"] == r["model_name"]]
        label = r["model_name"]
        if len(same) > 1:
            label += f" ({r['judge_model']})"
            if sum(o["judge_model"] == r["judge_model"] for o in same) > 1:
                label += f" {r['run_id'][:8]}"
        labels[r["run_id"]] = label
    return labels



def _json(value: Any) -> Any:
    if value is None or isinstance(value, (dict, list)):
        return value
    try:
        return json.loads(value)
    except (TypeError, ValueError):
        return None


def _num(value: Any) -> float | None:
    """A finite float or None: NaN/inf from SQL never reach the page as numbers."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None
