"""Every scored item into the results database as a serve run, off the request path.

A background thread owns the DuckDB connection: items are handed over through a queue (never
waited on by a response) and written in batches (`write_samples` + `write_outcomes`, as `score`
writes them). Each rubric gets one run per server start, named `--model` (default
`serve-<start time>`), role `run`, so `leaderboard`, `query` and `report` show training-time
rewards like any run. The runs end `finished` when the server stops. DuckDB lets one process
hold a file open for writing, so read the database after stopping the server (or give the
server a --db of its own).
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rubric_judge.redaction import redact

if TYPE_CHECKING:
    from rubric_judge.judge.executor import Outcome
    from rubric_judge.planning.compile import SamplePlan
    from rubric_judge.rubrics.schema import Rubric

LOG = logging.getLogger("rubric_judge.serve")
BATCH_ITEMS = 64
BATCH_SECONDS = 1.0


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
        done = False
        while not done:
            batch: list[tuple[Any, Any, Any]] = []
            try:
                item = self._queue.get()
                while item is not None:
                    batch.append(item)
                    if len(batch) >= BATCH_ITEMS:
                        break
                    try:
                        item = self._queue.get(timeout=BATCH_SECONDS)
                    except queue.Empty:
                        break
                done = item is None
                if store is None:
                    store = ResultStore(self.db)
                for base, plan, outcomes in batch:
                    key = (base.rubric, str(base.version))
                    if key not in runs:
                        runs[key] = store.begin_run(RunInfo(base, self.model_name, self.judge_model, self.api_base, self.config))
                    run_id = runs[key]
                    store.write_samples(run_id, [plan], 1)
                    if outcomes:
                        store.write_outcomes(run_id, outcomes)
                    self.written += 1
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
