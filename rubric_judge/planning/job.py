"""What one run judges: the rubric set, and the dataset samples bound to the rubrics' inputs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rubric_judge.errors import Location, Problem, UserError
from rubric_judge.planning.samples import Sample, load_samples
from rubric_judge.rubrics.loader import load_rubric_set
from rubric_judge.rubrics.schema import InputSpec, Rubric


@dataclass(frozen=True)
class Job:
    rubrics: tuple[Rubric, ...]
    samples: tuple[Sample, ...]

    @property
    def rubric_id(self) -> str:
        return self.rubrics[0].rubric

    @property
    def rubric_version(self) -> str:
        return str(self.rubrics[0].version)


def load_job(rubric_path: Path, data: Path, outputs: Path | None) -> Job:
    rubrics = load_rubric_set(rubric_path)
    identities = {(r.rubric, str(r.version)) for r in rubrics}
    if len(identities) > 1:
        listing = ", ".join(f"{i}@{v}" for i, v in sorted(identities))
        raise UserError(Problem(Location(rubric_path), f"the rubric files belong to different rubrics: {listing}", fix="score one rubric (a base and its task files) per run"))
    inputs: dict[str, InputSpec] = {}
    output_fields: list[str] = []
    for rubric in rubrics:
        inputs.update(rubric.inputs)
        output_fields.extend(f for f in rubric.outputs if f not in output_fields)
    # Which samples are missing outputs is decided once, for the whole manifest.
    required = rubrics[0].required_outputs
    if any(rubric.required_outputs != required for rubric in rubrics):
        raise UserError(Problem(Location(rubric_path), "the rubric files give different `required_outputs`", field="required_outputs",
                                fix="set `required_outputs` in the base rubric only, so that every task rubric inherits it"))
    samples = load_samples(data, outputs, inputs, output_fields, required)
    return Job(tuple(rubrics), tuple(samples))

