"""Choosing some of a manifest's samples: `score --limit N` / `--sample ID` and `preview --sample ID`.

A selection keeps the manifest's order. Task rubrics (`task: <id>`) whose sample is not selected
are left out with it, so trying a directory of task rubrics on two samples does not report the
other tasks as "matching no sample".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from rubric_judge.errors import Location, Problem, UserError
from rubric_judge.planning.job import Job


@dataclass(frozen=True)
class SampleSelection:
    """Which samples of a manifest a run scores.

    Attributes:
        limit: `--limit N` (the first N samples, after `ids`), or None.
        ids: `--sample ID` values, in the order given, without repeats.
        chosen: the ids selected, in manifest order.
        manifest_samples: how many samples the manifest holds.
        suite: every rubric loaded, before the task rubrics of samples left out were dropped: what
            the run's rubric digest is computed over, so trying a suite on two samples neither
            replaces nor supersedes a full run of the same rubric content.
    """

    limit: int | None
    ids: tuple[str, ...]
    chosen: tuple[str, ...]
    manifest_samples: int
    suite: tuple = ()

    @property
    def partial(self) -> bool:
        """Whether the selection leaves samples of the manifest out (the run is then partial)."""
        return len(self.chosen) < self.manifest_samples

    def describe(self) -> str:
        """The selection in words, naming the options that made it, e.g.
        "the first 2 of 6 samples (--limit 2)"."""
        options = [f"--sample {i}" for i in self.ids] + ([f"--limit {self.limit}"] if self.limit is not None else [])
        how = "the first " if not self.ids else ""
        return f"{how}{len(self.chosen)} of {self.manifest_samples} samples ({' '.join(options)})"


def select_samples(job: Job, data: Path, limit: int | None = None, ids: Sequence[str] = ()) -> tuple[Job, SampleSelection]:
    """The job restricted to the samples asked for: `ids` (any order, repeats ignored) and then the
    first `limit` of those, both in manifest order.

    Args:
        job: the loaded job (every sample of the manifest).
        data: the manifest, named in errors.
        limit: keep at most this many samples (at least 1); None for no limit.
        ids: sample ids to keep; empty keeps every sample.

    Returns:
        The restricted job (task rubrics of samples left out are dropped) and the selection.

    Raises:
        UserError: a limit below 1, or an id the manifest does not have (exit 2; the problem lists
            some ids it does have).
    """
    wanted = tuple(dict.fromkeys(ids))
    if limit is not None and limit < 1:
        raise UserError(Problem(Location(None), f"must be at least 1, not {limit}", field="limit", fix="give the number of samples to score"))
    known = [sample.id for sample in job.samples]
    unknown = [i for i in wanted if i not in set(known)]
    if unknown:
        listing = ", ".join(known[:10]) + (f", ... ({len(known)} in all)" if len(known) > 10 else "")
        raise UserError(Problem(Location(Path(data)), f"no sample with id {', '.join(map(repr, unknown))} in the manifest",
                                field="sample", fix=f"use an id from the manifest: {listing}"))
    samples = [s for s in job.samples if s.id in set(wanted)] if wanted else list(job.samples)
    if limit is not None:
        samples = samples[:limit]
    selection = SampleSelection(limit, wanted, tuple(s.id for s in samples), len(job.samples), tuple(job.rubrics))
    if not selection.partial:
        return job, selection
    # A task rubric applies to the sample named by its `task` (the id, or the id's file stem).
    keys = {s.id for s in samples} | {Path(s.id).stem for s in samples}
    rubrics = tuple(r for r in job.rubrics if r.task is None or r.task in keys)
    return replace(job, rubrics=rubrics, samples=tuple(samples)), selection
