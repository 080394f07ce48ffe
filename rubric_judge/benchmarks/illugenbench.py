"""IlluGenBench: import the benchmark file (`illubench.json`) as task rubrics plus a dataset, and
import verdicts written by the official evaluation script as scored runs.

Benchmark file: a JSON object keyed by the reference image's file name (or a list of such
objects, merged; a key in two of them is an error naming both), each value
`{"rubric": {dimension: [{"description": str, "weight": number}, ...]}, "prompt": str, ...}`.
The prompt field is `prompt`, `caption` or `text` (or the name given).

`import_bench` writes, under `out/`:

* `tasks/<safe name>.yaml`: one rubric per task, `extends: builtin:illugenbench/base.yaml`,
  `task: "<key>"` (the exact key), and the task's criteria with the stable ids
  `<dimension>-<index>`, the index 1-based within the dimension as in the official prompt's
  numbering (a criterion left out because it is malformed leaves a gap; ids never shift);
* `manifest.jsonl`: `{"id": key, "prompt", "category", "reference_image"}`;
* `references/`: the reference images (hard links when on the same file system, else copies),
  because manifest paths may not leave the manifest's directory.

Problems (a malformed criterion, a task with no positive weight, a missing reference image, an
unknown dimension name, a missing prompt) are collected and reported, never fatal; an unreadable
file or one with no usable task is a `UserError`. A dimension outside the three IlluGenBench
ones is kept when its name is an identifier (the task file then declares it next to the base
dimensions, so pooled scores still include it, as the official script's would) and dropped
otherwise.

`import_results` reads the official evaluation script's results file
(`{key: {"rubric_eval": {dimension: [{"description", "weight", "evaluation": {"verdict", ...}}]}}}`),
matches each entry to the benchmark's criterion by (dimension, position) and checks the
description, and writes up to two runs to the results database, both with `model_name` as given
and `judge_model = "imported:<results file name>"`:

* rubric id `illugenbench` (the default policy, the same id as runs `rubric-judge score` makes
  with the bundled base rubric, so imported and re-judged runs share a leaderboard): a task
  missing from the results counts as failed (`missing_output: fail`) and a missing verdict is
  left out and counted (`unscored: exclude`);
* rubric id `illugenbench@reference` (reference-compatible): missing tasks are skipped and
  missing verdicts count as "Not Satisfied", which reproduces the official overall and
  per-dimension numbers exactly.

A verdict is missing (`unscored`) when the results entry lacks the criterion, its
`evaluation`, or a verdict that reads as Satisfied / Not Satisfied (case, `_` and spacing are
normalised). A task with no results entry at all is a missing output.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rubric_judge.errors import Location, Problem, UserError, problem_lines, read_user_text
from rubric_judge.files import place_file, write_atomic

DIMENSIONS = ("scientific_accuracy", "structural_correctness", "semantic_alignment")
PROMPT_FIELDS = ("prompt", "caption", "text")
BASE = "builtin:illugenbench/base.yaml"
RUBRIC_ID = "illugenbench"
REFERENCE_RUBRIC_ID = "illugenbench@reference"
MARKER = "# Imported by `rubric-judge import illugenbench`"
_IDENTIFIER = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


# Reading the benchmark file ---------------------------------------------------------------------

@dataclass(frozen=True)
class BenchCriterion:
    dimension: str
    index: int          # 1-based position within the dimension's list, as the official prompt numbers it
    weight: float
    description: str

    @property
    def id(self) -> str:
        return f"{self.dimension}-{self.index}"


@dataclass(frozen=True)
class BenchTask:
    key: str
    prompt: str | None
    category: str | None
    criteria: tuple[BenchCriterion, ...]
    extra_dimensions: tuple[str, ...] = ()   # dimensions outside the three IlluGenBench ones

    @property
    def has_positive_weight(self) -> bool:
        return any(c.weight > 0 for c in self.criteria)


@dataclass(frozen=True)
class Bench:
    path: Path
    tasks: tuple[BenchTask, ...]
    problems: tuple[Problem, ...]

    def by_key(self) -> dict[str, BenchTask]:
        return {t.key: t for t in self.tasks}


class _Object(dict):
    """A JSON object that remembers keys it saw twice (json keeps the last one silently)."""

    duplicates: list[str]


def _pairs(pairs: list[tuple[str, Any]]) -> _Object:
    obj = _Object()
    obj.duplicates = []
    for key, value in pairs:
        if key in obj:
            obj.duplicates.append(key)
        obj[key] = value
    return obj


def _read_json(path: Path, what: str) -> Any:
    text = read_user_text(path, what, "JSON")
    try:
        return json.loads(text, object_pairs_hook=_pairs)
    except json.JSONDecodeError as exc:
        raise UserError(Problem(Location(Path(path), exc.lineno, exc.colno), f"the {what} is not valid JSON: {exc.msg}",
                                fix="a JSON object keyed by image file name, or a list of such objects")) from None


def _merged_objects(path: Path, data: Any, what: str) -> dict[str, tuple[Any, str]]:
    """{key: (value, where it came from)} over the object or list of objects; repeated keys are errors."""
    parts = [(data, "the top-level object")] if isinstance(data, dict) else [(d, f"object [{i}]") for i, d in enumerate(data)] if isinstance(data, list) else None
    if parts is None:
        raise UserError(Problem(Location(path), f"the {what} must be a JSON object (or a list of objects), not {type(data).__name__}",
                                fix="a JSON object keyed by image file name"))
    merged: dict[str, tuple[Any, str]] = {}
    problems = []
    for part, label in parts:
        if not isinstance(part, dict):
            problems.append(Problem(Location(path), f"{label} is {type(part).__name__}, not a JSON object", fix="each list element must be an object keyed by image file name"))
            continue
        for key in getattr(part, "duplicates", []):
            problems.append(Problem(Location(path), f"key {key!r} appears twice in {label}", fix="keys (image file names) must be unique"))
        for key, value in part.items():
            if key in merged:
                problems.append(Problem(Location(path), f"key {key!r} is in {merged[key][1]} and in {label}", fix="keys (image file names) must be unique across the merged objects"))
                continue
            merged[key] = (value, label)
    if problems:
        raise UserError(problems)
    return merged


def read_bench(path: Path, prompt_field: str | None = None) -> Bench:
    """Parse and check the benchmark file; problems are collected, malformed parts left out."""
    path = Path(path)
    merged = _merged_objects(path, _read_json(path, "benchmark file"), "benchmark file")
    problems: list[Problem] = []
    tasks: list[BenchTask] = []
    where = Location(path)
    fields = (prompt_field,) if prompt_field else PROMPT_FIELDS
    for key, (value, _) in merged.items():
        if not key.strip():
            problems.append(Problem(where, "a task with an empty key; skipped", fix="key each task by its reference image's file name"))
            continue
        if not isinstance(value, dict) or not isinstance(value.get("rubric"), dict):
            problems.append(Problem(where, f"task {key!r} has no `rubric` object; skipped", field=key,
                                    fix='write {"rubric": {"scientific_accuracy": [{"description": ..., "weight": ...}], ...}}'))
            continue
        prompt = next((value[f] for f in fields if isinstance(value.get(f), str) and value[f].strip()), None)
        if prompt is None:
            problems.append(Problem(where, f"task {key!r} has no prompt (looked for {', '.join(fields)})", field=key,
                                    fix="pass --prompt-field NAME if the prompt is under another name"))
        category = value.get("category")
        criteria: list[BenchCriterion] = []
        extra: list[str] = []
        for dimension, items in value["rubric"].items():
            if dimension not in DIMENSIONS:
                if not _IDENTIFIER.match(dimension):
                    problems.append(Problem(where, f"task {key!r}: unknown dimension {dimension!r} is not an identifier; its criteria are left out",
                                            field=f"{key}.rubric", fix=f"IlluGenBench dimensions: {', '.join(DIMENSIONS)}"))
                    continue
                problems.append(Problem(where, f"task {key!r}: unknown dimension {dimension!r}; kept as an extra dimension of this task",
                                        field=f"{key}.rubric", fix=f"IlluGenBench dimensions: {', '.join(DIMENSIONS)}"))
                extra.append(dimension)
            if not isinstance(items, list):
                problems.append(Problem(where, f"task {key!r}: {dimension} is not a list of criteria; left out", field=f"{key}.rubric.{dimension}"))
                continue
            for index, item in enumerate(items, start=1):
                label = f"{key}.rubric.{dimension}[{index}]"
                criterion, why = _criterion(dimension, index, item)
                if criterion is None:
                    problems.append(Problem(where, f"task {key!r}: criterion {dimension}-{index} {why}; left out", field=label))
                    continue
                if why:
                    problems.append(Problem(where, f"task {key!r}: criterion {dimension}-{index} {why}", field=label))
                criteria.append(criterion)
        task = BenchTask(key, prompt, category if isinstance(category, str) else None, tuple(criteria), tuple(extra))
        if not task.has_positive_weight:
            problems.append(Problem(where, f"task {key!r} has no criterion with a positive weight: it is left out of every score", field=key,
                                    fix="give the task at least one positively weighted criterion"))
        tasks.append(task)
    if not tasks:
        raise UserError(problems + [Problem(where, "no usable task in the benchmark file", fix="see the problems above")])
    return Bench(path, tuple(tasks), tuple(problems))


def _criterion(dimension: str, index: int, item: Any) -> tuple[BenchCriterion | None, str]:
    if not isinstance(item, dict):
        return None, "is not an object"
    text = item.get("description")
    if not isinstance(text, str) or not text.strip():
        return None, "has no description"
    weight, note = item.get("weight"), ""
    if isinstance(weight, str):
        try:
            weight, note = float(weight), f"has its weight as the text {weight!r}; read as a number"
        except ValueError:
            return None, f"has a non-numeric weight {weight!r}"
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
        return None, f"has no usable weight ({weight!r})"
    return BenchCriterion(dimension, index, weight, text.strip()), note


# Writing the dataset and task rubrics -------------------------------------------------------------

@dataclass(frozen=True)
class WeightStats:
    count: int
    minimum: float
    maximum: float
    mean: float
    negative: int
    zero: int


@dataclass(frozen=True)
class IllugenbenchImport:
    """What `import_bench` did."""

    tasks: int
    criteria: int
    by_dimension: Mapping[str, int]
    by_category: Mapping[str, int]
    weights: WeightStats
    without_positive_weight: tuple[str, ...]
    missing_references: tuple[str, ...]
    unknown_dimensions: tuple[str, ...]
    references: int                    # reference images placed under references/
    linked: int                        # of which hard links
    tasks_dir: Path
    manifest: Path
    problems: tuple[Problem, ...] = ()
    written: tuple[Path, ...] = field(default=())

    def summary(self) -> str:
        w = self.weights
        lines = [
            f"IlluGenBench import: {self.tasks} tasks, {self.criteria} criteria",
            "  by dimension: " + ", ".join(f"{k} {v}" for k, v in self.by_dimension.items()),
            "  by category: " + (", ".join(f"{k} {v}" for k, v in self.by_category.items()) or "none given"),
            f"  weights: min {w.minimum:g}, max {w.maximum:g}, mean {w.mean:.3f}; {w.negative} negative, {w.zero} zero",
            f"  tasks without a positive weight: {len(self.without_positive_weight)}",
            f"  missing reference images: {len(self.missing_references)}",
            f"  unknown dimensions: {', '.join(self.unknown_dimensions) or 'none'}",
            f"  references: {self.references} placed ({self.linked} hard-linked)",
            f"  task rubrics: {self.tasks_dir}",
            f"  manifest: {self.manifest}",
        ]
        lines.extend(problem_lines(self.problems))
        return "\n".join(lines)


def safe_name(key: str) -> str:
    """A file name stem for a task key: the key without its image extension, unsafe characters `_`."""
    stem = key.rsplit("/", 1)[-1]
    stem = re.sub(r"\.(jpe?g|png|webp|gif|bmp|tiff?)$", "", stem, flags=re.IGNORECASE) or stem
    stem = _UNSAFE.sub("_", stem).strip("._-")
    return stem or "task"


def _unique_names(keys: Sequence[str]) -> dict[str, str]:
    """key -> stem, unique also on case-insensitive file systems (later keys get -2, -3, ...)."""
    taken: set[str] = set()
    names = {}
    for key in keys:
        stem = base = safe_name(key)
        n = 1
        while stem.lower() in taken:
            n += 1
            stem = f"{base}-{n}"
        taken.add(stem.lower())
        names[key] = stem
    return names


def import_bench(bench_path: Path, images: Path, out: Path, prompt_field: str | None = None) -> IllugenbenchImport:
    """Write `out/tasks/*.yaml`, `out/manifest.jsonl` and `out/references/` from the benchmark file."""
    import yaml

    bench = read_bench(Path(bench_path), prompt_field)
    images, out = Path(images), Path(out)
    if not images.is_dir():
        raise UserError(Problem(Location(images), "reference images directory not found", fix="give the directory holding <key> (or <stem>.png) per task"))
    problems = list(bench.problems)
    tasks_dir = out / "tasks"
    tasks_dir.mkdir(parents=True, exist_ok=True)
    names = _unique_names([t.key for t in bench.tasks])
    _clear_stale(tasks_dir, {f"{n}.yaml" for n in names.values()})
    base_dimensions = _base_dimensions() if any(t.extra_dimensions for t in bench.tasks) else []
    out_root = out.resolve()
    image_root = images.resolve()
    placed = linked = 0
    missing: list[str] = []
    rows: list[dict[str, Any]] = []
    written: list[Path] = []
    for task in bench.tasks:
        name = names[task.key]
        file = tasks_dir / f"{name}.yaml"
        write_atomic(file, _task_yaml(task, bench.path.name, base_dimensions, yaml))
        written.append(file)
        row: dict[str, Any] = {"id": task.key}
        if task.prompt is not None:
            row["prompt"] = task.prompt
        if task.category is not None:
            row["category"] = task.category
        source = _reference(image_root, task.key)
        if source is None:
            missing.append(task.key)
            problems.append(Problem(Location(images), f"task {task.key!r}: no reference image ({' or '.join(_reference_names(task.key))})", field=task.key,
                                    fix="put the reference image in the images directory; the task's manifest line has no reference_image"))
        elif source.is_relative_to(out_root):
            row["reference_image"] = source.relative_to(out_root).as_posix()
        else:
            rel = Path("references") / f"{name}{source.suffix.lower()}"
            linked += place_file(source, out / rel)
            placed += 1
            row["reference_image"] = rel.as_posix()
        rows.append(row)
    manifest = out / "manifest.jsonl"
    write_atomic(manifest, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    written.append(manifest)
    weights = [c.weight for t in bench.tasks for c in t.criteria]
    by_dimension = Counter(c.dimension for t in bench.tasks for c in t.criteria)
    order = [d for d in DIMENSIONS if d in by_dimension] + sorted(d for d in by_dimension if d not in DIMENSIONS)
    stats = WeightStats(
        len(weights), min(weights, default=0.0), max(weights, default=0.0), sum(weights) / len(weights) if weights else 0.0,
        sum(w < 0 for w in weights), sum(w == 0 for w in weights),
    )
    return IllugenbenchImport(
        tasks=len(bench.tasks), criteria=len(weights), by_dimension={d: by_dimension[d] for d in order},
        by_category=dict(sorted(Counter(t.category or "(none)" for t in bench.tasks).items())), weights=stats,
        without_positive_weight=tuple(t.key for t in bench.tasks if not t.has_positive_weight), missing_references=tuple(missing),
        unknown_dimensions=tuple(sorted({d for t in bench.tasks for d in t.extra_dimensions})), references=placed, linked=linked,
        tasks_dir=tasks_dir, manifest=manifest, problems=tuple(problems), written=tuple(written),
    )


def _reference_names(key: str) -> list[str]:
    """Where a task's reference image may be: `<key>`, falling back to `<stem>.png`."""
    stem = key.rsplit(".", 1)[0] if "." in key.rsplit("/", 1)[-1] else key
    return list(dict.fromkeys([key, f"{stem}.png"]))


def _reference(root: Path, key: str) -> Path | None:
    for name in _reference_names(key):
        candidate = (root / name).resolve()
        if candidate.is_relative_to(root) and candidate.is_file():
            return candidate
    return None


def _clear_stale(tasks_dir: Path, keep: set[str]) -> None:
    """Remove task files of an earlier import that this one does not write; refuse to touch others."""
    foreign = []
    for file in sorted(tasks_dir.iterdir()):
        if file.suffix not in (".yaml", ".yml") or not file.is_file():
            continue
        with file.open("r", encoding="utf-8", errors="replace") as handle:
            ours = handle.readline().startswith(MARKER)
        if not ours:
            foreign.append(file)
        elif file.name not in keep:
            file.unlink()
    if foreign:
        raise UserError([Problem(Location(f), "a rubric file not written by this importer is in the output's tasks/ directory", fix="import into an empty directory, or move the file")
                         for f in foreign])


def _base_dimensions() -> list[dict[str, Any]]:
    import yaml

    from rubric_judge.rubrics.loader import LIBRARY

    data = yaml.safe_load((LIBRARY / BASE.removeprefix("builtin:")).read_text(encoding="utf-8"))
    return list(data["dimensions"])


class _Quoted(str):
    pass


class _Dumper:
    """A safe dumper (libyaml's when available: 10x faster than PyYAML's emitter) that quotes `_Quoted`."""

    cls = None

    @classmethod
    def get(cls, yaml):
        if cls.cls is None:
            class Dumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):
                pass

            Dumper.add_representer(_Quoted, lambda d, v: d.represent_scalar("tag:yaml.org,2002:str", str(v), style='"'))
            cls.cls = Dumper
        return cls.cls


def _task_yaml(task: BenchTask, source: str, base_dimensions: list[dict[str, Any]], yaml) -> str:
    from rubric_judge.rubrics.templates import literal

    doc: dict[str, Any] = {"extends": BASE, "task": _Quoted(task.key)}
    if task.extra_dimensions:
        doc["dimensions"] = base_dimensions + [{"id": d, "name": d.replace("_", " ").capitalize()} for d in task.extra_dimensions]
    # Criterion texts are templates (`{{ body_part }}`): the benchmark's own braces are escaped so
    # that they reach the judge as written.
    doc["criteria"] = [{"id": c.id, "dimension": c.dimension, "weight": c.weight, "text": literal(c.description)} for c in task.criteria]
    body = yaml.dump(doc, Dumper=_Dumper.get(yaml), sort_keys=False, allow_unicode=True, width=10_000, default_flow_style=False)
    header = f"{MARKER} from {json.dumps(source, ensure_ascii=False)}; re-importing overwrites this file.\n"
    return header + body


# Importing official verdicts ------------------------------------------------------------------------

POLICIES = {
    # policy: (rubric id, missing_output, unscored)
    "default": (RUBRIC_ID, "fail", "exclude"),
    "reference": (REFERENCE_RUBRIC_ID, "skip", "fail"),
}
_SATISFIED = {"satisfied": True, "not satisfied": False, "unsatisfied": False}


@dataclass(frozen=True)
class ResultsImport:
    """What `import_results` wrote: run ids per policy and what the results file held."""

    db: Path
    model: str
    judge_model: str
    runs: Mapping[str, str]                    # policy -> run id
    tasks: int                                 # tasks in the benchmark
    tasks_with_results: int
    missing_outputs: tuple[str, ...]           # benchmark tasks absent from the results file
    verdicts: int                              # criteria with a usable verdict
    unscored: int                              # criteria whose verdict is missing or unreadable
    scores: Mapping[str, Mapping[str, float | None]]   # policy -> dimension ('overall' first) -> score
    problems: tuple[Problem, ...] = ()

    def summary(self) -> str:
        lines = [f"IlluGenBench results for {self.model} ({self.judge_model}): {self.tasks_with_results} of {self.tasks} tasks have results,"
                 f" {self.verdicts} verdicts, {self.unscored} unscored, {len(self.missing_outputs)} tasks missing"]
        policies = [p for p in ("reference", "default") if p in self.scores]
        dims = list(dict.fromkeys(d for p in policies for d in self.scores[p]))
        lines.append("  " + "dimension".ljust(24) + "".join(p.rjust(12) for p in policies) + ("  difference" if len(policies) == 2 else ""))
        for d in dims:
            values = [self.scores[p].get(d) for p in policies]
            row = "  " + d.ljust(24) + "".join(_fmt(v).rjust(12) for v in values)
            if len(values) == 2 and None not in values:
                row += f"  {values[1] - values[0]:+.4f}"
            lines.append(row)
        lines.extend(problem_lines(self.problems))
        return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _normalise(text: str) -> str:
    return " ".join(text.split()).casefold()


def _verdict(evaluation: Any) -> tuple[bool | None, float | None, str | None, str]:
    """(met, confidence, reasoning, why unscored)."""
    if not isinstance(evaluation, dict):
        return None, None, None, "no evaluation"
    raw = evaluation.get("verdict")
    met = _SATISFIED.get(" ".join(raw.replace("_", " ").split()).casefold()) if isinstance(raw, str) else None
    confidence = evaluation.get("confidence")
    confidence = float(confidence) if isinstance(confidence, (int, float)) and not isinstance(confidence, bool) and math.isfinite(confidence) else None
    reasoning = evaluation.get("reasoning")
    reasoning = reasoning if isinstance(reasoning, str) else None
    if met is None:
        return None, confidence, reasoning, f"unreadable verdict {raw!r}"
    return met, confidence, reasoning, ""


def import_results(results: Path, bench_path: Path, model: str, db: Path, policies: Sequence[str] = ("reference", "default"),
                   prompt_field: str | None = None, allow_mismatch: bool = False) -> ResultsImport:
    """Write the official script's verdicts as one run per policy; returns scores per policy."""
    from rubric_judge.rubrics.loader import load_rubric_set
    from rubric_judge.rubrics.schema import MissingOutputPolicy
    from rubric_judge.store.db import ResultStore, RunInfo, write_imported_run

    results, bench_path = Path(results), Path(bench_path)
    unknown = [p for p in policies if p not in POLICIES]
    if unknown or not policies:
        raise UserError(f"unknown policy {unknown}: use reference, default or both")
    bench = read_bench(bench_path, prompt_field)
    merged = _merged_objects(results, _read_json(results, "results file"), "results file")
    where = Location(results)
    problems: list[Problem] = []
    mismatches: list[Problem] = []
    tasks = bench.by_key()
    for key in merged:
        if key not in tasks:
            problems.append(Problem(where, f"results for {key!r}, which is not a task of the benchmark file; ignored", field=key))
    samples, calls, verdicts = [], [], []
    missing: list[str] = []
    usable = unscored = 0
    for task in bench.tasks:
        entry = merged.get(task.key, (None, ""))[0]
        fields = {k: v for k, v in (("prompt", task.prompt), ("category", task.category)) if v is not None}
        if entry is None:
            missing.append(task.key)
            samples.append([task.key, task.category, None, ["generated_image"], json.dumps(fields)])
            verdicts.extend([task.key, c.id, 0, c.dimension, c.weight, None, None, None, None, "missing_output", None] for c in task.criteria)
            continue
        samples.append([task.key, task.category, None, [], json.dumps(fields)])
        evaluations = entry.get("rubric_eval") if isinstance(entry, dict) else None
        if not isinstance(evaluations, dict):
            problems.append(Problem(where, f"results for {task.key!r} have no `rubric_eval` object: every verdict of the task is unscored", field=task.key))
            evaluations = {}
        for dimension, items in evaluations.items():
            if dimension not in {c.dimension for c in task.criteria}:
                problems.append(Problem(where, f"results for {task.key!r} judge dimension {dimension!r}, which the task does not have; ignored", field=f"{task.key}.rubric_eval"))
            elif isinstance(items, list) and len(items) > max(c.index for c in task.criteria if c.dimension == dimension):
                problems.append(Problem(where, f"results for {task.key!r} have {len(items)} {dimension} entries, more than the benchmark's criteria; the extra ones are ignored",
                                        field=f"{task.key}.rubric_eval.{dimension}"))
        for dimension in dict.fromkeys(c.dimension for c in task.criteria):
            items = evaluations.get(dimension)
            call_id = f"{task.key}/{dimension}/0"
            if isinstance(items, list):
                calls.append([call_id, task.key, dimension, 0, f"imported:{results.name}", False, 0, "ok", None, None, None, None, None, None,
                              json.dumps(items, ensure_ascii=False, default=str)])
            elif items is not None:
                problems.append(Problem(where, f"results for {task.key!r}: {dimension} is not a list; its verdicts are unscored", field=f"{task.key}.rubric_eval.{dimension}"))
            for c in (c for c in task.criteria if c.dimension == dimension):
                item = items[c.index - 1] if isinstance(items, list) and c.index <= len(items) else None
                label = f"{task.key}.rubric_eval.{dimension}[{c.index}]"
                if not isinstance(item, dict):
                    why = "no entry"
                    met = confidence = reasoning = None
                else:
                    described = item.get("description")
                    if isinstance(described, str) and _normalise(described) != _normalise(c.description):
                        mismatches.append(Problem(where, f"{c.id} of {task.key!r}: the results describe {described[:80]!r}, the benchmark {c.description[:80]!r}", field=label,
                                                  fix="use the benchmark file the results were produced with"))
                    weight = item.get("weight")
                    if isinstance(weight, (int, float)) and not isinstance(weight, bool) and weight != c.weight:
                        problems.append(Problem(where, f"{c.id} of {task.key!r}: weight {weight:g} in the results, {c.weight:g} in the benchmark; the benchmark's is used", field=label))
                    met, confidence, reasoning, why = _verdict(item.get("evaluation"))
                if met is None:
                    unscored += 1
                    verdicts.append([task.key, c.id, 0, c.dimension, c.weight, None, None, confidence, reasoning or f"imported: {why}", "unscored",
                                     call_id if isinstance(items, list) else None])
                else:
                    usable += 1
                    verdicts.append([task.key, c.id, 0, c.dimension, c.weight, met, None, confidence, reasoning, "ok", call_id])
    if mismatches and not allow_mismatch:
        raise UserError(mismatches + [Problem(where, f"{len(mismatches)} criteria differ from the benchmark file; nothing was written",
                                              fix="check that --bench is the file the results were produced with, or pass --allow-mismatch")])
    problems.extend(mismatches)
    base = load_rubric_set(BASE)[0]
    titles = {d.id: d.title for d in base.dimensions}
    criteria = [[task.key, c.id, position, c.dimension, titles.get(c.dimension), c.weight, c.description]
                for task in bench.tasks for position, c in enumerate(task.criteria)]
    judge_model = f"imported:{results.name}"
    store = ResultStore(Path(db))
    runs: dict[str, str] = {}
    scores: dict[str, dict[str, float | None]] = {}
    try:
        for policy in policies:
            rubric_id, missing_output, unscored_policy = POLICIES[policy]
            scoring = base.scoring.model_copy(update={"missing_output": MissingOutputPolicy(missing_output), "unscored": unscored_policy})
            rubric = base.model_copy(update={"rubric": rubric_id, "scoring": scoring})
            config = {"imported_from": str(results), "bench": str(bench_path), "policy": policy,
                      "source": "IlluGenBench official evaluation script", "missing_output": missing_output, "unscored": unscored_policy}
            run_id = write_imported_run(store, RunInfo(rubric, model, judge_model, None, config), samples, calls, verdicts, criteria)
            runs[policy] = run_id
            rows = store.con.execute("SELECT dimension, score FROM leaderboard WHERE run_id = ?", [run_id]).fetchall()
            by_dim = dict(rows)
            order = ["overall", *[d for d in DIMENSIONS if d in by_dim], *sorted(d for d in by_dim if d != "overall" and d not in DIMENSIONS)]
            scores[policy] = {d: by_dim.get(d) for d in order if d in by_dim}
    finally:
        store.close()
    return ResultsImport(
        db=Path(db), model=model, judge_model=judge_model, runs=runs, tasks=len(bench.tasks), tasks_with_results=len(bench.tasks) - len(missing),
        missing_outputs=tuple(missing), verdicts=usable, unscored=unscored, scores=scores, problems=tuple(problems),
    )
