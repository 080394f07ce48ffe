"""Load rubric files: find them, read them as safe YAML, resolve and merge `extends`, validate.

`load_rubric_file` returns a validated `Rubric` or raises `UserError` listing every problem found,
each with file:line:column, the field path, what was expected and a fix (worded and located by
`diagnostics`). `extends` targets resolve relative to the extending file and must stay inside
the rubric root (or the bundled library, written `builtin:illugenbench/base.yaml`): a rubric
cannot read arbitrary files.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from rubric_judge.errors import Location, Problem, UserError
from rubric_judge.rubrics import diagnostics, schema, validation
from rubric_judge.rubrics.yamlsrc import Located, load_yaml

LIBRARY = Path(__file__).parent / "library"
BUILTIN_PREFIX = "builtin:"
RUBRIC_SUFFIXES = (".yaml", ".yml")
MAX_FILE_BYTES = 2_000_000


def load_rubric_file(path: Path, root: Path | None = None) -> schema.Rubric:
    """Load, merge, validate and template-check one rubric file.

    Raises UserError with every problem found. When the schema itself fails, the cross-field
    and template checks still run on whatever parts validate, so one run reports a type error
    and an unknown dimension together. A rubric marked `abstract: true` (a base for others) is
    validated as a fragment: what it declares must be right, but the judge part (dimensions,
    prompt, scoring) and the inputs may be left to the rubrics that extend it. A problem in a
    value inherited through `extends` is placed in the base file and names the extending file.
    """
    path = Path(path)
    root = (root or path.parent).resolve()
    located = _resolve(path, root, chain=())
    data = dict(located.data)
    data.pop("extends", None)
    if data.get("abstract") is True:
        problems, rubric = _fragment_problems(data, located, path)
    else:
        problems, rubric = _whole_problems(data, located, path)
    if problems:
        raise UserError(diagnostics.in_order([_inherited(p, located, path) for p in problems]))
    assert rubric is not None
    return rubric


def _whole_problems(data: dict[str, Any], located: Located, path: Path) -> tuple[list[Problem], schema.Rubric | None]:
    try:
        rubric = schema.Rubric.model_validate(data)
    except ValidationError as exc:
        problems = diagnostics.pydantic_problems(exc.errors(), located, path)
        partial, unusable = validation.partial_rubric(data)
        problems += diagnostics.located_problems(validation.cross_field_problems(partial, unusable), located, path)
        if "inputs" not in unusable:
            problems += diagnostics.template_problems(partial, located, path, unusable=unusable)
        return problems, None
    problems = diagnostics.located_problems(validation.cross_field_problems(rubric, frozenset()), located, path)
    problems += diagnostics.template_problems(rubric, located, path)
    return problems, rubric


def _fragment_problems(data: dict[str, Any], located: Located, path: Path) -> tuple[list[Problem], schema.Rubric | None]:
    """An abstract base's problems: those of the fields it gives; a missing field is left to the
    rubrics that extend it (each of them is validated whole)."""
    errors = []
    try:
        schema.Rubric.model_validate(data)
    except ValidationError as exc:
        errors = [e for e in exc.errors() if not (e["type"] == "missing" and len(e["loc"]) == 1 and e["loc"][0] != "rubric")]
    problems = diagnostics.pydantic_problems(errors, located, path)
    partial, unusable = validation.partial_rubric(data)
    absent = frozenset(name for name in schema.Rubric.model_fields if name not in data)
    problems += diagnostics.located_problems(validation.cross_field_problems(partial, unusable | absent, fragment=True), located, path)
    if "inputs" not in unusable | absent:
        problems += diagnostics.template_problems(partial, located, path, unusable=unusable | absent)
    return problems, None if problems else partial


def _inherited(problem: Problem, located: Located, path: Path) -> Problem:
    """A problem placed in a base file, worded for the file that extends it: its message names
    that file and its `extends` line, and its fix says how to override the value there."""
    file = problem.location.file
    if file is None or Path(file).resolve() == path.resolve():
        return problem
    extends = located.where(("extends",), path)
    child = path.name
    override = _override_fix(problem.field, located.data, child)
    return replace(
        problem,
        message=f"{problem.message} (inherited by {extends.file}:{extends.line} through `extends`)",
        fix=f"{problem.fix}; either fix it in {Path(file).name} (every rubric that extends it changes) or {override}" if problem.fix else override,
    )


def _override_fix(field: str, data: dict[str, Any], child: str) -> str:
    """How the extending file overrides an inherited value at `field` (e.g. `criteria[2].dimension`)."""
    match = re.match(r"^(criteria|dimensions)\[(\d+)\]", field)
    if match:
        entries = data.get(match[1])
        index = int(match[2])
        entry_id = _entry_id(entries[index]) if isinstance(entries, list) and index < len(entries) else None
        if entry_id:
            what = "criterion" if match[1] == "criteria" else "dimension"
            return (f"in {child}, restate {what} `{entry_id}` under `{match[1]}:` (an entry with the same id replaces the inherited one) "
                    f"or drop it with `remove: [{entry_id}]`")
    top = field.split(".")[0].split("[")[0] or "the field"
    return f"in {child}, set `{field or top}` to override the inherited value (mappings merge key by key, other values replace)"


def load_rubric(path: Path | str) -> schema.Rubric:
    """One validated rubric from a file or the library.

    Args:
        path: a rubric file, or a library rubric such as `builtin:medgen/holistic-with-gt.yaml`.

    Returns:
        The rubric, with `extends` resolved.

    Raises:
        UserError: every problem in the file (and the files it extends), each with file:line and a fix.
    """
    rubrics = load_rubric_set(path)
    if len(rubrics) != 1:
        raise UserError(Problem(Location(Path(path)), f"holds {len(rubrics)} rubrics, not one",
                                fix="name one rubric file, or load a directory of task rubrics with load_rubric_set"))
    return rubrics[0]


def load_rubric_set(path: Path | str) -> list[schema.Rubric]:
    """One rubric file, or every rubric in a directory (task files), or a library rubric named
    `builtin:medgen/holistic-with-gt.yaml`; all problems at once."""
    text = str(path)
    if text.startswith(BUILTIN_PREFIX):
        path = LIBRARY / text[len(BUILTIN_PREFIX):]
        if not path.resolve().is_relative_to(LIBRARY.resolve()) or not path.is_file():
            available = ", ".join(sorted(f"{BUILTIN_PREFIX}{p.relative_to(LIBRARY)}" for p in LIBRARY.rglob("*.yaml")))
            raise UserError(Problem(Location(None), f"no library rubric {text}", fix=f"library rubrics: {available}"))
    rubrics, problems, abstract = [], [], []
    for file, root in discover([Path(path)]):
        try:
            rubric = load_rubric_file(file, root)
        except UserError as exc:
            problems.extend(exc.problems)
            continue
        # An abstract base (`abstract: true`) is validated with its directory but never scored.
        (abstract if rubric.abstract else rubrics).append((file, rubric))
    if problems:
        raise UserError(problems)
    if not rubrics and abstract:
        file, rubric = abstract[0]
        raise UserError(Problem(Location(file), f"rubric {rubric.rubric!r} is abstract (`abstract: true`): a base for other rubrics, never scored",
                                field="abstract", fix="score a rubric that `extends` it, or remove `abstract: true` if it is complete"))
    if not rubrics:
        raise UserError(
            Problem(Location(Path(path)), "no rubric files (*.yaml) found", fix="point at a rubric file or a directory of them")
        )
    return [rubric for _, rubric in rubrics]


def discover(paths: list[Path]) -> list[tuple[Path, Path]]:
    """Expand files and directories into (rubric file, its root) pairs, sorted per argument."""
    found: list[tuple[Path, Path]] = []
    for given in paths:
        if given.is_dir():
            files = sorted(p for p in given.rglob("*") if p.suffix in RUBRIC_SUFFIXES and p.is_file())
            found.extend((f, given) for f in files)
        elif given.is_file():
            found.append((given, given.parent))
        else:
            raise UserError(Problem(Location(given), "no such file or directory", fix="check the path"))
    return found


def _resolve(path: Path, root: Path, chain: tuple[tuple[Path, Location], ...]) -> Located:
    """Read `path` and, through its `extends` chain, the rubrics it builds on, merged.

    `chain` holds each extending file met so far with the location of its `extends` line, so
    a cycle is reported at the `extends` line where it starts.
    """
    resolved = path.resolve()
    located = _read(resolved, path)
    if not isinstance(located.data, dict):
        kind = "a list" if isinstance(located.data, list) else f"the single value {located.data!r}"
        raise UserError(
            Problem(
                located.where((), path),
                f"a rubric file must be a YAML mapping of `key: value` lines, but this file is {kind}",
                fix="remove the leading `- ` (and unindent) so the file starts with `rubric: <id>`"
                if isinstance(located.data, list)
                else "start with `rubric: <id>`",
            )
        )
    target = located.data.get("extends")
    if target is None:
        if "remove" in located.data:
            raise UserError(Problem(located.where(("remove",), path), "`remove` drops inherited criteria or dimensions, but this file extends nothing",
                                    field="remove", fix="add `extends: base.yaml`, or delete the `remove:` line and the entries themselves"))
        return located
    where = located.where(("extends",), path)
    if not isinstance(target, str) or not target.strip():
        raise UserError(
            Problem(
                where,
                "`extends` must be a file path",
                field="extends",
                fix="write e.g. `extends: base.yaml` or `extends: builtin:illugenbench/base.yaml`",
            )
        )
    base_path = _extends_target(target.strip(), path, root, where)
    links = (*chain, (resolved, where))
    files = [file for file, _ in links]
    if base_path in files:
        start = files.index(base_path)
        cycle = " -> ".join(file.name for file in (*files[start:], base_path))
        raise UserError(
            Problem(
                links[start][1],
                f"`extends` cycle: {cycle}",
                field="extends",
                fix=f"remove `extends:` from one of {', '.join(dict.fromkeys(f.name for f in files[start:]))}: a rubric cannot build on itself",
            )
        )
    base = _resolve(base_path, root if not target.startswith(BUILTIN_PREFIX) else LIBRARY.resolve(), links)
    return _merge(base, located, path)


def _extends_target(target: str, path: Path, root: Path, where: Location) -> Path:
    if target.startswith(BUILTIN_PREFIX):
        base_dir, relative, allowed = LIBRARY, target[len(BUILTIN_PREFIX) :], LIBRARY.resolve()
    else:
        base_dir, relative, allowed = path.parent, target, root
    candidate = (base_dir / relative).resolve()
    if Path(relative).suffix not in RUBRIC_SUFFIXES:
        raise UserError(
            Problem(
                where,
                f"`extends` must name a .yaml file, got {target!r}",
                field="extends",
                fix="point at another rubric file, e.g. `extends: base.yaml`",
            )
        )
    if not candidate.is_relative_to(allowed):
        raise UserError(
            Problem(
                where,
                f"`extends: {target}` points outside the rubric directory {allowed}; a rubric may only build on rubrics inside it",
                field="extends",
                fix="move the base rubric into the rubric directory (or pass a wider `--root`), or use `builtin:` for library rubrics",
            )
        )
    if not candidate.is_file():
        if target.startswith(BUILTIN_PREFIX):
            available = sorted(p.relative_to(LIBRARY).as_posix() for p in LIBRARY.rglob("*") if p.suffix in RUBRIC_SUFFIXES)
            close = difflib.get_close_matches(relative, available, n=1)
            hint = f"did you mean `builtin:{close[0]}`? " if close else ""
            fix = f"{hint}library rubrics: {', '.join(available)}"
        else:
            folder = candidate.parent
            nearby = sorted(p.name for p in folder.iterdir() if p.suffix in RUBRIC_SUFFIXES and p.is_file()) if folder.is_dir() else []
            close = difflib.get_close_matches(candidate.name, nearby, n=1)
            if close:
                fix = f"did you mean `{(Path(relative).parent / close[0]).as_posix()}`? the path is relative to the extending file's folder"
            elif nearby:
                shown = ", ".join(nearby[:6]) + (", ..." if len(nearby) > 6 else "")
                fix = f"the path is relative to the extending file's folder; rubric files in {folder.name}/: {shown}"
            else:
                fix = f"the path is relative to the extending file's folder, and {folder.name}/ has no rubric files"
        raise UserError(Problem(where, f"`extends` target not found: {target}", field="extends", fix=fix))
    return candidate


def _read(resolved: Path, shown: Path) -> Located:
    try:
        raw = resolved.read_bytes()
    except OSError as exc:
        raise UserError(Problem(Location(shown), f"cannot read file: {exc.strerror}", fix="check the path and permissions")) from None
    if len(raw) > MAX_FILE_BYTES:
        raise UserError(
            Problem(
                Location(shown),
                f"file is {len(raw)} bytes; rubric files are limited to {MAX_FILE_BYTES}",
                fix="split it into task files that `extends` a base",
            )
        )
    return _parse(raw, shown)


@lru_cache(maxsize=512)
def _parse(raw: bytes, shown: Path) -> Located:
    """Parse one file; cached by content so 296 task files extending one base parse it once
    (and an edited file is never served stale, whatever the file system's mtime resolution)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        where = Location(shown, line, column)
        raise UserError(
            Problem(
                where,
                f"not UTF-8 text: byte 0x{raw[exc.start]:02x} at byte offset {exc.start} (probably Latin-1 or Windows-1252)",
                fix="save the file as UTF-8 (re-type the accented character if needed)",
            )
        ) from None
    return load_yaml(text, shown)


# Lists merged by id: a child entry with an inherited id replaces that entry in place.
_BY_ID = ("dimensions", "criteria")


def _entry_id(entry: Any) -> str | None:
    """A criteria or dimensions entry's id (a dimension may be written as its bare id)."""
    if isinstance(entry, str):
        return entry
    if isinstance(entry, dict) and isinstance(entry.get("id"), str):
        return entry["id"]
    return None


def _merge(base: Located, child: Located, child_path: Path) -> Located:
    """Child values override the base's; mappings merge; `criteria` and `dimensions` merge by
    id: a child entry with an inherited id replaces it (in the base's order), others append.
    The child's `remove: [ids]` drops inherited criteria and dimensions first (a removed
    dimension takes its inherited criteria with it). `abstract` is never inherited.
    Locations follow the values: an inherited entry keeps its line in the base file."""
    data = dict(base.data)
    for key in ("extends", "abstract", "remove"):
        data.pop(key, None)
    removed = _removed_ids(base, child, child_path)
    base_dimensions = base.data.get("dimensions")
    removed_dimensions = removed & {_entry_id(d) for d in base_dimensions} if isinstance(base_dimensions, list) else set()
    index_maps: dict[str, tuple[dict[int, int], dict[int, int]]] = {}
    replaced: set[str] = set()
    for key, value in child.data.items():
        if key in ("extends", "remove"):
            continue
        current = data.get(key)
        if key in _BY_ID and isinstance(value, list) and isinstance(current, list):
            data[key], index_maps[key] = _merge_by_id(current, value, removed, removed_dimensions)
        elif isinstance(value, dict) and isinstance(current, dict):
            data[key] = {**current, **value}
        else:
            data[key] = value
            replaced.add(key)
    # `remove` also applies to a list the child does not restate.
    for key in _BY_ID:
        if key not in index_maps and isinstance(data.get(key), list) and removed:
            data[key], index_maps[key] = _merge_by_id(data[key], [], removed, removed_dimensions)

    def moved(path: tuple[Any, ...], side: int) -> tuple[Any, ...] | None:
        if len(path) >= 2 and path[0] in index_maps and isinstance(path[1], int):
            new = index_maps[path[0]][side].get(path[1])
            return None if new is None else (path[0], new, *path[2:])
        return path

    def base_kept(path: tuple[Any, ...]) -> tuple[Any, ...] | None:
        if path and path[0] in replaced:
            return None
        return moved(path, 0)

    locations: dict[tuple[Any, ...], Any] = {}
    starts: dict[tuple[Any, ...], Any] = {}
    for source, side in ((base, 0), (child, 1)):
        for table, target in ((source.locations, locations), (source.scalar_starts, starts)):
            for path, value in table.items():
                new_path = base_kept(path) if side == 0 else moved(path, 1)
                if new_path is not None:
                    target[new_path] = value
    return Located(data=data, locations=locations, scalar_starts=starts)


def _merge_by_id(
    inherited: list[Any], own: list[Any], removed: set[str], removed_dimensions: set[str | None]
) -> tuple[list[Any], tuple[dict[int, int], dict[int, int]]]:
    """Merge a list by entry id; returns the list and where each base and child index went.
    An inherited criterion of a removed dimension is dropped with it."""
    own_ids = {_entry_id(entry): k for k, entry in enumerate(own) if _entry_id(entry) is not None}
    merged: list[Any] = []
    base_map: dict[int, int] = {}
    child_map: dict[int, int] = {}
    taken: set[int] = set()
    for i, entry in enumerate(inherited):
        entry_id = _entry_id(entry)
        if entry_id in own_ids:
            k = own_ids[entry_id]
            child_map[k] = len(merged)
            taken.add(k)
            merged.append(own[k])
            continue
        in_removed_dimension = isinstance(entry, dict) and entry.get("dimension") in removed_dimensions
        if entry_id in removed or in_removed_dimension:
            continue
        base_map[i] = len(merged)
        merged.append(entry)
    for k, entry in enumerate(own):
        if k not in taken:
            child_map[k] = len(merged)
            merged.append(entry)
    return merged, (base_map, child_map)


def _removed_ids(base: Located, child: Located, child_path: Path) -> set[str]:
    """The child's `remove:` ids, each checked against what it inherits."""
    value = child.data.get("remove")
    if value is None:
        return set()
    fix = "write `remove: [criterion-or-dimension-id, ...]` naming inherited criteria or dimensions"
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise UserError(Problem(child.where(("remove",), child_path), "`remove` must be a list of ids", field="remove", fix=fix))
    inherited = [_entry_id(e) for key in _BY_ID if isinstance(base.data.get(key), list) for e in base.data[key]]
    known = [i for i in inherited if i is not None]
    problems = []
    for index, name in enumerate(value):
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"did you mean `{close[0]}`? " if close else ""
            problems.append(Problem(child.where(("remove", index), child_path), f"`remove` names {name!r}, which no inherited criterion or dimension has",
                                    field=f"remove[{index}]", fix=f"{hint}inherited ids: {', '.join(dict.fromkeys(known)) or 'none'}"))
    if problems:
        raise UserError(problems)
    return set(value)
