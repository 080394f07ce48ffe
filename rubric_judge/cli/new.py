"""`rubric-judge new`: write a commented rubric scaffold that validates as it stands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

HEADER = '''\
# {name}: a rubric for rubric-judge. Every key is explained; `rubric-judge validate {file}`
# checks it, `rubric-judge plan {file} --data MANIFEST` shows what judging would cost.
rubric: {name}                 # id; part of every cache key, with `version`
version: 1                     # the rubric's digest identifies its content; bump version for humans
                               # (version is part of the cache key: bumping it re-judges every sample)
description: What this rubric judges, in one sentence.
# extends: base.yaml           # inherit a rubric: criteria/dimensions with the same id replace, others append;
#                              # `remove: [id, ...]` drops inherited ones; other keys override
# abstract: true               # mark a shared base: validated as a fragment, never scored

judge:
  model: openai/gpt-4.1        # any litellm model string; `--judge` overrides it
  temperature: 0
  mode: per_dimension          # per_criterion | per_dimension | per_sample: criteria per call

'''

INPUTS = {
    "image": '''\
inputs:                        # what each sample provides; `?` marks an optional input
  prompt: text
  body_part: text?
  reference_image: image?
  generated_image: image
outputs: [generated_image]     # inputs produced by the model under test (may be missing)

images:                        # the order and labels the judge sees
  - {{field: reference_image, label: "Reference"}}
  - {{field: generated_image, label: "Generated", strip: false}}   # strip: draw the label under the image

''',
    "text": '''\
inputs:                        # what each sample provides; `?` marks an optional input
  prompt: text
  body_part: text
  reference_report: text?
  generated_report: text
outputs: [generated_report]    # inputs produced by the model under test (may be missing)

''',
}

SUBJECT = {"image": ("image", "generated_image"), "text": ("report", "generated_report")}

VERDICT = {
    "binary": '''\
verdict: binary                # binary | scale(1..10); a dimension may set its own `verdict:` and `scoring:`

dimensions:                    # each criterion belongs to one; `when` limits a dimension to some samples
  - id: accuracy
    description: The content is medically correct.
  - id: alignment
    description: The output shows what the prompt asked for.

# weight > 0: should be present; weight < 0: must NOT be present. A text may use the sample's
# inputs ({{{{ body_part }}}}), sample_id, rubric and verdict; `tags` label criteria for analysis.
criteria:
  - {{id: accuracy-1, dimension: accuracy, weight: 5, text: "The {{{{ body_part }}}} anatomy in the {subject} is correct.", tags: [axis:accuracy]}}
  - {{id: accuracy-2, dimension: accuracy, weight: -3, text: "The {subject} contains garbled or misspelt labels.", tags: [axis:accuracy]}}
  - {{id: alignment-1, dimension: alignment, weight: 1, text: "The {subject} shows what the prompt asked for.", tags: [axis:completeness]}}

''',
    "scale": '''\
verdict: scale(1..10)          # binary | scale(MIN..MAX); a dimension may set its own `verdict:` and `scoring:`

dimensions:                    # each criterion belongs to one; `when` limits a dimension to some samples
  - id: accuracy
    description: The content is medically correct.
  - id: clarity
    description: The output is clear and well organised.

# mean_scale scores a sample by the weighted mean sum(w*score)/sum(w): weights must be positive.
# A text may use the sample's inputs ({{{{ body_part }}}}), sample_id, rubric and verdict;
# `tags` label criteria for analysis.
criteria:
  - {{id: accuracy-1, dimension: accuracy, weight: 2, text: "Score how correct the {{{{ body_part }}}} findings in the {subject} are.", tags: [axis:accuracy]}}
  - {{id: clarity-1, dimension: clarity, weight: 1, text: "Score how clear and well organised the {subject} is.", tags: [axis:communication]}}

''',
}

PROMPT = {
    "binary": "  For a criterion with a negative weight, report whether the described problem IS present.\n",
    "scale": "  Score each criterion from {{{{ verdict.min }}}} (very poor) to {{{{ verdict.max }}}} (excellent).\n",
}

FOOTER = '''\
# Sandboxed Jinja2. Available: every input (images appear as their label), criteria (id, text,
# weight, dimension, number), dimension (id, name, description; none in per_sample mode),
# verdict (kind, min, max), rubric (id, version, description), sample_id, images (labels).
prompt: |
  The model was asked: "{{{{ prompt }}}}"
  Judge {{{{ {field} }}}}{{% if dimension %}} on {{{{ dimension.name }}}}{{% endif %}}.
{instruction}  {{% for c in criteria -%}}
  {{{{ c.number }}}}. [{{{{ c.id }}}}] (weight {{{{ c.weight }}}}) {{{{ c.text }}}}
  {{% endfor %}}

scoring:
  method: {method}{pad}# weighted_points (binary) | mean_scale (scale: weighted mean) | pass_rate
  missing_output: fail         # fail: a missing output counts as unmet (scale minimum); skip: leave it out
'''


def scaffold(name: str, file: Path, kind: str = "image", verdict: str = "binary") -> str:
    """The text of a scaffold that validates as it stands.

    Args:
        name: the rubric id.
        file: where it will be written (named in its comments).
        kind: `image` (an image output judged against the prompt) or `text` (a text output).
        verdict: `binary` (a weighted checklist) or `scale` (1-10 scores, weighted mean).

    Returns:
        The YAML text.
    """
    subject, field = SUBJECT[kind]
    method = "weighted_points" if verdict == "binary" else "mean_scale"
    return (HEADER.format(name=name, file=file) + INPUTS[kind].format() + VERDICT[verdict].format(subject=subject)
            + FOOTER.format(field=field, instruction=PROMPT[verdict].format(), method=method, pad=" " * max(1, 21 - len(method))))


def command(
    name: Annotated[str, typer.Argument(help="Rubric id, e.g. `my-lab/chest-xray`; also the file name unless --out is given.")],
    out: Annotated[Path | None, typer.Option(help="Where to write the scaffold (default: NAME.yaml in the current directory).")] = None,
    force: Annotated[bool, typer.Option(help="Overwrite an existing file.")] = False,
    kind: Annotated[str, typer.Option(help="What the model under test produces: `image` or `text`.")] = "image",
    verdict: Annotated[str, typer.Option(help="`binary` (weighted checklist, weighted_points) or `scale` (1-10 scores, mean_scale).")] = "binary",
) -> None:
    """Write a commented rubric scaffold that passes `rubric-judge validate`."""
    import re

    from rubric_judge.cli.output import stdout
    from rubric_judge.errors import UserError

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-/]*", name):
        raise UserError(f"rubric id {name!r} may use letters, digits, '_', '-', '.' and '/' only, starting with a letter or digit")
    if kind not in INPUTS:
        raise UserError(f"--kind {kind!r} is not `text` or `image`")
    if verdict not in VERDICT:
        raise UserError(f"--verdict {verdict!r} is not `binary` or `scale`")
    path = out or Path(f"{name.replace('/', '-')}.yaml")
    if path.exists() and not force:
        raise UserError(f"{path} already exists; choose another --out or pass --force")
    path.write_text(scaffold(name, path, kind, verdict), encoding="utf-8")
    stdout.print(f"wrote {path}; next: rubric-judge validate {path}")
