"""Every scored item into the results database as a serve run, off the request path.

A background thread owns the DuckDB connection: items are handed over through a queue (never
waited on by a response) and written in batches (one `write_samples` + `write_outcomes` per run and batch, as
`score` writes them). Each rubric gets one run per server start, named `--model` (default
`serve-<start time>`), role `run`, so `leaderboard`, `query` and `report` show training-time
rewards like any run. The runs end `finished` when the server stops. DuckDB lets one process
hold a file open for writing, so read the database after stopping the server (or give the
server a --db of its own).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rubric_judge.redaction import redact

if TYPE_CHECKING:
    from rubric_judge.judge.executor import Outcome
    from rubric_judge.planning.compile import SamplePlan
    from rubric_judge.rubrics.schema import Rubric

LOG = logging.getLogger("rubric_judge.serve")
# DuckDB's cost per write is mostly fixed (~50 ms of CPU for a batch's two transactions on a
# small machine), so larger batches cost far less per item: 3.4 ms an item in batches of 16,
# 0.7 ms in batches of 256, 0.5 ms in batches of 1024. An item waits at most BATCH_SECONDS
# (lost on a crash; its verdicts are in the cache already).
BATCH_ITEMS = 2048
BATCH_SECONDS = 2.0


@dataclass
class RunLog:
    """Writes scored items to `db` on a thread of its own; `errors` counts failed writes."""

    db: Path
    model_name: str
    judge_model: str
    api_base: str | None
    config: dict[str, Any]
    errors: int = 0
    written: int = 0
    _queue: queue.Queue = field(default_factory=queue.Queue)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._work, name="rubric-judge-serve-log", daemon=True)
        self._thread.start()

    def add(self, base: Rubric, plan: SamplePlan, outcomes: list[Outcome]) -> None:
        """Queue one scored item (never blocks)."""
        self._queue.put((base, plan, outcomes))

    def close(self, timeout: float = 30.0) -> None:
        """Write what is queued, mark the runs finished and close the database."""
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join(timeout)

    def _work(self) -> None:
        from rubric_judge.store.db import ResultStore, RunInfo

        store = None
        runs: dict[tuple[str, str], str] = {}
        try:  # now, not with the first item: opening (and migrating) takes a while
            store = ResultStore(self.db)
        except Exception as exc:  # retried with the first batch; the error is counted there
            LOG.warning(redact(f"cannot open {self.db} yet: {exc}"))
        done = False
        while not done:
            batch, done = self._next_batch()
            try:
                if not batch:
                    continue
                if store is None:
                    store = ResultStore(self.db)
                # One write_samples and one write_outcomes per run and batch, as `score` writes a
                # run: DuckDB's cost is per statement and transaction far more than per row, and
                # writing item by item took more CPU than everything else the server does.
                by_run: dict[str, tuple[list[Any], list[Any]]] = {}
                for base, plan, outcomes in batch:
                    key = (base.rubric, str(base.version))
                    if key not in runs:
                        runs[key] = store.begin_run(RunInfo(base, self.model_name, self.judge_model, self.api_base, self.config))
                    plans, run_outcomes = by_run.setdefault(runs[key], ([], []))
                    plans.append(plan)
                    run_outcomes.extend(outcomes)
                for run_id, (plans, run_outcomes) in by_run.items():
                    store.write_samples(run_id, plans, 1)
                    if run_outcomes:
                        store.write_outcomes(run_id, run_outcomes)
                    self.written += len(plans)
            except Exception as exc:  # a full disk must not stop the rewards; the verdict cache keeps the answers
                self.errors += 1
                LOG.error(redact(f"cannot log {len(batch)} scored item(s) to {self.db}: {exc}"))
        if store is not None:
            try:
                for run_id in runs.values():
                    store.finish_run(run_id, "finished")
                store.close()
            except Exception as exc:
                self.errors += 1
                LOG.error(redact(f"cannot finish the serve runs in {self.db}: {exc}"))

    def _next_batch(self) -> tuple[list[tuple[Any, Any, Any]], bool]:
        """The items queued next: waits for one, then takes more until BATCH_ITEMS or until
        BATCH_SECONDS have passed since the first; (items, whether close() was asked for)."""
        batch: list[tuple[Any, Any, Any]] = []
        item = self._queue.get()
        flush_at = time.monotonic() + BATCH_SECONDS
        while item is not None:
            batch.append(item)
            if len(batch) >= BATCH_ITEMS:
                return batch, False
            try:
                item = self._queue.get(timeout=max(0.0, flush_at - time.monotonic()))
            except queue.Empty:
                return batch, False
        return batch, True
