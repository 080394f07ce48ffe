"""Which of a sample's fields a card shows, and how: images (inputs, then outputs) or text blocks.

A field declared in the run (the `run_fields` table: kind, output or input, label, position in
the judge's prompt) is shown as declared. An undeclared field (imported or older runs, or one the
judge is not shown, such as MedGEN's input_image) is guessed: a value that looks like an image
path (a suffix of rubric_judge.imageio.IMAGE_SUFFIXES) is an image, a name such as
"generated_image" an output.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from rubric_judge.imageio import IMAGE_SUFFIXES
from rubric_judge.report.model import Media, TextField

# Fields shown in a card's header rather than as text blocks.
HEADER_FIELDS = ("category", "modality")


def sample_fields(fields: Mapping[str, Any], declared: Mapping[str, Mapping[str, Any]], missing: tuple[str, ...],
                  resolve: Callable[[str, bool], Path | None]) -> tuple[tuple[Media, ...], tuple[TextField, ...]]:
    """The images and texts one sample's card shows.

    Args:
        fields: the sample's fields as stored (name -> value).
        declared: the run's declared fields (name -> run_fields row: kind, is_output, label, position).
        missing: the output fields the model did not produce.
        resolve: (stored path, is_output) -> the existing file it names, or None.

    Returns:
        (images, texts): images inputs first, then in the order the judge saw them, then other
        outputs; texts inputs first, then outputs, each in the sample's field order.
    """
    images: list[tuple[tuple[int, int, str], Media]] = []
    texts: list[tuple[int, TextField]] = []
    names = list(dict.fromkeys([*fields, *(m for m in missing if m in declared or m not in fields)]))
    for name in names:
        if name in HEADER_FIELDS:
            continue
        spec = declared.get(name)
        value = fields.get(name)
        is_output = bool(spec["is_output"]) if spec else (name in missing or _looks_like_output(name))
        is_image = (spec["kind"] == "image") if spec else (_looks_like_image(value) or (name in missing and _looks_like_image_name(name)))
        label = (spec.get("label") if spec else None) or pretty(name)
        if value is None and name not in missing:
            continue  # an optional input this sample does not have (e.g. no ground truth for VQA)
        if is_image:
            text = None if value is None else str(value)
            path = None if text is None else resolve(text, is_output)
            position = spec.get("position") if spec else None
            rank = (1, position, name) if position is not None else ((2, 0, name) if is_output else (0, 0, name))
            images.append((rank, Media(name, label, text, path, is_output)))
        else:
            shown = None if value is None else (value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))
            texts.append((1 if is_output else 0, TextField(name, label, shown, is_output)))
    images.sort(key=lambda item: item[0])
    texts.sort(key=lambda item: item[0])  # stable: manifest order within inputs and outputs
    return tuple(m for _, m in images), tuple(t for _, t in texts)


def pretty(name: str) -> str:
    """A field or dimension id as a label: "input_image" -> "Input image"."""
    text = name.replace("_", " ").replace("-", " ").strip()
    return text[:1].upper() + text[1:]


def _looks_like_image(value: Any) -> bool:
    return isinstance(value, str) and value.lower().endswith(IMAGE_SUFFIXES) and "\n" not in value


def _looks_like_image_name(name: str) -> bool:
    return "image" in name or name.endswith(("_img", "_png"))


def _looks_like_output(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in ("generated", "output", "response", "prediction"))
