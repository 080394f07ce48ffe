"""Bias probes: the same judge calls, changed in one way a fair judge should not care about.

`swap-images` reverses the order of the images a call shows. The rubric is re-rendered with its
`images:` slots reversed, so everything that follows the slots moves with them: each image keeps
its grounding label ("Image 1: <label>" names whichever image now comes first), and the
template's `images` list (the labels in order) is reversed too. A prompt whose own words name
an order ("the first image is the reference") would then lie about the swapped request, so such
a rubric is refused rather than probed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from rubric_judge.errors import Location, Problem, UserError
from rubric_judge.planning.compile import Plan
from rubric_judge.rubrics.schema import Rubric

PROBES = ("swap-images",)

# Prompt words that tie an image to its position; the labels are the order-free way to refer to one.
_ORDINAL = r"first|second|third|last|former|latter|1st|2nd|3rd|left|right|top|bottom|upper|lower|leftmost|rightmost"
_NOUN = r"image|images|picture|pictures|illustration|illustrations|photo|photos|figure|figures|panel|panels|one"
HARD_CODED_ORDER = re.compile(rf"\b(?:{_ORDINAL})\s+(?:{_NOUN})\b|\b(?:image|picture|figure|photo)\s*#?\s*\d+\b", re.IGNORECASE)


def check_probe(probe: str, rubrics: Sequence[Rubric], source: Path) -> None:
    """Refuse a probe the rubric cannot be probed with, before anything is judged.

    Args:
        probe: the probe's kind (PROBES).
        rubrics: the run's rubrics (a base and its task rubrics).
        source: the rubric path, named in errors.

    Raises:
        UserError: an unknown probe; fewer than two image slots; a prompt that names an image by position.
    """
    if probe not in PROBES:
        raise UserError(Problem(Location(None), f"unknown probe {probe!r}", field="probe", fix=f"use one of: {', '.join(PROBES)}"))
    for rubric in rubrics:
        if len(rubric.images) < 2:
            raise UserError(Problem(Location(source), f"rubric {rubric.rubric!r} shows {len(rubric.images)} image(s): there is no order to swap",
                                    field="images", fix="use --probe swap-images with rubrics whose `images:` list two or more images"))
        for name, template in (("system", rubric.system), ("prompt", rubric.prompt)):
            found = HARD_CODED_ORDER.search(template or "")
            if found:
                raise UserError(Problem(
                    Location(source), f"the {name} template names an image by its position ({found.group(0)!r}), which swapping the images "
                    "would make false", field=name,
                    fix="refer to images by their labels ({{ <field> }} or {{ images }}) so the text follows the order, then probe again"))


def swapped_rubrics(rubrics: Sequence[Rubric]) -> tuple[Rubric, ...]:
    """The rubrics with their `images:` slots in reverse order (labels travel with their images)."""
    return tuple(r.model_copy(update={"images": list(reversed(r.images))}) for r in rubrics)


def probed_plan(plan: Plan) -> Plan:
    """Only the calls whose images the swap reorders: a call with fewer than two images is sent
    unchanged, so it would only repeat the original (from the cache) and dilute the flip rate."""
    return replace(plan, samples=tuple(replace(s, calls=tuple(c for c in s.calls if len(c.images) >= 2)) for s in plan.samples))
