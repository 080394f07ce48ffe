"""Reward requests in, `Sample`s out: one item's rubric, inputs and outputs, checked.

Items come from strangers (a trainer's dataset, a policy's rollout), so every value is checked
against the rubric's declared inputs: text fields must be strings; image fields are either a
path inside a directory the server was started with (`--allow-dir`, resolved first, so no `..`
or symlink leaves it) or an inline image (a `data:image/...;base64,` URI or `{"base64": ...}`),
bounded in bytes and in pixels (rubric_judge.imageio's limit) and spooled to a private file
for the planner. A bad item raises `ItemError` with a status saying what kind of problem it is;
the service answers it with the fallback reward and goes on with the rest of the batch.
"""

from __future__ import annotations

import base64
import binascii
import os
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rubric_judge.errors import Location
from rubric_judge.imageio import ImageError, open_image, sniff_media_type
from rubric_judge.planning.samples import Sample, missing_outputs
from rubric_judge.rubrics.schema import InputKind, Rubric

# Item statuses (the `status` of a result); `ok` and `partial` carry a judged reward.
INVALID_ITEM = "invalid_item"
UNKNOWN_RUBRIC = "unknown_rubric"
BAD_IMAGE = "bad_image"

MAX_ID_CHARS = 200
MAX_TEXT_CHARS = 200_000
_SUFFIX = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp", "image/gif": ".gif", "image/bmp": ".bmp", "image/tiff": ".tif"}


class ItemError(Exception):
    """One item cannot be scored; `status` says why in one word, the message in words."""

    def __init__(self, status: str, message: str, item_id: str | None = None):
        super().__init__(message)
        self.status = status
        self.item_id = item_id  # when known: an item refused before it reached the service


@dataclass(frozen=True)
class RubricSet:
    """The rubrics of one rubric id: a general one and/or task rubrics keyed by task id."""

    general: Rubric | None
    tasks: Mapping[str, Rubric]

    @property
    def base(self) -> Rubric:
        return self.general or next(iter(self.tasks.values()))


def index_rubrics(rubrics: Sequence[Rubric]) -> dict[str, RubricSet]:
    """Rubric id -> its `RubricSet` (task files of one benchmark share an id)."""
    general: dict[str, Rubric] = {}
    tasks: dict[str, dict[str, Rubric]] = {}
    for rubric in rubrics:
        if rubric.task is None:
            general.setdefault(rubric.rubric, rubric)
        else:
            tasks.setdefault(rubric.rubric, {})[rubric.task] = rubric
    return {name: RubricSet(general.get(name), tasks.get(name, {})) for name in {*general, *tasks}}


@dataclass
class ImageSpool:
    """Inline images written to private files for the planner, removed once their item is scored."""

    directory: Path
    allow_dirs: tuple[Path, ...] = ()
    max_image_bytes: int = 20 * 1024 * 1024
    written: list[Path] = field(default_factory=list)

    def image(self, name: str, value: Any) -> Path:
        """The file to judge for image field `name`: an allowed path, or a spooled inline image."""
        raw = _inline_bytes(name, value, self.max_image_bytes)
        if raw is None:
            return self._allowed_path(name, value)
        media_type = sniff_media_type(raw[:16])
        if media_type is None:
            raise ItemError(BAD_IMAGE, f"inline image {name!r} is not a recognised image (PNG, JPEG, WebP, GIF, BMP or TIFF)")
        try:
            with open_image(raw, f"inline image {name!r}"):  # refuses more pixels than the limit before decoding
                pass
        except ImageError as exc:
            raise ItemError(BAD_IMAGE, str(exc)) from None
        path = self.directory / f"{uuid.uuid4().hex}{_SUFFIX.get(media_type, '.img')}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(raw)
        self.written.append(path)
        return path

    def _allowed_path(self, name: str, value: Any) -> Path:
        if not isinstance(value, str) or not value:
            raise ItemError(INVALID_ITEM, f"image field {name!r} must be a path, a data URI or {{\"base64\": ...}}, not {type(value).__name__}")
        if not self.allow_dirs:
            raise ItemError(BAD_IMAGE, f"image field {name!r} is a path, but the server accepts no image paths "
                                       "(start it with --allow-dir DIR, or send the image inline as a data URI)")
        candidate = Path(value)
        # Resolved (symlinks and `..` followed) before the check, so nothing leaves the allowed directories.
        candidates = [candidate] if candidate.is_absolute() else [base / candidate for base in self.allow_dirs]
        for path in candidates:
            resolved = path.resolve()
            if any(resolved.is_relative_to(allowed) for allowed in self.allow_dirs) and resolved.is_file():
                return resolved
        raise ItemError(BAD_IMAGE, f"image {value!r} ({name}) is not a file inside the allowed directories "
                                   f"({', '.join(str(d) for d in self.allow_dirs)})")

    def release(self) -> None:
        for path in self.written:
            path.unlink(missing_ok=True)
        self.written.clear()


def _inline_bytes(name: str, value: Any, limit: int) -> bytes | None:
    """The decoded bytes of an inline image, or None when `value` is not one (a path)."""
    if isinstance(value, Mapping):
        encoded = value.get("base64")
        if not isinstance(encoded, str):
            raise ItemError(INVALID_ITEM, f"image field {name!r}: an object must be {{\"base64\": \"...\"}}")
    elif isinstance(value, str) and value.startswith("data:"):
        header, comma, encoded = value.partition(",")
        if not comma or not header.endswith(";base64"):
            raise ItemError(INVALID_ITEM, f"image field {name!r}: a data URI must be data:image/...;base64,<data>")
    else:
        return None
    if len(encoded) > limit * 4 // 3 + 4:
        raise ItemError(BAD_IMAGE, f"inline image {name!r} is larger than {limit} bytes")
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ItemError(INVALID_ITEM, f"image field {name!r} is not valid base64") from None


def item_sample(rubric: Rubric, sample_id: str, inputs: Mapping[str, Any], outputs: Mapping[str, Any], spool: ImageSpool) -> Sample:
    """The `Sample` the planner compiles for one item, every value checked against the rubric.

    Args:
        rubric: the item's rubric (its declared inputs and outputs).
        sample_id: the id templates see (`score` uses the manifest id; a task rubric's is its task).
        inputs, outputs: field -> value; outputs the rubric lists that are absent are missing outputs.
        spool: where inline images go, and which directories image paths may name.

    Raises:
        ItemError: an undeclared field, a value of the wrong kind, an image that is not allowed or not an image.
    """
    values: dict[str, Any] = {}
    for source, kind in ((inputs, "inputs"), (outputs, "outputs")):
        if not isinstance(source, Mapping):
            raise ItemError(INVALID_ITEM, f"`{kind}` must be an object of field -> value")
        for name, value in source.items():
            spec = rubric.inputs.get(name)
            if spec is None:
                raise ItemError(INVALID_ITEM, f"field {name!r} is not an input of rubric {rubric.rubric} "
                                              f"(its inputs: {', '.join(rubric.inputs)})")
            if value is None or value == "":
                values[name] = None
            elif spec.kind is InputKind.image:
                values[name] = spool.image(name, value)
            elif isinstance(value, str | int | float) and not isinstance(value, bool):
                text = str(value)
                if len(text) > MAX_TEXT_CHARS:
                    raise ItemError(INVALID_ITEM, f"text field {name!r} is longer than {MAX_TEXT_CHARS} characters")
                values[name] = text
            else:
                raise ItemError(INVALID_ITEM, f"text field {name!r} must be a string, not {type(value).__name__}")
    required = [name for name, spec in rubric.inputs.items() if not spec.optional and name not in rubric.outputs and values.get(name) is None]
    if required:
        raise ItemError(INVALID_ITEM, f"required input(s) missing: {', '.join(required)}")
    return Sample(sample_id, values, _missing_outputs(values, rubric), Location(None))


def _missing_outputs(values: Mapping[str, Any], rubric: Rubric) -> tuple[str, ...]:
    """As `score` decides it (`required_outputs` included), except that an empty completion is an
    answer to judge, not absent; an output image that cannot be read is refused (BAD_IMAGE)."""
    return missing_outputs(values, rubric.inputs, rubric.outputs, rubric.required_outputs, empty_is_absent=False)


def response_field(rubric: Rubric) -> str | None:
    """The output a text response fills (the rubric's first text output), for /get_reward and the trainers."""
    return next((name for name in rubric.outputs if rubric.inputs[name].kind is InputKind.text), None)


def item_outputs(rubric: Rubric, item: Mapping[str, Any]) -> Any:
    """The item's outputs, with its `response` text (a trainer's completion) in the rubric's
    first text output, or the output named by `response_field`."""
    outputs = item.get("outputs") or {}
    if "response" not in item:
        return outputs
    if not isinstance(outputs, Mapping):
        raise ItemError(INVALID_ITEM, "`outputs` must be an object of field -> value")
    name = item.get("response_field") or response_field(rubric)
    if not isinstance(name, str) or name not in rubric.outputs:
        raise ItemError(INVALID_ITEM, f"rubric {rubric.rubric} has no text output {name!r} for the response; "
                                      f"name one of its outputs ({', '.join(rubric.outputs)}) in \"response_field\"")
    return {**outputs, name: item["response"]}


def check_id(value: Any, fallback: str) -> str:
    if value is None:
        return fallback
    if not isinstance(value, str | int) or isinstance(value, bool) or not str(value).strip() or len(str(value)) > MAX_ID_CHARS:
        raise ItemError(INVALID_ITEM, f"`id` must be a non-empty string of at most {MAX_ID_CHARS} characters")
    return str(value)
