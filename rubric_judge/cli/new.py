"""`rubric-judge new`: write a commented rubric scaffold that validates as it stands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

SCAFFOLD = '''\
# {name}: a rubric for rubric-judge. Every key is explained; `rubric-judge validate {file}`
# checks it, `rubric-judge plan {file} --data MANIFEST` shows what judging would cost.
rubric: {name}                 # id; with `version` it is part of every cache key
version: 1                     # bump to re-judge everything after changing the prompt
description: What this rubric judges, in one sentence.
# extends: builtin:illugenbench/base.yaml   # inherit a rubric; criteria append, other keys override

judge:
  model: openai/gpt-4.1        # any litellm model string; `--judge` overrides it
  temperature: 0
  mode: per_dimension          # per_criterion | per_dimension | per_sample: criteria per call

inputs:                        # what each sample provides; `?` marks an optional input
  prompt: text
  reference_image: image?
  generated_image: image
outputs: [generated_image]     # inputs produced by the model under test (may be missing)

images:                        # the order and labels the judge sees
  - {{field: reference_image, label: "Reference"}}
  - {{field: generated_image, label: "Generated", strip: false}}   # strip: draw the label under the image

verdict: binary                # binary | scale(1..10)

dimensions:                    # each criterion belongs to one; `when` limits a dimension to some samples
  - id: accuracy
    description: The content is medically correct.
  - id: alignment
    description: The output shows what the prompt asked for.

criteria:                      # weight > 0: should be present; weight < 0: must NOT be present
  - {{id: accuracy-1, dimension: accuracy, weight: 5, text: "The anatomy shown is correct."}}
  - {{id: accuracy-2, dimension: accuracy, weight: -3, text: "The image contains garbled or misspelt labels."}}
  - {{id: alignment-1, dimension: alignment, weight: 1, text: "The image shows the structure named in the prompt."}}

# Sandboxed Jinja2. Available: every input (images appear as their label), criteria (id, text,
# weight, dimension, number), dimension (id, name, description; none in per_sample mode),
# verdict (kind, min, max), rubric (id, version, description), sample_id, images (labels).
prompt: |
  The model was asked: "{{{{ prompt }}}}"
  Judge {{{{ generated_image }}}}{{% if dimension %}} on {{{{ dimension.name }}}}{{% endif %}}.
  For a criterion with a negative weight, report whether the described problem IS present.
  {{% for c in criteria -%}}
  {{{{ c.number }}}}. [{{{{ c.id }}}}] (weight {{{{ c.weight }}}}) {{{{ c.text }}}}
  {{% endfor %}}

scoring:
  method: weighted_points      # weighted_points | mean_scale | pass_rate
  missing_output: fail         # fail: a missing output scores 0 on positive criteria; skip: leave it out
'''


def command(
    name: Annotated[str, typer.Argument(help="Rubric id, e.g. `my-lab/chest-xray`; also the file name unless --out is given.")],
    out: Annotated[Path | None, typer.Option(help="Where to write the scaffold (default: NAME.yaml in the current directory).")] = None,
    force: Annotated[bool, typer.Option(help="Overwrite an existing file.")] = False,
) -> None:
    """Write a commented rubric scaffold that passes `rubric-judge validate`."""
    import re

    from rubric_judge.cli.output import stdout
    from rubric_judge.errors import UserError

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-/]*", name):
        raise UserError(f"rubric id {name!r} may use letters, digits, '_', '-', '.' and '/' only, starting with a letter or digit")
    path = out or Path(f"{name.replace('/', '-')}.yaml")
    if path.exists() and not force:
        raise UserError(f"{path} already exists; choose another --out or pass --force")
    path.write_text(SCAFFOLD.format(name=name, file=path), encoding="utf-8")
    stdout.print(f"wrote {path}; next: rubric-judge validate {path}")
