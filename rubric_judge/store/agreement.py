"""How far to trust the judge: agreement of a judge with expert labels, with other judges, with
itself (replicates) and with its bias probes, each with a seeded percentile-bootstrap interval.

What is compared (one row per statistic, see `COLUMNS`):

* judge vs experts (labels imported with `rubric-judge labels import`), on the items both
  labelled: an item is (sample, criterion) for binary rubrics, (sample, dimension) for scale
  rubrics. Per rater: HealthBench's class-balanced F1, Cohen's kappa and the rater's base rate;
  pooled over every (item, rater) pair (HealthBench's `pairwise_model_f1_balanced`) and the mean
  over raters. The experts' own baseline puts the judge inside the human distribution: each
  rater against the other raters (leave one out, pooled pairs, same F1 and kappa), and the mean
  of those. Krippendorff's alpha over the raters without and with the judge as one more coder.
* judge vs judge: two runs on the same samples (replicate 0 of each): the same F1, kappa and
  alpha, and the flip rate. A bias-probe run (runs.role = 'probe', parent_run_id = the run) is
  compared to its run automatically: flip rate overall and per dimension.
* self-consistency: a run judged several times (verdicts.replicate > 0): flip rate over every
  pair of replicates of an item, and alpha with the replicates as coders.

Only `ok` verdicts enter any statistic: an `error`, `unscored` or `missing_output` verdict is
left out, never read as "not met"; `n` is the number of items (item pairs, for pooled and
leave-one-out rows; units with two or more values, for alpha) that were compared.

Intervals: a percentile bootstrap over samples (the sample is the cluster: all its items go in
or out together), drawn with stats.sql's `_bootstrap_pick(seed, b, j, n)` macro so the seed means
what it means for `leaderboard_ci`: draw j of resample b in a group of n samples picks position
`_bootstrap_pick(seed, b, j, n)` among the group's samples sorted by sample_id. Every statistic
here is a function of counts that add up over samples (confusion and coincidence matrices), so
a resample is the per-sample counts weighted by how often each sample was drawn, and each
statistic is computed for all resamples at once in numpy. The interval is the (1 - level) / 2
and (1 + level) / 2 quantiles of the resampled values (numpy's default, linear); resamples where
a statistic is undefined (e.g. a class absent) are left out of them.

Storage: the numbers are computed in numpy, so they cannot be a SQL macro. `agree(...,
store=True)` (the CLI's default) writes its rows to the table `agreement_results` (migration
0006), replacing the earlier rows of the same runs and groupings, so `rubric-judge query
"SELECT * FROM agreement_results"` reaches them; the draws themselves stay in SQL.

The formulas are written out below (numpy only); tests check them against scikit-learn
(Cohen's kappa, F1) and the `krippendorff` package.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import combinations
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rubric_judge.errors import Location, Problem, UserError

if TYPE_CHECKING:
    import pandas

    from rubric_judge.store.stats import Bootstrap

BY = ("overall", "dimension", "criterion", "category")
FORMATS = ("table", "csv", "json")
# The columns of every row, in order (the DataFrame's and the `agreement_results` table's).
COLUMNS = ("run_id", "compared", "rater", "other_run_id", "with_judge", "statistic", "level", "by", "group",
           "value", "ci_low", "ci_high", "n", "samples", "resamples", "seed", "ci_level")
BINARY_LEVELS = ("nominal",)
SCALE_LEVELS = ("ordinal", "interval")
NO_CATEGORY = "(none)"


# --------------------------------------------------------------------------------------------
# The statistics. Each takes count arrays with any leading (batch) axes and returns one value
# per batch entry, NaN where the statistic is undefined.

def cohen_kappa(confusion: np.ndarray) -> np.ndarray:
    """Cohen's kappa (Cohen 1960) of two coders from their confusion matrix (..., K, K).

    kappa = (p_o - p_e) / (1 - p_e), where p_o = trace / N is the observed agreement and
    p_e = sum_k row_k * col_k / N^2 the agreement expected by chance from the two marginals.
    Unweighted: for scale scores every different value is a disagreement (alpha's ordinal and
    interval levels weigh by distance). Same as sklearn.metrics.cohen_kappa_score.
    """
    total = confusion.sum(axis=(-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        observed = np.trace(confusion, axis1=-2, axis2=-1) / total
        expected = (confusion.sum(axis=-1) * confusion.sum(axis=-2)).sum(axis=-1) / total**2
        return (observed - expected) / (1 - expected)


def balanced_f1(confusion: np.ndarray) -> np.ndarray:
    """HealthBench's class-balanced F1 (Arora et al. 2025, meta-evaluation; simple-evals
    healthbench_meta_eval.py) from a 2x2 confusion matrix (..., 2, 2): rows are the grader's
    labels (index 1 = met), columns the reference's.

    For each class c (met, not met): precision = TP / (TP + FP) over the items the grader put
    in c, recall = TP / (TP + FN) over the items the reference put in c, F1 = 2 P R / (P + R)
    = 2 TP / (2 TP + FP + FN) (0 when P = R = 0). F1 is undefined when the grader or the
    reference never used the class, and so is the balanced F1 = (F1_met + F1_not_met) / 2.
    With pairs pooled over several references this is HealthBench's pairwise F1.
    """
    values = []
    for c in (1, 0):
        tp = confusion[..., c, c]
        predicted = confusion[..., c, :].sum(axis=-1)  # TP + FP
        actual = confusion[..., :, c].sum(axis=-1)  # TP + FN
        with np.errstate(invalid="ignore", divide="ignore"):
            f1 = 2 * tp / (predicted + actual)
        values.append(np.where((predicted > 0) & (actual > 0), f1, np.nan))
    return (values[0] + values[1]) / 2


def flip_rate(confusion: np.ndarray) -> np.ndarray:
    """Share of paired verdicts that differ: 1 - trace / N of a confusion (or pair-count) matrix."""
    total = confusion.sum(axis=(-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return 1 - np.trace(confusion, axis1=-2, axis2=-1) / total


def base_rate(confusion: np.ndarray) -> np.ndarray:
    """Share of "met" (index 1) in the reference's (column) labels of a 2x2 confusion matrix:
    the chance level a judge that always says "met" would reach in raw agreement."""
    total = confusion.sum(axis=(-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return confusion[..., :, 1].sum(axis=-1) / total


def coincidences(counts: np.ndarray) -> np.ndarray:
    """Krippendorff's coincidence matrix contributions of units: counts (U, K) holds how many
    coders gave each of K values to each unit; a unit with m >= 2 values adds
    (n_u n_u^T - diag(n_u)) / (m - 1), a unit with fewer values is not pairable and adds nothing.
    Returns (U, K, K)."""
    return pair_counts(counts) / np.maximum(counts.sum(axis=1) - 1, 1)[:, None, None]


def pair_counts(counts: np.ndarray) -> np.ndarray:
    """Ordered pairs of values within each unit: n_u n_u^T - diag(n_u), (U, K, K); its
    off-diagonal share is the flip rate over all pairs of a unit's values."""
    outer = counts[:, :, None] * counts[:, None, :]
    pairs = outer - counts[:, :, None] * np.eye(counts.shape[1])[None]
    return np.where((counts.sum(axis=1) >= 2)[:, None, None], pairs, 0.0)


def krippendorff_alpha(coincidence: np.ndarray, values: Sequence[float], level: str) -> np.ndarray:
    """Krippendorff's alpha (Krippendorff 2011, "Computing Krippendorff's alpha-reliability")
    from the coincidence matrix o (..., K, K) over the sorted values.

    alpha = 1 - D_o / D_e = 1 - sum_ck o_ck d_ck / sum_ck e_ck d_ck, with n_c = sum_k o_ck,
    n = sum_c n_c and expected coincidences e_ck = (n_c n_k - [c = k] n_c) / (n - 1). Distances
    d_ck: nominal [c != k]; interval (v_c - v_k)^2; ordinal (sum_{g=c..k} n_g - (n_c + n_k) / 2)^2.
    Handles any number of coders and missing values (units with fewer than two values drop out).
    Same as krippendorff.alpha with the observed values as the value domain.
    """
    observed = np.asarray(coincidence, dtype=float)
    n_v = observed.sum(axis=-2)
    n = n_v.sum(axis=-1)
    k = observed.shape[-1]
    if level == "nominal":
        distance = np.broadcast_to(1.0 - np.eye(k), observed.shape)
    elif level == "interval":
        v = np.asarray(values, dtype=float)
        distance = np.broadcast_to((v[:, None] - v[None, :]) ** 2, observed.shape)
    elif level == "ordinal":
        low = np.minimum.outer(np.arange(k), np.arange(k))
        high = np.maximum.outer(np.arange(k), np.arange(k))
        cumulative = np.cumsum(n_v, axis=-1)
        between = cumulative[..., high] - cumulative[..., low] + n_v[..., low]  # sum of n_g for g = c..k
        distance = (between - (n_v[..., :, None] + n_v[..., None, :]) / 2) ** 2
    else:
        raise ValueError(f"unknown level of measurement {level!r}")
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = (n_v[..., :, None] * n_v[..., None, :] - n_v[..., :, None] * np.eye(k)) / (n - 1)[..., None, None]
        disagreement = (expected * distance).sum(axis=(-2, -1))
        return np.where(disagreement > 0, 1 - (observed * distance).sum(axis=(-2, -1)) / disagreement, np.nan)


# --------------------------------------------------------------------------------------------
# The data: one run's verdicts and the expert labels for its samples.

Item = tuple[str, str]  # (sample_id, criterion_id) for binary rubrics, (sample_id, dimension) for scale rubrics


@dataclass
class RunData:
    run_id: str
    rubric_id: str
    model_name: str
    judge_model: str
    scale: bool
    role: str
    parent_run_id: str | None
    probe: str | None
    first: dict[Item, float] = field(default_factory=dict)  # replicate 0's ok verdict
    replicates: dict[Item, list[float]] = field(default_factory=dict)  # every ok replicate
    dimension: dict[Item, str] = field(default_factory=dict)
    category: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        return f"{self.run_id} ({self.model_name} on {self.rubric_id}, judge {self.judge_model}, role {self.role})"

    def group(self, item: Item, by: str) -> str:
        if by == "overall":
            return "overall"
        if by == "dimension":
            return self.dimension.get(item) or NO_CATEGORY
        if by == "criterion":
            return item[1]
        return self.category.get(item[0]) or NO_CATEGORY


def _load_runs(con) -> list[RunData]:
    rows = con.execute("SELECT run_id, rubric_id, model_name, judge_model, scale_min IS NOT NULL, coalesce(role, 'run'), parent_run_id, probe "
                       "FROM runs ORDER BY started_at, run_id").fetchall()
    return [RunData(*row) for row in rows]


def _load_verdicts(con, run: RunData) -> None:
    if run.scale:
        # A dimension's value: the mean of its criteria's scores, only when all of them are ok.
        sql = """SELECT sample_id, dimension, dimension, replicate,
                        CASE WHEN bool_and(status = 'ok' AND score IS NOT NULL) THEN avg(score) END
                 FROM verdicts WHERE run_id = ? AND dimension IS NOT NULL GROUP BY ALL"""
    else:
        sql = """SELECT sample_id, criterion_id, dimension, replicate, CASE WHEN status = 'ok' AND met IS NOT NULL THEN met::INTEGER END
                 FROM verdicts WHERE run_id = ?"""
    for sample, item, dimension, replicate, value in con.execute(sql, [run.run_id]).fetchall():
        key = (sample, item)
        run.dimension.setdefault(key, dimension)
        if value is None:
            continue
        run.replicates.setdefault(key, []).append(float(value))
        if replicate == 0:
            run.first[key] = float(value)
    run.category = {s: c for s, c in con.execute("SELECT sample_id, category FROM samples WHERE run_id = ?", [run.run_id]).fetchall() if c is not None}


def _load_labels(con, run: RunData) -> dict[str, dict[Item, float]]:
    """rater -> item -> label, for the run's rubric (or labels for any rubric) and the items
    the run has; a label given twice (two files) counts once, the latest import's."""
    column = "dimension" if run.scale else "criterion_id"
    extra = "AND criterion_id IS NULL" if run.scale else ""
    rows = con.execute(f"""SELECT rater_id, sample_id, {column}, arg_max(label, imported_at)
                           FROM labels WHERE {column} IS NOT NULL {extra} AND (rubric_id IS NULL OR rubric_id = ?)
                           GROUP BY ALL""", [run.rubric_id]).fetchall()
    labels: dict[str, dict[Item, float]] = {}
    for rater, sample, item, label in rows:
        if (sample, item) in run.dimension:
            labels.setdefault(rater, {})[(sample, item)] = float(label)
    return labels



def judged_and_labelled(con, run_id: str) -> tuple[RunData, dict[str, dict[Item, float]]]:
    """One run's verdicts and the expert labels of its items, exactly as `agree` compares them
    (replicate 0's `ok` verdicts in `RunData.first`; rater -> item -> label). For readers such
    as the report that list the items behind the statistics.

    Raises:
        UserError: no run has this id.
    """
    runs = [r for r in _load_runs(con) if r.run_id == run_id]
    if not runs:
        raise UserError(Problem(Location(None), f"no run {run_id!r}", field="runs", fix="give a run id from the runs table"))
    _load_verdicts(con, runs[0])
    return runs[0], _load_labels(con, runs[0])

# --------------------------------------------------------------------------------------------
# Comparisons: per-sample count tensors and the statistic computed from their weighted sums.

@dataclass
class _Stat:
    meta: dict[str, Any]
    tensors: list[np.ndarray]  # each (samples, K, K)
    compute: Callable[[list[np.ndarray]], np.ndarray]
    n: int


class _Group:
    """The statistics of one comparison family in one group, resampled over its samples."""

    def __init__(self, samples: Sequence[str], domain: Sequence[float]):
        self.samples = sorted(set(samples))
        self.position = {s: i for i, s in enumerate(self.samples)}
        self.domain = list(domain)
        self.index = {v: i for i, v in enumerate(self.domain)}
        self.stats: list[_Stat] = []

    def confusion(self, pairs: Sequence[tuple[str, float, float]]) -> np.ndarray:
        """(samples, K, K) counts of (row value, column value) pairs per sample."""
        k = len(self.domain)
        tensor = np.zeros((len(self.samples), k, k))
        if pairs:
            s, a, b = zip(*pairs, strict=True)
            np.add.at(tensor, ([self.position[x] for x in s], [self.index[x] for x in a], [self.index[x] for x in b]), 1)
        return tensor

    def unit_counts(self, units: Sequence[tuple[str, Sequence[float]]]) -> tuple[np.ndarray, np.ndarray]:
        """(units, K) value counts and each unit's sample position."""
        counts = np.zeros((len(units), len(self.domain)))
        for u, (_, values) in enumerate(units):
            for v in values:
                counts[u, self.index[v]] += 1
        return counts, np.array([self.position[s] for s, _ in units], dtype=int)

    def per_sample(self, contributions: np.ndarray, positions: np.ndarray) -> np.ndarray:
        k = len(self.domain)
        tensor = np.zeros((len(self.samples), k, k))
        np.add.at(tensor, positions, contributions)
        return tensor

    def add(self, meta: dict[str, Any], tensors: list[np.ndarray], compute: Callable[[list[np.ndarray]], np.ndarray], n: int) -> None:
        self.stats.append(_Stat(meta, tensors, compute, n))


def _one(statistic: Callable[[np.ndarray], np.ndarray]) -> Callable[[list[np.ndarray]], np.ndarray]:
    return lambda tensors: statistic(tensors[0])


def _mean_of(statistic: Callable[[np.ndarray], np.ndarray]) -> Callable[[list[np.ndarray]], np.ndarray]:
    """The mean over several comparisons (e.g. raters) of a statistic, leaving out undefined ones."""
    def compute(tensors: list[np.ndarray]) -> np.ndarray:
        return _nanmean(np.stack([statistic(t) for t in tensors]), axis=0)
    return compute


def _nanmean(values: np.ndarray, axis: int) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all undefined: NaN, said by the row's empty value
        return np.nanmean(values, axis=axis)


def _alpha(values: Sequence[float], level: str) -> Callable[[list[np.ndarray]], np.ndarray]:
    return lambda tensors: krippendorff_alpha(tensors[0], values, level)


def _pair_stats(group: _Group, pairs: list[tuple[str, float, float]], meta: dict[str, Any], binary: bool, levels: Sequence[str],
                with_f1: bool = True, with_flip: bool = False, with_base: bool = False) -> None:
    """F1, kappa, base rate, flip rate and alpha of one pair of coders (rows, columns)."""
    tensor = group.confusion(pairs)
    n = len(pairs)
    if binary and with_f1:
        group.add({**meta, "statistic": "balanced_f1"}, [tensor], _one(balanced_f1), n)
    group.add({**meta, "statistic": "cohen_kappa"}, [tensor], _one(cohen_kappa), n)
    if binary and with_base:
        group.add({**meta, "statistic": "base_rate"}, [tensor], _one(base_rate), n)
    if with_flip:
        group.add({**meta, "statistic": "flip_rate"}, [tensor], _one(flip_rate), n)
    if levels:
        # Two coders: each pair is a unit with two values, its coincidences o_ab + o_ba.
        coincidence = tensor + np.swapaxes(tensor, -1, -2)
        for level in levels:
            group.add({**meta, "statistic": "krippendorff_alpha", "level": level}, [coincidence], _alpha(group.domain, level), n)


def _grouped(items: Sequence[Item], run: RunData, by: str) -> dict[str, list[Item]]:
    groups: dict[str, list[Item]] = {}
    for item in sorted(items):
        groups.setdefault(run.group(item, by), []).append(item)
    return groups


def _labels_family(run: RunData, labels: dict[str, dict[Item, float]], by: str) -> list[_Group]:
    binary = not run.scale
    levels = SCALE_LEVELS if run.scale else BINARY_LEVELS
    raters = sorted(labels)
    labelled = {item for per_rater in labels.values() for item in per_rater}
    domain = [0.0, 1.0] if binary else sorted({*(v for r in labels.values() for v in r.values()), *(run.first[i] for i in labelled if i in run.first)})
    out = []
    for name, items in _grouped(labelled, run, by).items():
        group = _Group([s for s, _ in items], domain)
        base = {"run_id": run.run_id, "by": by, "group": name}
        judged = {i: run.first[i] for i in items if i in run.first}
        per_rater = []
        for rater in raters:
            pairs = [(i[0], judged[i], labels[rater][i]) for i in items if i in judged and i in labels[rater]]
            meta = {**base, "compared": f"judge vs rater {rater}", "rater": rater, "with_judge": True}
            _pair_stats(group, pairs, meta, binary, (), with_base=True)
            per_rater.append((pairs, group.confusion(pairs)))
        pooled = sum((t for _, t in per_rater), np.zeros((len(group.samples), len(domain), len(domain))))
        pooled_n = sum(len(p) for p, _ in per_rater)
        tensors = [t for _, t in per_rater]
        for statistic, function in (("balanced_f1", balanced_f1), ("cohen_kappa", cohen_kappa)):
            if statistic == "balanced_f1" and not binary:
                continue
            group.add({**base, "compared": "judge vs raters (pooled pairs)", "with_judge": True, "statistic": statistic}, [pooled], _one(function), pooled_n)
            if len(raters) > 1:
                group.add({**base, "compared": "judge vs raters (mean over raters)", "with_judge": True, "statistic": statistic},
                          tensors, _mean_of(function), pooled_n)
        if len(raters) > 1:
            # The experts' own baseline: each rater graded against the others (HealthBench's
            # physician rows), and the mean of those.
            leave_one_out = []
            for rater in raters:
                pairs = [(i[0], labels[rater][i], labels[other][i]) for other in raters if other != rater
                         for i in items if i in labels[rater] and i in labels[other]]
                tensor = group.confusion(pairs)
                leave_one_out.append((tensor, len(pairs)))
                meta = {**base, "compared": f"rater {rater} vs other raters (leave-one-out)", "rater": rater, "with_judge": False}
                for statistic, function in (("balanced_f1", balanced_f1), ("cohen_kappa", cohen_kappa)):
                    if binary or statistic == "cohen_kappa":
                        group.add({**meta, "statistic": statistic}, [tensor], _one(function), len(pairs))
            for statistic, function in (("balanced_f1", balanced_f1), ("cohen_kappa", cohen_kappa)):
                if binary or statistic == "cohen_kappa":
                    group.add({**base, "compared": "raters (leave-one-out)", "with_judge": False, "statistic": statistic},
                              [t for t, _ in leave_one_out], _mean_of(function), sum(n for _, n in leave_one_out))
        for with_judge in (False, True):
            units = [(i[0], [*(labels[r][i] for r in raters if i in labels[r]), *([judged[i]] if with_judge and i in judged else [])])
                     for i in items]
            counts, positions = group.unit_counts(units)
            if len(raters) < 2 and not with_judge:
                continue
            tensor = group.per_sample(coincidences(counts), positions)
            n = int((counts.sum(axis=1) >= 2).sum())
            for level in levels:
                group.add({**base, "compared": "raters + judge" if with_judge else "raters", "with_judge": with_judge,
                           "statistic": "krippendorff_alpha", "level": level}, [tensor], _alpha(domain, level), n)
        out.append(group)
    return out


def _replicates_family(run: RunData, by: str) -> list[_Group]:
    repeated = {i: v for i, v in run.replicates.items() if len(v) >= 2}
    if not repeated:
        return []
    levels = SCALE_LEVELS if run.scale else BINARY_LEVELS
    domain = [0.0, 1.0] if not run.scale else sorted({v for values in repeated.values() for v in values})
    out = []
    for name, items in _grouped(repeated, run, by).items():
        group = _Group([s for s, _ in items], domain)
        counts, positions = group.unit_counts([(i[0], repeated[i]) for i in items])
        meta = {"run_id": run.run_id, "compared": f"replicates of run {run.run_id}", "by": by, "group": name}
        group.add({**meta, "statistic": "flip_rate"}, [group.per_sample(pair_counts(counts), positions)], _one(flip_rate), len(items))
        tensor = group.per_sample(coincidences(counts), positions)
        for level in levels:
            group.add({**meta, "statistic": "krippendorff_alpha", "level": level}, [tensor], _alpha(domain, level), len(items))
        out.append(group)
    return out


def _runs_family(a: RunData, b: RunData, by: str, probe: bool) -> list[_Group]:
    shared = sorted(set(a.first) & set(b.first))
    domain = [0.0, 1.0] if not a.scale else sorted({*(a.first[i] for i in shared), *(b.first[i] for i in shared)})
    compared = f"probe {b.probe or ''} ({b.run_id}) vs run {a.run_id}".replace("probe  (", "probe (") if probe else f"run {a.run_id} vs run {b.run_id}"
    out = []
    for grouping in (dict.fromkeys(("overall", "dimension", by)) if probe else (by,)):
        for name, items in _grouped(shared, a, grouping).items():
            group = _Group([s for s, _ in items], domain)
            pairs = [(i[0], a.first[i], b.first[i]) for i in items]
            meta = {"run_id": a.run_id, "other_run_id": b.run_id, "compared": compared, "with_judge": True, "by": grouping, "group": name}
            if probe:
                group.add({**meta, "statistic": "flip_rate"}, [group.confusion(pairs)], _one(flip_rate), len(pairs))
            else:
                _pair_stats(group, pairs, meta, not a.scale, SCALE_LEVELS if a.scale else BINARY_LEVELS, with_flip=True)
            out.append(group)
    return out


# --------------------------------------------------------------------------------------------
# Resampling and the rows.

def _draws(con, options: Bootstrap, n: int, cache: dict[int, np.ndarray]) -> np.ndarray:
    """(resamples, n) multiplicities: how often each of n samples (sorted by sample_id) is drawn
    in each resample, from stats.sql's `_bootstrap_pick` (leaderboard_ci's draws)."""
    if n not in cache:
        positions = con.execute("SELECT _bootstrap_pick(?, r.b, j.j, ?) AS pos FROM range(?) r(b), range(?) j(j) ORDER BY r.b, j.j",
                                [options.seed, n, options.resamples, n]).fetchnumpy()["pos"]
        flat = np.repeat(np.arange(options.resamples), n) * n + np.asarray(positions, dtype=np.int64)
        cache[n] = np.bincount(flat, minlength=options.resamples * n).reshape(options.resamples, n).astype(float)
    return cache[n]


def _rows(con, groups: list[_Group], options: Bootstrap) -> list[dict[str, Any]]:
    cache: dict[int, np.ndarray] = {}
    quantiles = [(1 - options.level) / 2, (1 + options.level) / 2]
    rows = []
    for group in groups:
        size = len(group.samples)
        weights = _draws(con, options, size, cache) if size else np.zeros((0, 0))
        for stat in group.stats:
            point = float(stat.compute([t.sum(axis=0)[None] for t in stat.tensors])[0]) if stat.n else float("nan")
            low = high = None
            if stat.n and size:
                resampled = stat.compute([(weights @ t.reshape(size, -1)).reshape(-1, *t.shape[1:]) for t in stat.tensors])
                resampled = resampled[~np.isnan(resampled)]
                if resampled.size:
                    low, high = (float(x) for x in np.quantile(resampled, quantiles))
            rows.append({**{c: None for c in COLUMNS}, **stat.meta, "value": None if np.isnan(point) else point, "ci_low": low, "ci_high": high,
                         "n": stat.n, "samples": size, "resamples": options.resamples, "seed": options.seed, "ci_level": options.level})
    return rows


def compute(con, runs: Sequence[str] | None = None, by: str = "overall", options: Bootstrap | None = None,
            labels_only: bool = False) -> tuple[list[dict[str, Any]], list[RunData]]:
    """Every agreement row for the chosen runs (see `agree`), and the runs analysed."""
    from rubric_judge.store.stats import Bootstrap

    options = options or Bootstrap()
    if by not in BY:
        raise UserError(Problem(Location(None), f"must be one of {', '.join(BY)}, not {by!r}", field="by", fix="e.g. --by dimension"))
    everything = _load_runs(con)
    chosen = _choose(everything, runs)
    for run in everything:
        _load_verdicts(con, run)
    groups: list[_Group] = []
    labelled = False
    for run in chosen:
        labels = _load_labels(con, run)
        if labels:
            labelled = True
            groups += _labels_family(run, labels, by)
        if labels_only:
            continue
        groups += _replicates_family(run, by)
        for probe in (r for r in everything if r.role == "probe" and r.parent_run_id == run.run_id):
            groups += _runs_family(run, probe, by, probe=True)
        # A judge panel: its members against each other (and, with labels, each against the experts).
        members = [r for r in everything if r.role == "panel_member" and r.parent_run_id == run.run_id]
        for member in members:
            member_labels = _load_labels(con, member)
            if member_labels:
                groups += _labels_family(member, member_labels, by)
        for a, b in combinations(members, 2):
            groups += _runs_family(a, b, by, probe=False)
    if labels_only and not labelled:
        raise UserError(Problem(Location(None), "no expert labels match the runs' samples and criteria (or dimensions)", field="labels",
                                fix="import them with `rubric-judge labels import FILE`; check their sample ids, criterion ids and --rubric"))
    if not labels_only:
        for a, b in combinations(chosen, 2):
            if a.scale != b.scale:
                raise UserError(Problem(Location(None), f"runs {a.run_id} and {b.run_id} cannot be compared: one is judged on a scale, the other met/not met",
                                        fix="compare runs of the same rubric"))
            groups += _runs_family(a, b, by, probe=False)
    return _rows(con, groups, options), chosen


def _choose(runs: list[RunData], named: Sequence[str] | None) -> list[RunData]:
    judged = [r for r in runs if r.role not in ("probe", "panel_member")]
    if not named:
        if len(judged) == 1:
            return judged
        listing = "; ".join(r.describe() for r in judged) or "none"
        raise UserError(Problem(Location(None), f"{len(judged)} judged runs in the database ({listing})", field="runs",
                                fix="name the runs to analyse by run id (or model name): rubric-judge agree RUN [RUN ...]"))
    chosen = []
    for name in named:
        matches = [r for r in runs if r.run_id == name] or [r for r in judged if name in (r.model_name, r.judge_model) or r.run_id.startswith(name)]
        if len(matches) != 1:
            listing = "; ".join(r.describe() for r in (matches or judged)) or "none"
            raise UserError(Problem(Location(None), f"{name!r} names {'no run' if not matches else f'{len(matches)} runs'} ({listing})", field="runs",
                                    fix="give a run id (rubric-judge query \"SELECT run_id, model_name, judge_model FROM runs\")"))
        if matches[0] not in chosen:
            chosen.append(matches[0])
    return chosen


def store_rows(con, rows: list[dict[str, Any]], runs: Sequence[RunData]) -> None:
    """Replace the stored rows of these runs (and groupings) with `rows`, in one transaction."""
    columns = [*COLUMNS, "computed_at"]
    now = datetime.now(UTC).replace(tzinfo=None)
    quoted = ", ".join(f'"{c}"' for c in columns)
    con.execute("BEGIN TRANSACTION")
    try:
        groupings = sorted({r["by"] for r in rows})
        ids = [r.run_id for r in runs]
        if ids and groupings:
            con.execute(f'DELETE FROM agreement_results WHERE run_id IN ({", ".join("?" * len(ids))}) AND "by" IN ({", ".join("?" * len(groupings))})',
                        [*ids, *groupings])
        if rows:
            values = [[row.get(c) for row in rows] for c in COLUMNS] + [[now] * len(rows)]
            con.execute(f"INSERT INTO agreement_results ({quoted}) SELECT {', '.join(f'unnest(${i + 1})' for i in range(len(columns)))}", values)
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def agree(db: str | Path, runs: Sequence[str] | None = None, by: str = "overall", resamples: int = 1000, seed: int = 0,
          level: float = 0.95, labels_only: bool = False, store: bool = True) -> pandas.DataFrame:
    """How far to trust the judge: agreement with expert labels, other runs, itself and its probes.

    Args:
        db: the results database.
        runs: run ids (or model / judge names that name one run); None: the database's only
            judged run. Two or more runs are also compared with each other.
        by: grouping of the items: overall | dimension | criterion | category (probe flip
            rates always come overall and per dimension too).
        resamples, seed, level: the percentile bootstrap over samples (leaderboard_ci's draws).
        labels_only: only the judge-vs-expert statistics (`--labels`); an error when no labels apply.
        store: also write the rows to the `agreement_results` table (replacing those of the
            same runs and groupings), so SQL can reach them.

    Returns:
        One row per statistic with the columns of `COLUMNS`: what was compared (`compared`,
        `rater`, `other_run_id`, `with_judge`), `statistic` (balanced_f1, cohen_kappa,
        krippendorff_alpha with `level` nominal|ordinal|interval, flip_rate, base_rate),
        `value` with `ci_low`/`ci_high`, `n` items compared and `samples` resampled, and the
        grouping `by`/`group`.

    Raises:
        UserError: unknown runs or grouping, bad bootstrap options, no labels with labels_only.
    """
    import pandas

    from rubric_judge.store.db import StorageError, connect
    from rubric_judge.store.stats import Bootstrap

    options = Bootstrap(resamples, seed, level)
    path = Path(db)
    if not path.exists():
        raise UserError(Problem(Location(path), "the database does not exist", fix="run `rubric-judge score` first, or pass the right --db"))
    con = connect(path, read_only=not store, external_access=False)
    try:
        rows, chosen = compute(con, runs, by, options, labels_only)
        if store:
            import duckdb

            try:
                store_rows(con, rows, chosen)
            except (duckdb.IOException, duckdb.TransactionException, duckdb.PermissionException, OSError) as exc:
                raise StorageError(Problem(Location(path), f"cannot store the agreement rows: {exc}", fix="pass store=False (--no-store)")) from None
    finally:
        con.close()
    return pandas.DataFrame(rows, columns=list(COLUMNS))
