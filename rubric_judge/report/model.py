"""What the report shows: plain immutable dataclasses, built by report.queries from the results
database and rendered by report.render and the templates.

Nothing here reads the database or the file system; the numbers come from the store's SQL and
are never recomputed (see report.queries).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

# The order in which a card lists a criterion's outcome: what went wrong first.
OUTCOME_ORDER = {"fail": 0, "unscored": 1, "missing": 2, "pass": 3}


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
    samples_total: int = 0  # samples in the run's manifest: coverage is `samples` of this


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
    status: str  # running | finished | stopped | interrupted | failed
    config: Mapping[str, Any]
    overall: ScoreCell
    dimensions: Mapping[str, ScoreCell]
    calls: CallStats
    metrics: tuple[MetricSummary, ...] = ()
    status_detail: str | None = None  # why a run that did not finish stopped, in words

    @property
    def finished(self) -> bool:
        """Whether the run went through its whole manifest; otherwise its scores are partial."""
        return self.status == "finished"

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
    trust: tuple[Trust, ...] = ()  # runs with agreement data (labels, probes, replicates, a second judge)

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



@dataclass(frozen=True)
class TrustStat:
    """One row of `rubric-judge agree` (store.agreement's columns), overall."""

    compared: str  # e.g. "judge vs rater r1", "raters (leave-one-out)", "probe verbosity (…) vs run …"
    statistic: str  # balanced_f1 | cohen_kappa | base_rate | krippendorff_alpha | flip_rate
    level: str | None  # alpha's level of measurement
    value: float | None
    ci_low: float | None
    ci_high: float | None
    n: int
    rater: str | None = None
    other_run_id: str | None = None
    with_judge: bool | None = None
    group: str = "overall"  # probe flip rates come per dimension too


@dataclass(frozen=True)
class TrustRow:
    """Who was compared with whom, and the pair statistics of that comparison."""

    who: str
    f1: TrustStat | None
    kappa: TrustStat | None
    base_rate: TrustStat | None = None


@dataclass(frozen=True)
class ExpertDisagreement:
    """An item (a sample's criterion, or a scale rubric's dimension) where the judge and the
    experts differ, with every expert's label."""

    sample_id: str
    item: str  # criterion id (binary) or dimension (scale)
    text: str | None
    dimension: str
    judge: float  # 1/0 met, or the score
    labels: tuple[tuple[str, float], ...]  # (rater, label)
    distance: float  # mean |judge - label| over the raters: the share who disagree, for met/not met


@dataclass(frozen=True)
class Trust:
    """How far to trust one run's judge: agreement with experts, the experts with each other,
    other judges, its bias probes and its own replicates (see store.agreement)."""

    run: Run
    scale: bool
    source: str  # "stored" (agreement_results) | "computed" (store.agreement, with the report's options)
    judge_vs_experts: tuple[TrustRow, ...]  # pooled pairs, mean over raters, then each rater
    experts: tuple[TrustRow, ...]  # each rater vs the other raters (leave-one-out), then their mean
    alphas: tuple[TrustStat, ...]  # Krippendorff's alpha of the raters, without and with the judge
    consistency: tuple[TrustStat, ...]  # flip rates (probes, replicates, other judges) and judge-vs-judge kappa/alpha
    placement: str | None  # "inside" | "below" | "above" the experts' range; None without a baseline
    headline: TrustStat | None  # the judge's number placed in the experts' range
    expert_range: tuple[float, float] | None
    disagreements: tuple[ExpertDisagreement, ...]  # largest first, at most TRUST_DISAGREEMENTS_SHOWN
    disagreement_count: int
    labelled_items: int
