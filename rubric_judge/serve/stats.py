"""The server's counters, and their Prometheus text exposition (format 0.0.4)."""

from __future__ import annotations

import threading
from collections import Counter, deque
from dataclasses import dataclass, field

QUANTILES = (0.5, 0.9, 0.99)
WINDOW = 10_000  # latencies kept for the quantiles: the most recent items


@dataclass
class ServeStats:
    requests: Counter = field(default_factory=Counter)  # endpoint -> requests
    items: Counter = field(default_factory=Counter)  # status -> items
    cached_items: int = 0
    latencies: deque = field(default_factory=lambda: deque(maxlen=WINDOW))
    latency_sum: float = 0.0
    latency_count: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def request(self, endpoint: str) -> None:
        with self._lock:
            self.requests[endpoint] += 1

    def item(self, status: str, cached: bool, seconds: float) -> None:
        with self._lock:
            self.items[status] += 1
            self.cached_items += cached
            self.latencies.append(seconds)
            self.latency_sum += seconds
            self.latency_count += 1

    def quantiles(self) -> dict[float, float]:
        with self._lock:
            values = sorted(self.latencies)
        if not values:
            return {}
        return {q: values[min(len(values) - 1, int(q * len(values)))] for q in QUANTILES}

    def prometheus(self, calls: int, cache_hits: int, call_errors: int, in_flight: int, log_errors: int) -> str:
        """The counters as Prometheus text; judge totals come from the judging loop's progress."""
        lines = []

        def metric(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
            lines.append(f"# HELP rubric_judge_serve_{name} {help_text}")
            lines.append(f"# TYPE rubric_judge_serve_{name} {kind}")
            lines.extend(f"rubric_judge_serve_{name}{labels} {value:g}" for labels, value in samples)

        with self._lock:
            requests = sorted(self.requests.items())
            items = sorted(self.items.items())
            cached, total, count = self.cached_items, self.latency_sum, self.latency_count
        metric("requests_total", "counter", "HTTP requests, by endpoint.", [(f'{{endpoint="{e}"}}', n) for e, n in requests])
        metric("items_total", "counter", "Items scored, by status (ok, partial, or why the fallback was given).",
               [(f'{{status="{s}"}}', n) for s, n in items])
        metric("items_cached_total", "counter", "Items answered entirely from the verdict cache.", [("", cached)])
        metric("judge_calls_total", "counter", "Judge calls finished (cache hits included).", [("", calls)])
        metric("cache_hits_total", "counter", "Judge calls answered from the verdict cache.", [("", cache_hits)])
        metric("judge_errors_total", "counter", "Judge calls without a valid answer (error or unscored).", [("", call_errors)])
        metric("log_errors_total", "counter", "Failed writes of scored items to the results database.", [("", log_errors)])
        metric("calls_in_flight", "gauge", "Distinct judge calls waiting or being judged.", [("", in_flight)])
        quantiles = self.quantiles()
        metric("item_latency_seconds", "summary", "Seconds from a request's arrival to an item's reward.",
               [(f'{{quantile="{q}"}}', v) for q, v in quantiles.items()])
        lines.append(f"rubric_judge_serve_item_latency_seconds_sum {total:g}")
        lines.append(f"rubric_judge_serve_item_latency_seconds_count {count}")
        return "\n".join(lines) + "\n"
