"""A judge panel's verdicts: each criterion's member verdicts combined by one rule.

The members' runs hold what each judge answered (their calls, verdicts and costs); the panel
run holds only the combined verdicts, so every score view reads it like any other run.

Rules, per (sample, criterion, replicate):

* Only members with a valid verdict (`ok`) vote; a member whose call failed or answered
  invalidly (`error`, `unscored`) or never ran (a stopped run) is left out. With no voting
  member the panel verdict is `unscored`, which the rubric's `unscored` policy then scores.
* A criterion with no model output is `missing_output` for every member, and for the panel.
* majority: binary met when more voters say met than not met; a tie is `unscored` (the panel
  could not decide); scale: the median of the voters' scores (the mean of the two middle
  ones for an even number).
* mean: binary met when the share of voters saying met is >= 0.5 (so a tie is met); scale:
  the mean of the voters' scores.
* min: binary met only when every voter says met; scale: the lowest score.

A binary panel verdict's confidence is the share of voters that agree with it.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rubric_judge.store.db import ResultStore

PANEL_RULES = ("majority", "mean", "min")


@dataclass(frozen=True)
class MemberVerdict:
    """One member judge's verdict on one criterion."""

    judge: str
    status: str  # ok | error | unscored | missing_output
    met: bool | None
    score: float | None


@dataclass(frozen=True)
class PanelVerdict:
    status: str  # ok | unscored | missing_output
    met: bool | None
    score: float | None
    confidence: float | None
    reasoning: str


def panel_label(rule: str, judges: Sequence[str]) -> str:
    """The panel's name where a judge model is shown, e.g. `panel:majority(a,b,c)`."""
    return f"panel:{rule}({','.join(judges)})"


def combine(rule: str, kind: str, members: Sequence[MemberVerdict]) -> PanelVerdict:
    """The panel verdict of one criterion under `rule` (see the module docstring).

    Args:
        rule: majority | mean | min.
        kind: the rubric's verdict kind, binary | scale.
        members: every member's verdict (members without one may be left out).

    Returns:
        The combined verdict, with a reasoning that lists each member's vote.
    """
    if rule not in PANEL_RULES:
        raise ValueError(f"unknown panel rule {rule!r}")
    votes = ", ".join(f"{m.judge}: {_vote(m, kind)}" for m in members)
    if members and all(m.status == "missing_output" for m in members):
        return PanelVerdict("missing_output", None, None, None, "no model output")
    voters = [m for m in members if m.status == "ok"]
    if not voters:
        return PanelVerdict("unscored", None, None, None, f"{rule}: no member gave a valid verdict ({votes})")
    reasoning = f"{rule} of {len(voters)}: {votes}"
    if kind == "scale":
        scores = [float(m.score) for m in voters if m.score is not None]
        if not scores:
            return PanelVerdict("unscored", None, None, None, reasoning)
        value = statistics.median(scores) if rule == "majority" else statistics.fmean(scores) if rule == "mean" else min(scores)
        return PanelVerdict("ok", None, value, None, reasoning)
    said_met = sum(bool(m.met) for m in voters)
    said_not = len(voters) - said_met
    if rule == "majority":
        if said_met == said_not:
            return PanelVerdict("unscored", None, None, None, f"{reasoning}; a tie")
        met = said_met > said_not
    elif rule == "mean":
        met = said_met / len(voters) >= 0.5
    else:
        met = said_not == 0
    agreeing = said_met if met else said_not
    return PanelVerdict("ok", met, None, agreeing / len(voters), reasoning)


def _vote(member: MemberVerdict, kind: str) -> str:
    if member.status != "ok":
        return member.status
    if kind == "scale":
        return "-" if member.score is None else f"{member.score:g}"
    return "met" if member.met else "not met"


def write_panel_verdicts(store: ResultStore, panel_run_id: str, members: Sequence[tuple[str, str]], rule: str, kind: str) -> int:
    """Combine the member runs' verdicts into the panel run's verdicts.

    Args:
        store: the open results store (the member runs are written).
        panel_run_id: the panel's run, begun, with its samples written.
        members: (run id, judge model) of each member, in panel order.
        rule: majority | mean | min.
        kind: the rubric's verdict kind.

    Returns:
        The number of verdicts written.
    """
    judge_of = dict(members)
    placeholders = ", ".join("?" * len(members))
    rows = store.con.execute(
        "SELECT run_id, sample_id, criterion_id, replicate, dimension, weight, status, met, score FROM verdicts "
        f"WHERE run_id IN ({placeholders}) ORDER BY sample_id, criterion_id, replicate", [run_id for run_id, _ in members]).fetchall()
    grouped: dict[tuple[str, str, int], list[Any]] = defaultdict(list)
    shape: dict[tuple[str, str, int], tuple[str, float]] = {}
    for run_id, sample_id, criterion_id, replicate, dimension, weight, status, met, score in rows:
        key = (sample_id, criterion_id, replicate)
        grouped[key].append(MemberVerdict(judge_of[run_id], status, met, score))
        shape[key] = (dimension, weight)
    verdicts = []
    for key, votes in grouped.items():
        order = {judge: i for i, (_, judge) in enumerate(members)}
        verdict = combine(rule, kind, sorted(votes, key=lambda m: order[m.judge]))
        dimension, weight = shape[key]
        verdicts.append([panel_run_id, key[0], key[1], key[2], dimension, weight, verdict.met, verdict.score, verdict.confidence,
                         verdict.reasoning, verdict.status, None])
    with store._writing("write the panel's verdicts"), store._transaction():
        store._insert("verdicts", verdicts)
    return len(verdicts)


def copy_rows(store: ResultStore, from_run_id: str, to_run_id: str, tables: Sequence[str] = ("samples", "criteria", "run_fields", "metric_values")) -> None:
    """Give the panel run one member's rows of what does not depend on the judge: the samples,
    the criteria judged, the judge's image fields and the metric values."""
    from rubric_judge.store.db import COLUMNS

    with store._writing("write the panel's samples"), store._transaction():
        for table in tables:
            names = COLUMNS[table]  # run_id first
            store.con.execute(f"INSERT OR REPLACE INTO {table} ({', '.join(names)}) SELECT ?, {', '.join(names[1:])} FROM {table} "
                              "WHERE run_id = ?", [to_run_id, from_run_id])
