"""The score command's terminal view: renders the library's progress events with rich.

`score()` reports what it does through one callback (see `rubric_judge.run` for the events);
this is the callback the CLI passes. A notebook passes its own, or none.
"""

from __future__ import annotations

from typing import Any

from rubric_judge.cli.output import stdout
from rubric_judge.run import BatchUpdate, CallsProgress, JudgeChosen, MetricsProgress, Planned, ScoreEvent, SubRun


class RichProgress:
    """Prints the judge line and the plan, then draws judging and metrics bars until closed."""

    def __init__(self) -> None:
        self._bar: Any = None
        self._judging: Any = None
        self._metrics: Any = None
        self._batch_states: dict[str, tuple] = {}
        self._batch_bar: Any = None  # requests done of each batch while `score --batch --wait` polls (a terminal only)
        self._batch_tasks: dict[str, Any] = {}

    def __call__(self, event: ScoreEvent) -> None:
        from rich.markup import escape

        if isinstance(event, SubRun):
            self.close()  # the previous run's bars stay on screen as they ended
            heading = f"Panel member {event.index}/{event.count}: {escape(event.label)}" if event.role == "panel_member" else (
                f"Probe {escape(event.label)}: the same calls again, images in the opposite order")
            stdout.print(f"[bold]{heading}[/]")
        elif isinstance(event, JudgeChosen):
            if event.offline:
                stdout.print("[bold yellow]Judge: the built-in OFFLINE judge[/] - deterministic image similarity, NOT a vision-language model; "
                             "for demos and tests only.")
            else:
                stdout.print(f"Judge: [bold]{escape(event.model)}[/]" + (f" at {escape(event.api_base)}" if event.api_base else "")
                             + f" [dim](transport: {event.transport})[/]")
        elif isinstance(event, Planned):
            # Planning streams into judging: the bar opens with the first calls and its total grows
            # until the complete plan's counts arrive, which are printed then.
            if self._bar is None:
                self._open(event)
            else:
                self._bar.update(self._judging, total=event.calls)
            if event.complete:
                cost = (f", estimated ${event.estimated_cost_usd:.4f}" + (" (batch price)" if event.batch_price else "")
                        if event.estimated_cost_usd is not None else "")
                self._bar.console.print(f"{event.calls} judge calls ({event.cached} cached), {event.samples} samples{cost}")
        elif isinstance(event, CallsProgress) and self._bar is not None:
            cost = f"${event.cost_usd:.4f}" + ("+?" if event.cost_unknown else "")
            stats = f"hits {event.cache_hits}  errors {event.errors}  tokens {event.tokens:,}  {cost}"
            self._bar.update(self._judging, completed=event.done, stats=stats)
        elif isinstance(event, BatchUpdate):
            # One line per submission and per change of a batch's state, not per poll.
            for record in event.batches:
                seen = (record.status, record.completed_count, record.failed_count)
                if record.batch_id in event.submitted or self._batch_states.get(record.batch_id) != seen:
                    self._batch_states[record.batch_id] = seen
                    verb = "submitted" if record.batch_id in event.submitted else record.status
                    stdout.print(f"batch {escape(record.batch_id)}: {verb}, {record.request_count} requests "
                                 f"({record.completed_count} done, {record.failed_count} failed)")
            self._draw_batches(event)
        elif isinstance(event, MetricsProgress) and self._bar is not None and self._metrics is not None:
            self._bar.update(self._metrics, completed=event.done)

    def _draw_batches(self, event: BatchUpdate) -> None:
        """A bar per batch (requests completed and failed of its total, its state), drawn only on
        a terminal: elsewhere the state lines above are the whole record."""
        if not stdout.is_terminal:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        if self._batch_bar is None:
            self._batch_bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[stats]}"),
                                       TimeElapsedColumn(), console=stdout, transient=False)
            self._batch_bar.start()
        for record in event.batches:
            stats = f"{record.status}  ok {record.completed_count}  failed {record.failed_count}"
            total = record.request_count or len(record.custom_ids)
            if record.batch_id not in self._batch_tasks:
                self._batch_tasks[record.batch_id] = self._batch_bar.add_task(f"batch {record.batch_id}", total=total, stats=stats)
            self._batch_bar.update(self._batch_tasks[record.batch_id], total=total, completed=record.completed_count + record.failed_count, stats=stats)
        if all(record.terminal for record in event.batches):
            self._batch_bar.stop()
            self._batch_bar, self._batch_tasks = None, {}

    def _open(self, planned: Planned) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self._bar = Progress(TextColumn("{task.description:8s}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[stats]}"),
                             TimeElapsedColumn(), TimeRemainingColumn(), console=stdout, transient=False)
        self._bar.start()
        self._judging = self._bar.add_task("judging", total=planned.calls, stats="")
        if planned.metric_groups:
            self._metrics = self._bar.add_task("metrics", total=planned.metric_groups, completed=planned.metric_groups_done, stats="metric groups")

    def close(self) -> None:
        """Stop drawing (the bars stay on screen as they last were)."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        if self._batch_bar is not None:
            self._batch_bar.stop()
            self._batch_bar, self._batch_tasks = None, {}

    def __enter__(self) -> RichProgress:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
