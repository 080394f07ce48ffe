"""MedGEN-Bench: import a released record file into a rubric-judge dataset, and read results back
as the paper's Table 3 (accuracy rates per format, modality and task).

The release is a JSON list (or JSONL) of records with `category` (VQA | ImageEdit |
MMGeneration), `sub-category`, `paper_task`, `modality`, `instruction`, `input_image`,
`ground_truth_image` and `answer`; image paths are relative to an images directory. A model's
`response` (text) and `output_image` (path) are either in the records or in a separate file keyed
by id.

`import_medgen` writes `manifest.jsonl` (our field names: `sub_category`), copies (hard-links
when it can) every referenced image under `images/` next to it, so nothing escapes the dataset
root, and, when there are model outputs, `outputs.jsonl` with the output images under
`outputs/`. Bad records are reported and skipped, never fatal:

* an unknown `category`, a missing `instruction`, or a referenced image file that does not exist
  (or a path that leaves the images directory) makes a record invalid;
* a record whose id was already seen, or whose content (every benchmark field) repeats an
  earlier record, is a duplicate; the first one is kept.

Ids: a record's own `id` when it has one; otherwise `<index>-<input image stem>`, the index
being the record's 0-based position in the release file (5 digits), e.g. `00042-ct_0193` --
stable for a given release file and unique. A responses file for an id-less release uses these
ids.

Output image paths in a responses file are relative to that file's directory (the images
directory is tried next); in the records they are relative to the images directory. Where a
record and the responses file both give an output, the responses file wins.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rubric_judge.errors import Location, Problem, UserError, problem_lines, read_user_text
from rubric_judge.files import place_file, write_atomic
from rubric_judge.store.medgen_tables import CATEGORIES

TEXT_FIELDS = ("category", "sub_category", "paper_task", "modality", "instruction", "answer")
IMAGE_FIELDS = ("input_image", "ground_truth_image")
OUTPUT_FIELDS = ("response", "output_image")
# Release spelling -> ours.
RENAMES = {"sub-category": "sub_category"}
_CANONICAL = {c.lower(): c for c in CATEGORIES}
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
IMAGE_NOT_FOUND = "image file not found"


@dataclass(frozen=True)
class MedgenImport:
    """What `import_medgen` did: counts, the problems it found, and the files it wrote."""

    records: int                      # records read from the release
    imported: int                     # written to the manifest
    invalid: int                      # skipped: unknown category, no instruction, image missing ...
    duplicates: int                   # skipped: repeated id or repeated content
    by_category: Mapping[str, int]
    by_modality: Mapping[str, int]
    by_task: Mapping[str, int]        # paper_task
    with_outputs: int                 # imported samples with a response and/or an output image
    images: int                       # image files placed under out/ (inputs, references, outputs)
    linked: int                       # of which hard links (the rest are copies or were up to date)
    manifest: Path
    outputs: Path | None              # None when the release carries no model outputs
    problems: tuple[Problem, ...] = ()
    written: tuple[Path, ...] = field(default=())  # the JSONL files written

    def summary(self) -> str:
        lines = [f"MedGEN-Bench import: {self.imported} of {self.records} records imported"
                 f" ({self.invalid} invalid, {self.duplicates} duplicates skipped)."]
        lines.append("  by category: " + _counts(self.by_category))
        lines.append("  by modality: " + _counts(self.by_modality))
        lines.append(f"  tasks: {len(self.by_task)}")
        lines.append(f"  images: {self.images} placed under {self.manifest.parent} ({self.linked} hard-linked)")
        lines.append(f"  manifest: {self.manifest}")
        if self.outputs is not None:
            lines.append(f"  outputs: {self.outputs} ({self.with_outputs} samples with model outputs)")
        else:
            lines.append("  outputs: none (no response or output_image in the release)")
        lines.extend(problem_lines(self.problems))
        return "\n".join(lines)


def _counts(counter: Mapping[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))) or "-"


# Reading ----------------------------------------------------------------------------------------

def _read_records(path: Path) -> list[tuple[Location, Any]]:
    """(where, value) for each record of a JSON list, a JSON object of id -> record, or JSONL."""
    text = read_user_text(path, "records file", "JSON or JSONL")
    if not text.strip():
        raise UserError(Problem(Location(path), "the file is empty", fix="give the MedGEN-Bench records (JSON list or JSONL)"))
    try:
        whole = json.loads(text)
    except json.JSONDecodeError:
        whole = None
    if isinstance(whole, list):
        return [(Location(path), value) for value in whole]
    if isinstance(whole, dict):
        if all(isinstance(v, dict) for v in whole.values()) and "category" not in whole:
            return [(Location(path), {"id": k, **v} if "id" not in v else v) for k, v in whole.items()]
        return [(Location(path, 1, 1), whole)]
    records, problems = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append((Location(path, number, 1), json.loads(line)))
        except json.JSONDecodeError as exc:
            problems.append(Problem(Location(path, number, exc.colno), f"not valid JSON: {exc.msg}", fix="a JSON list of records, or one JSON object per line"))
    if problems and not records:
        raise UserError(problems)
    return [(where, value) for where, value in records] + [(p.location, p) for p in problems]


def _text(value: Any) -> str | None:
    """A text field's value, or None when absent or empty."""
    if value is None or isinstance(value, (dict, list)):
        return None
    text = value if isinstance(value, str) else str(value)
    return text if text.strip() else None


def _safe(text: str) -> str:
    return _SAFE.sub("_", text).strip("._") or "x"


# Importing --------------------------------------------------------------------------------------

def import_medgen(records: Path, images: Path, out: Path, responses: Path | None = None) -> MedgenImport:
    """Convert a MedGEN-Bench release into `out/manifest.jsonl` (+ `out/outputs.jsonl`).

    Invalid and duplicate records are reported in `problems` and skipped; a file that cannot be
    read at all, a missing images directory, or a release with no valid record is a `UserError`.
    """
    records, images, out = Path(records), Path(images), Path(out)
    if not images.is_dir():
        raise UserError(Problem(Location(images), "images directory not found", fix="give the directory the records' image paths are relative to"))
    image_root = images.resolve()
    problems: list[Problem] = []
    raw = _read_records(records)
    by_response = _read_responses(Path(responses), problems) if responses is not None else {}

    out.mkdir(parents=True, exist_ok=True)
    placer = _Placer(out.resolve())
    manifest_rows: list[dict[str, Any]] = []
    output_rows: list[dict[str, Any]] = []
    seen_ids: dict[str, str] = {}
    seen_content: dict[tuple, str] = {}
    invalid = duplicates = 0
    explicit_ids = {str(v["id"]) for _, v in raw if isinstance(v, dict) and _text(v.get("id"))}
    kept_ids: set[str] = set()
    skipped_ids: set[str] = set()

    for index, (where, value) in enumerate(raw):
        if isinstance(value, Problem):
            problems.append(value)
            invalid += 1
            continue
        label = f"record {index}" if not where.line else "record"
        if not isinstance(value, dict):
            problems.append(Problem(where, f"{label} is not a JSON object; skipped", fix="each record must be an object"))
            invalid += 1
            continue
        record = {RENAMES.get(k, k): v for k, v in value.items()}
        ident = _text(record.get("id"))
        if ident is None:
            stem = Path(str(record.get("input_image") or "")).stem
            ident = f"{index:05d}-{_safe(stem)}" if stem else f"{index:05d}"
            while ident in explicit_ids or ident in seen_ids:
                ident += "_"
        ident = ident.strip()
        if ident in seen_ids:
            problems.append(Problem(where, f"{label} {ident!r}: duplicate id (first at {seen_ids[ident]}); skipped", field="id", fix="ids must be unique; the first record is kept"))
            duplicates += 1
            continue

        row: dict[str, Any] = {"id": ident}
        reasons: list[tuple[str, str]] = []
        category = _text(record.get("category"))
        canonical = _CANONICAL.get(category.strip().lower()) if category else None
        if canonical is None:
            reasons.append(("category", f"unknown category {category!r}" if category else "no category"))
        for name in TEXT_FIELDS:
            value = record.get(name)
            if name == "answer" and isinstance(value, dict):  # a structured report: as the official evaluation writes it out
                from rubric_judge.metrics.medgen_text import serialize_clinical_reference

                value = serialize_clinical_reference(value)
            text = canonical if name == "category" else _text(value)
            if text is not None:
                row[name] = text
        if "instruction" not in row:
            reasons.append(("instruction", "no instruction"))
        sources: dict[str, Path] = {}
        lacking: list[tuple[str, str]] = []
        for name in IMAGE_FIELDS:
            rel = _text(record.get(name))
            if rel is None:
                continue
            source, why = _resolve(rel, [image_root])
            if source is not None:
                sources[name] = source
            elif why == IMAGE_NOT_FOUND:
                # As the official evaluation keeps the record (its texts are scored; an image
                # metric needs the pair): imported without the image, and reported.
                lacking.append((name, rel))
            else:  # outside the images directory: never followed
                reasons.append((name, f"{why}: {rel}"))
        if reasons:
            for name, why in reasons:
                problems.append(Problem(where, f"{label} {ident!r}: {why}; skipped", field=name, fix=_FIXES.get(name, "")))
            invalid += 1
            skipped_ids.add(ident)
            continue
        named = dict(lacking)
        content = tuple(row.get(k) for k in TEXT_FIELDS) + tuple(str(sources.get(k) or named.get(k)) for k in IMAGE_FIELDS)
        if content in seen_content:
            problems.append(Problem(where, f"{label} {ident!r}: same content as {seen_content[content]!r}; skipped", fix="the first record is kept"))
            duplicates += 1
            seen_ids[ident] = str(where) if where.line else f"record {index}"
            skipped_ids.add(ident)
            continue
        seen_content[content] = ident
        seen_ids[ident] = str(where) if where.line else f"record {index}"
        for name, rel in lacking:
            problems.append(Problem(where, f"{label} {ident!r}: {IMAGE_NOT_FOUND}: {rel}; imported without it",
                                    field=name, fix=_FIXES[name]))
        for name in IMAGE_FIELDS:
            if name in sources:
                rel = sources[name].relative_to(image_root).as_posix()
                row[name] = placer.place(sources[name], Path("images") / rel)
        for name, extra in record.items():  # other scalar fields travel along (names made JSON-friendly)
            key = name.replace("-", "_").replace(" ", "_")
            if key in row or key in OUTPUT_FIELDS or key in TEXT_FIELDS or key in IMAGE_FIELDS or key == "id":
                continue
            if isinstance(extra, (str, int, float, bool)) and _text(extra) is not None:
                row[key] = extra
            elif isinstance(extra, list) and extra and all(isinstance(item, (str, int, float)) for item in extra):
                row[key] = extra  # e.g. a multiple-choice task's `choice` options
        manifest_rows.append(row)
        kept_ids.add(ident)

        produced = _outputs_of(ident, record, by_response.get(ident), where, image_root, placer, problems)
        if produced:
            output_rows.append({"id": ident, **produced})

    for ident, (where, _, _) in by_response.items():
        if ident not in kept_ids:
            why = "its record was skipped" if ident in skipped_ids else "no record has this id"
            problems.append(Problem(where, f"response for {ident!r} not imported: {why}", field="id", fix="key responses by the record ids"))

    if not manifest_rows:
        raise UserError(problems + [Problem(Location(records), "no valid record to import", fix="see the problems above")])

    manifest = out / "manifest.jsonl"
    _write_jsonl(manifest, manifest_rows)
    written = [manifest]
    outputs_path = None
    if output_rows:
        outputs_path = out / "outputs.jsonl"
        _write_jsonl(outputs_path, output_rows)
        written.append(outputs_path)
    return MedgenImport(
        records=len(raw), imported=len(manifest_rows), invalid=invalid, duplicates=duplicates,
        by_category=dict(Counter(r["category"] for r in manifest_rows)),
        by_modality=dict(Counter(r.get("modality", "(none)") for r in manifest_rows)),
        by_task=dict(Counter(r.get("paper_task", "(none)") for r in manifest_rows)),
        with_outputs=len(output_rows), images=placer.placed, linked=placer.linked,
        manifest=manifest, outputs=outputs_path, problems=tuple(problems), written=tuple(written),
    )


_FIXES = {
    "category": f"category must be one of {', '.join(CATEGORIES)}",
    "instruction": "give every record its instruction",
    "input_image": "image paths are relative to the images directory and must exist there",
    "ground_truth_image": "image paths are relative to the images directory and must exist there",
}


def _resolve(rel: str, roots: Iterable[Path]) -> tuple[Path | None, str]:
    """The file `rel` names under the first root that has it, or (None, why)."""
    if Path(rel).is_absolute():
        return None, "absolute image path"
    why = IMAGE_NOT_FOUND
    for root in roots:
        candidate = (root / rel).resolve()
        if not candidate.is_relative_to(root):
            why = "image path leaves the images directory"
            continue
        if candidate.is_file():
            return candidate, ""
    return None, why


def _read_responses(path: Path, problems: list[Problem]) -> dict[str, tuple[Location, dict[str, Any], Path]]:
    """id -> (where, {response?, output_image?}, directory its image paths are relative to).

    Accepts a JSON object of id -> {response?, output_image?} (or id -> response text), a JSON
    list of objects with `id`, or JSONL of such objects."""
    found: dict[str, tuple[Location, dict[str, Any], Path]] = {}
    entries = _read_records(path)
    if len(entries) == 1 and isinstance(entries[0][1], dict) and "id" not in entries[0][1]:
        # {"id-1": "text", ...} or a mix of text and objects: a mapping of id -> response.
        where, mapping = entries[0]
        entries = [(where, {"id": k, "response": v} if not isinstance(v, dict) else {"id": k, **v}) for k, v in mapping.items()]
    base = path.parent.resolve()
    for where, value in entries:
        if isinstance(value, Problem):
            problems.append(value)
            continue
        ident = _text(value.get("id")) if isinstance(value, dict) else None
        if ident is None:
            problems.append(Problem(where, "response without an `id`; ignored", field="id", fix='write {"id": ..., "response": ..., "output_image": ...}'))
            continue
        ident = ident.strip()
        if ident in found:
            problems.append(Problem(where, f"second response for {ident!r}; the first is kept", field="id"))
            continue
        found[ident] = (where, value, base)
    return found


def _outputs_of(ident: str, record: Mapping[str, Any], response: tuple[Location, dict[str, Any], Path] | None,
                where: Location, image_root: Path, placer: _Placer, problems: list[Problem]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    sources = [(record, where, [image_root])]
    if response is not None:
        sources.append((response[1], response[0], [response[2], image_root]))
    for name in OUTPUT_FIELDS:
        for data, loc, roots in reversed(sources):  # the responses file first
            text = _text(data.get(name))
            if text is None:
                continue
            if name == "response":
                values[name] = text
            else:
                rel = text
                source, why = _resolve(rel, roots)
                if source is None:
                    problems.append(Problem(loc, f"{ident!r}: output image {why}: {rel}; recorded as a missing output", field="output_image"))
                else:
                    values[name] = placer.place(source, Path("outputs") / f"{_safe(ident)}{source.suffix.lower()}")
            break
    return values


class _Placer:
    """Puts files under the dataset root: a hard link when possible, a copy otherwise."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.placed = 0
        self.linked = 0
        self._done: dict[Path, Path] = {}

    def place(self, source: Path, rel: Path) -> str:
        target = self.root / rel
        if target in self._done:
            return rel.as_posix()
        self._done[target] = source
        self.placed += 1
        self.linked += place_file(source, target)
        return rel.as_posix()


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    write_atomic(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
