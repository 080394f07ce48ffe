"""Datasets and model outputs in, `Sample`s out.

A dataset is a JSONL manifest: one object per line with a unique string `id` plus fields; image
fields hold paths relative to the manifest, which may not leave the manifest's directory.
A model's outputs are either a directory (`<id>.png|.jpg|.jpeg|.webp|...` for the image output,
`<id>.txt` for the text output, or `<field>/<id>.<ext>` when a rubric has several outputs of a
kind) or a JSONL file of `{"id": ..., field: value}`, one line per id, with image paths relative
to that file.
An output the model did not produce is recorded as missing, never invented.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rubric_judge.errors import Location, Problem, UserError, read_user_text
from rubric_judge.imageio import IMAGE_SUFFIXES
from rubric_judge.rubrics.schema import InputKind, InputSpec, RequiredOutputs

TEXT_SUFFIXES = (".txt",)


@dataclass(frozen=True)
class Sample:
    id: str
    fields: Mapping[str, Any]  # text values as str, image values as resolved Paths
    missing_outputs: tuple[str, ...] = ()
    source: Location = field(default_factory=lambda: Location(None))


def read_jsonl(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """The records of a JSONL file of `{"id": ..., ...}` objects, ids unique.

    Args:
        path: the manifest or outputs file.

    Returns:
        (line number, object) for each non-blank line, in file order.

    Raises:
        UserError: listing every bad line at once: unreadable text, invalid JSON, a line that is
            not an object, a missing id, an id already used on an earlier line.
    """
    text = read_user_text(path, "JSONL file", "JSONL")
    records, problems = [], []
    first_line: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(Problem(Location(path, number, exc.colno), f"not valid JSON: {exc.msg}", fix="one JSON object per line"))
            continue
        if not isinstance(value, dict):
            problems.append(Problem(Location(path, number, 1), "each line must be a JSON object", fix='write {"id": "...", ...}'))
            continue
        ident = value.get("id")
        if not isinstance(ident, str) or not ident.strip():
            problems.append(Problem(Location(path, number, 1), "missing or non-string `id`", field="id", fix='give every line a string "id"'))
            continue
        # A repeated id would silently replace or double a sample, depending on the reader.
        if ident in first_line:
            problems.append(Problem(Location(path, number, 1), f"duplicate id {ident!r} (first on line {first_line[ident]})", field="id", fix="ids must be unique"))
            continue
        first_line[ident] = number
        records.append((number, value))
    if problems:
        raise UserError(problems)
    return records


def load_samples(manifest: Path, outputs: Path | None, inputs: Mapping[str, InputSpec], output_fields: Iterable[str],
                 required_outputs: Sequence[RequiredOutputs] = ()) -> list[Sample]:
    """Read the manifest and the model's outputs, resolving image paths safely; each sample's
    `missing_outputs` as `missing_outputs` decides them (with the rubric's `required_outputs`)."""
    manifest = Path(manifest)
    paths = _PathsUnder(manifest.parent)
    output_fields = tuple(output_fields)
    records = read_jsonl(manifest)
    if not records:
        # Nothing to judge: scoring would record an empty run that looks like a result.
        raise UserError(Problem(Location(manifest), "the manifest has no samples", fix='add one JSON object per line, each with a unique "id"'))
    problems: list[Problem] = []
    produced = _read_outputs(outputs, [r["id"] for _, r in records], inputs, output_fields) if outputs else {}
    samples = []
    for number, record in records:
        where = Location(manifest, number, 1)
        values: dict[str, Any] = {}
        for name, value in record.items():
            if name == "id":
                continue
            spec = inputs.get(name)
            if spec is not None and spec.kind is InputKind.image and value is not None:
                resolved = paths.inside(value, where, name, problems)
                if resolved is not None and not os.path.isfile(resolved):
                    problems.append(Problem(where, f"image not found: {value}", field=name, fix=f"paths are relative to {manifest.parent}"))
                values[name] = resolved
            else:
                values[name] = value
        values.update(produced.get(record["id"], {}))
        samples.append(Sample(record["id"], values, missing_outputs(values, inputs, output_fields, required_outputs), where))
    if problems:
        raise UserError(problems)
    return samples


def missing_outputs(values: Mapping[str, Any], inputs: Mapping[str, InputSpec], output_fields: Sequence[str],
                    required: Sequence[RequiredOutputs] = (), empty_is_absent: bool = True) -> tuple[str, ...]:
    """The outputs a sample lacks, in the sense its rubric's missing-output policy scores.

    Args:
        values: the sample's fields (an absent output is None or "").
        inputs: the rubric's field declarations (which outputs are optional).
        output_fields: the rubric's outputs.
        required: the rubric's `required_outputs`: the first entry that applies to the sample
            names the outputs it must have (none: it is judged whatever it lacks).
        empty_is_absent: whether "" is an absent output (a dataset's empty field), or an answer
            to judge (`serve`: a trainer's empty completion).

    Returns:
        Without an entry that applies: the required outputs that are absent, or, when every
        output is optional, all of them if all are absent (else none). With one: those of its
        outputs that are absent.
    """
    absent = [f for f in output_fields if values.get(f) is None or (empty_is_absent and values.get(f) == "")]
    rule = next((rule for rule in required if rule.applies_to(values)), None)
    if rule is not None:
        return tuple(f for f in rule.outputs if f in absent)
    required_absent = tuple(f for f in absent if not inputs[f].optional)
    if required_absent:
        return required_absent
    return tuple(absent) if output_fields and len(absent) == len(output_fields) else ()


class _PathsUnder:
    """Image paths from a data file, resolved as `(root / value).resolve()` resolves them
    (symlinks and `..` included), for the check that they stay inside `root`.

    `Path.resolve` walks every component of every path with a system call and builds pathlib
    objects on the way: a quarter of a millisecond an image, seconds before the first judge
    call of a 6,422-sample job. Here each directory is resolved once, and only a file name that
    is itself a symlink is resolved again.
    """

    def __init__(self, root: Path):
        self.root = os.path.realpath(root)
        self._prefix = self.root.rstrip(os.sep) + os.sep
        self._directories: dict[str, str] = {}

    def resolve(self, value: str) -> str:
        joined = os.path.join(self.root, value)
        head, tail = os.path.split(joined)
        if tail in ("", ".", ".."):
            return os.path.realpath(joined)
        directory = self._directories.get(head)
        if directory is None:
            directory = self._directories[head] = os.path.realpath(head)
        candidate = os.path.join(directory, tail)
        return os.path.realpath(candidate) if os.path.islink(candidate) else candidate

    def inside(self, value: Any, where: Location, name: str, problems: list[Problem]) -> Path | None:
        """The resolved path of `value`, or None with a problem added when it is not a relative
        path string or leaves the root."""
        if not isinstance(value, str) or not value:
            problems.append(Problem(where, "image field must be a relative path string", field=name, fix='write e.g. "images/case-1.png"'))
            return None
        resolved = self.resolve(value)
        if resolved != self.root and not resolved.startswith(self._prefix):
            problems.append(Problem(where, f"path {value!r} leaves the dataset directory {self.root}", field=name,
                                    fix="keep images inside the dataset directory"))
            return None
        return Path(resolved)


def _read_outputs(outputs: Path, ids: list[str], inputs: Mapping[str, InputSpec], output_fields: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    outputs = Path(outputs)
    if outputs.is_dir():
        return _outputs_from_directory(outputs, ids, inputs, output_fields)
    if outputs.is_file():
        return _outputs_from_jsonl(outputs, inputs)
    raise UserError(Problem(Location(outputs), "outputs not found", fix="give a directory of <id>.png/<id>.txt files or a JSONL file"))


def _outputs_from_jsonl(path: Path, inputs: Mapping[str, InputSpec]) -> dict[str, dict[str, Any]]:
    paths = _PathsUnder(path.parent)
    produced: dict[str, dict[str, Any]] = {}
    problems: list[Problem] = []
    for number, record in read_jsonl(path):
        where = Location(path, number, 1)
        values = {}
        for name, value in record.items():
            if name == "id":
                continue
            spec = inputs.get(name)
            if spec is not None and spec.kind is InputKind.image and value is not None:
                resolved = paths.inside(value, where, name, problems)
                # A listed image that does not exist is a missing output, reported as such.
                values[name] = resolved if resolved is not None and os.path.isfile(resolved) else None
            else:
                values[name] = value
        produced[record["id"]] = values
    if problems:
        raise UserError(problems)
    return produced


def _outputs_from_directory(directory: Path, ids: list[str], inputs: Mapping[str, InputSpec], output_fields: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    root = directory.resolve()
    by_kind: dict[InputKind, list[str]] = {}
    for name in output_fields:
        by_kind.setdefault(inputs[name].kind, []).append(name)
    index = _index_directory(root)
    produced: dict[str, dict[str, Any]] = {}
    problems: list[Problem] = []
    for ident in ids:
        values: dict[str, Any] = {}
        for kind, names in by_kind.items():
            suffixes = IMAGE_SUFFIXES if kind is InputKind.image else TEXT_SUFFIXES
            for name in names:
                folder = index.get(name) if isinstance(index.get(name), dict) else None
                if folder is None and len(names) > 1:
                    continue
                found = _find(folder if folder is not None else index, ident, suffixes)
                if len(found) > 1:
                    problems.append(Problem(Location(directory), f"several outputs for {ident!r}: {', '.join(p.name for p in found)}", field=name, fix="keep one file per sample"))
                elif found:
                    path = found[0].resolve()
                    if not path.is_relative_to(root):
                        problems.append(Problem(Location(found[0]), "output leaves the outputs directory (symlink?)", field=name, fix="copy the file into the directory"))
                    elif kind is InputKind.image:
                        values[name] = path
                    else:
                        values[name] = path.read_text(encoding="utf-8").strip()
        produced[ident] = values
    if problems:
        raise UserError(problems)
    return produced


def _index_directory(root: Path) -> dict[str, Any]:
    """File name -> path for the top level, and sub-directory name -> its own such index."""
    index: dict[str, Any] = {}
    for entry in root.iterdir():
        if entry.is_dir():
            index[entry.name] = {child.name: child for child in entry.iterdir() if child.is_file()}
        elif entry.is_file():
            index[entry.name] = entry
    return index


def _find(index: Mapping[str, Any], ident: str, suffixes: tuple[str, ...]) -> list[Path]:
    # IlluGenBench names a task after its reference image (`foo.jpg`) but expects `foo.png`.
    stems = [ident]
    if Path(ident).suffix.lower() in IMAGE_SUFFIXES:
        stems.append(Path(ident).stem)
    for stem in stems:
        found = [index[stem + s] for s in suffixes if isinstance(index.get(stem + s), Path)]
        if found:
            return found
    return []
