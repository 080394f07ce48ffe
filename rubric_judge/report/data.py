"""Everything the report shows, read from the results database into plain immutable dataclasses.

The numbers come from the store's SQL (views.sql for scores, stats.sql for bootstrap intervals)
and are never recomputed here, so every figure on the page can be re-derived with
`rubric-judge query`. This module only groups rows, orders them for reading (failed criteria
first) and resolves image paths; it does no HTML.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rubric_judge.errors import UserError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff")
# Fields shown in a card's header rather than as text blocks.
HEADER_FIELDS = ("category", "modality")
# The order in which a card lists a criterion's outcome: what went wrong first.
OUTCOME_ORDER = {"fail": 0, "unscored": 1, "missing": 2, "pass": 3}
DISAGREEMENTS_SHOWN = 500


@dataclass(frozen=True)
class ScoreCell:
    """One leaderboard number with its bootstrap interval and the coverage behind it."""

    score: float | None
    ci_low: float | None = None
    ci_high: float | None = None
    samples: int = 0  # scored and counted
    excluded: int = 0
    missing_outputs: int = 0
    unscored: int = 0  # verdicts the judge did not give (error / unscored)
    accuracy: float | None = None  # pass_rate rubrics, overall only
    accuracy_low: float | None = None
    accuracy_high: float | None = None


@dataclass(frozen=True)
class CallStats:
    """Judge calls of one run: what was paid, what the cache saved, how long calls took."""

    calls: int = 0
    cache_hits: int = 0
    failed: int = 0
    retries: int = 0
    prompt_tokens: int = 0  # paid (cache misses)
    completion_tokens: int = 0
    cost_usd: float | None = None  # paid this run; None when no call had a known price
    saved_usd: float | None = None  # what the cached answers cost when they were paid
    unpriced_calls: int = 0  # paid calls whose model has no price in litellm's map
    latency_p50_ms: float | None = None  # judge calls that reached the judge (cache misses)
    latency_p95_ms: float | None = None

    @property
    def hit_rate(self) -> float | None:
        return self.cache_hits / self.calls if self.calls else None


@dataclass(frozen=True)
class MetricSummary:
    metric: str
    mean: float | None
    accuracy: float | None
    ok: int
    rated: int
    missing_outputs: int
    not_computed: int
    problem: str | None


@dataclass(frozen=True)
class Run:
    index: int  # colour and filter key within its section
    run_id: str
    label: str  # model name, disambiguated when a section has two runs of one model
    model_name: str
    judge_model: str
    rubric_id: str
    rubric_version: str
    method: str
    missing_policy: str
    unscored_policy: str
    threshold: float | None
    pass_criterion: str | None
    scale_min: int | None
    scale_max: int | None
    started_at: datetime | None
    finished_at: datetime | None
    status: str
    config: Mapping[str, Any]
    overall: ScoreCell
    dimensions: Mapping[str, ScoreCell]
    calls: CallStats
    metrics: tuple[MetricSummary, ...] = ()

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


@dataclass(frozen=True)
class Verdict:
    """One criterion's verdict for one sample (and replicate), with the criterion's text."""

    criterion_id: str
    text: str | None  # None when the database has no text (older or imported runs)
    dimension: str
    weight: float
    replicate: int
    status: str  # ok | error | unscored | missing_output
    met: bool | None
    score: float | None
    confidence: float | None
    reasoning: str | None
    outcome: str  # pass | fail | unscored | missing (what it does to the score)
    position: int = 0


@dataclass(frozen=True)
class Media:
    """An image of a sample: where the database says it is and whether it is there."""

    field: str
    label: str
    value: str | None  # the path as stored; None when the model produced no output
    path: Path | None  # the resolved existing file, None when missing
    is_output: bool


@dataclass(frozen=True)
class TextField:
    field: str
    label: str
    value: str | None  # None: a missing model output
    is_output: bool


@dataclass(frozen=True)
class MetricValue:
    metric: str
    value: float | None
    passed: bool | None
    status: str
    detail: str | None


@dataclass(frozen=True)
class Card:
    """One sample as judged in one run."""

    run: int  # Run.index
    sample_id: str
    category: str | None
    modality: str | None
    score: float | None
    passed: bool | None
    excluded: bool
    missing_outputs: tuple[str, ...]
    dimension_scores: Mapping[str, float | None]
    images: tuple[Media, ...]
    texts: tuple[TextField, ...]
    verdicts: tuple[Verdict, ...]
    metrics: tuple[MetricValue, ...]

    @property
    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(OUTCOME_ORDER, 0)
        for verdict in self.verdicts:
            counts[verdict.outcome] += 1
        return counts


@dataclass(frozen=True)
class PairedRow:
    dimension: str
    samples: int
    mean_a: float | None
    mean_b: float | None
    difference: float | None
    ci_low: float | None
    ci_high: float | None
    only_in_a: int
    only_in_b: int


@dataclass(frozen=True)
class TaskDifference:
    sample_id: str
    category: str | None
    score_a: float | None
    score_b: float | None

    @property
    def difference(self) -> float | None:
        return None if self.score_a is None or self.score_b is None else self.score_a - self.score_b


@dataclass(frozen=True)
class Disagreement:
    sample_id: str
    criterion_id: str
    text: str | None
    dimension: str
    weight: float
    a: Verdict
    b: Verdict


@dataclass(frozen=True)
class Comparison:
    """Two runs of one rubric, sample by sample."""

    a: Run
    b: Run
    paired: tuple[PairedRow, ...]  # empty when the database has no paired_bootstrap macro
    tasks: tuple[TaskDifference, ...]  # by |difference|, then samples scored in one run only
    disagreements: tuple[Disagreement, ...]  # at most DISAGREEMENTS_SHOWN, heaviest first
    disagreement_count: int
    compared_verdicts: int


@dataclass(frozen=True)
class Section:
    """One rubric (id and version): its runs, their comparison and their sample cards."""

    key: str  # html id prefix
    rubric_id: str
    rubric_version: str
    method: str
    verdict_kind: str  # binary | scale
    runs: tuple[Run, ...]
    dimensions: tuple[tuple[str, str], ...]  # (id, display name), rubric order; 'overall' not included
    categories: tuple[str, ...]
    by_category: Mapping[str, Mapping[int, tuple[float | None, int]]]  # category -> run -> (mean, n)
    cards: tuple[Card, ...]
    comparison: Comparison | None
    texts_stored: bool  # False: criteria are shown by id (imported or older runs)

    @property
    def has_metrics(self) -> bool:
        return any(r.metrics for r in self.runs)

    @property
    def scale(self) -> tuple[float, float]:
        """The score axis: weighted points run from below 0 (penalties) to 1, scales min..max."""
        run = self.runs[0]
        if self.method == "weighted_points" or run.scale_min is None or run.scale_max is None:
            return (0.0, 1.0)
        return (float(run.scale_min), float(run.scale_max))


@dataclass(frozen=True)
class ReportData:
    db_path: Path
    generated_at: datetime
    sections: tuple[Section, ...]
    resamples: int
    seed: int
    level: float
    notes: tuple[str, ...] = field(default=())

    @property
    def runs(self) -> list[Run]:
        return [run for section in self.sections for run in section.runs]


def load_report_data(db: Path, rubric: str | None = None, compare: Sequence[str] = (), resamples: int = 1000, seed: int = 0,
                     level: float = 0.95) -> ReportData:
    """Read the database at `db` (read-only) for the report; `rubric` keeps one rubric id,
    `compare` names the two runs (model names or run ids) to compare, by default the two best."""
    from rubric_judge.store.db import connect

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
        cursor = self.con.execute(sql, list(params))
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

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
            )
        return cells

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
                        ELSE coalesce(sum(cost_usd) FILTER (WHERE cache_hit), 0.0) END AS saved_usd,
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
            ))
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
        return Section(key, runs[0].rubric_id, runs[0].rubric_version, runs[0].method, verdict_kind, tuple(runs), dimensions, categories,
                       by_category, cards, comparison, texts_stored)

    def _dimensions(self, ids: list[str], placeholders: str, texts_stored: bool) -> tuple[tuple[str, str], ...]:
        if texts_stored:
            rows = self.con.execute(
                f"SELECT dimension, any_value(dimension_name), min(position) AS p FROM criteria WHERE run_id IN ({placeholders}) "
                "GROUP BY dimension ORDER BY p, dimension", ids).fetchall()
            named = [(d, name or _pretty(d)) for d, name, _ in rows]
        else:
            rows = self.con.execute(f"SELECT DISTINCT dimension FROM verdicts WHERE run_id IN ({placeholders}) ORDER BY dimension", ids).fetchall()
            named = [(d, _pretty(d)) for (d,) in rows]
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
        """The sample's images (inputs first, then in the order the judge saw them, then other
        outputs) and text fields. Undeclared fields whose value looks like an image path (e.g.
        MedGEN's input_image, which the judge is not shown) count as input images."""
        bases = self._bases(run)
        images: list[tuple[tuple[int, int, str], Media]] = []
        texts: list[tuple[int, TextField]] = []
        names = list(dict.fromkeys([*fields, *(m for m in missing if m in declared or m not in fields)]))
        for name in names:
            if name in HEADER_FIELDS:
                continue
            spec = declared.get(name)
            value = fields.get(name)
            is_output = bool(spec["is_output"]) if spec else (name in missing or _looks_like_output(name))
            is_image = (spec["kind"] == "image") if spec else (_looks_like_image(value) or (name in missing and _looks_like_image_name(name)))
            label = (spec.get("label") if spec else None) or _pretty(name)
            if is_image:
                if value is None and name not in missing:
                    continue  # an optional input this sample does not have (e.g. no ground truth for VQA)
                text = None if value is None else str(value)
                path = None if text is None else self._resolve(text, bases[1] if is_output else bases[0])
                position = spec.get("position") if spec else None
                rank = (1, position, name) if position is not None else ((2, 0, name) if is_output else (0, 0, name))
                images.append((rank, Media(name, label, text, path, is_output)))
            else:
                if value is None and name not in missing:
                    continue
                shown = None if value is None else (value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))
                texts.append((1 if is_output else 0, TextField(name, label, shown, is_output)))
        images.sort(key=lambda item: item[0])
        texts.sort(key=lambda item: item[0])  # stable: manifest order within inputs and outputs
        return tuple(m for _, m in images), tuple(t for _, t in texts)

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


def _pretty(name: str) -> str:
    text = name.replace("_", " ").replace("-", " ").strip()
    return text[:1].upper() + text[1:]


def _looks_like_image(value: Any) -> bool:
    return isinstance(value, str) and value.lower().endswith(IMAGE_SUFFIXES) and "\n" not in value


def _looks_like_image_name(name: str) -> bool:
    return "image" in name or name.endswith(("_img", "_png"))


def _looks_like_output(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in ("generated", "output", "response", "prediction"))


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
