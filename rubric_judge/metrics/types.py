"""Types shared by the metric implementations: what one metric value is, with its status."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

MetricStatus = Literal["ok", "error", "unavailable", "missing_output"]


@dataclass(frozen=True)
class MetricValue:
    """One metric for one sample. `value` is None unless status is "ok"; `detail` says why."""

    value: float | None
    status: MetricStatus
    detail: str = ""


class MetricUnavailable(Exception):
    """A metric cannot run at all here (weights absent offline, package missing); the message
    names what is missing and how to provide it."""
