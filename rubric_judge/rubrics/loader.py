"""Load rubric files: find them, read them as safe YAML, resolve and merge `extends`, validate.

`load_rubric_file` returns a validated `Rubric` or raises `UserError` listing every problem found,
each with file:line:column, the field path, what was expected and a fix (worded and located by
`diagnostics`). `extends` targets resolve relative to the extending file and must stay inside
the rubric root (or the bundled library, written `builtin:illugenbench/base.yaml`): a rubric
cannot read arbitrary files.
"""

from __future__ import annotations

import difflib
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
    and an unknown dimension together.
    """
    path = Path(path)
    root = (root or path.parent).resolve()
    located = _resolve(path, root, chain=())
    data = dict(located.data)
    data.pop("extends", None)
    try:
        rubric = schema.Rubric.model_validate(data)
    except ValidationError as exc:
        problems = diagnostics.pydantic_problems(exc.errors(), located, path)
        partial, unusable = validation.partial_rubric(data)
        problems += diagnostics.located_problems(validation.cross_field_problems(partial, unusable), located, path)
        if "inputs" not in unusable:
            problems += diagnostics.template_problems(partial, located, path, unusable=unusable)
        raise UserError(diagnostics.in_order(problems)) from None
    problems = diagnostics.located_problems(validation.cross_field_problems(rubric, frozenset()), located, path)
    problems += diagnostics.template_problems(rubric, located, path)
    if problems:
        raise UserError(diagnostics.in_order(problems))
    return rubric


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
    rubrics, problems = [], []
    for file, root in discover([Path(path)]):
        try:
            rubrics.append(load_rubric_file(file, root))
        except UserError as exc:
            problems.extend(exc.problems)
    if problems:
        raise UserError(problems)
    if not rubrics:
        raise UserError(
            Problem(Location(Path(path)), "no rubric files (*.yaml) found", fix="point at a rubric file or a directory of them")
        )
    return rubrics


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
    return _merge(base, located)


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


def _merge(base: Located, child: Located) -> Located:
    """Child values override the base's; mappings merge; `criteria` lists append."""
    data = dict(base.data)
    data.pop("extends", None)
    offset = len(base.data.get("criteria") or []) if isinstance(base.data.get("criteria"), list) else 0
    replaced: set[str] = set()
    for key, value in child.data.items():
        if key == "extends":
            continue
        current = data.get(key)
        if key == "criteria" and isinstance(value, list) and isinstance(current, list):
            data[key] = current + value
        elif isinstance(value, dict) and isinstance(current, dict):
            data[key] = {**current, **value}
        else:
            data[key] = value
            replaced.add(key)

    def shifted(path: tuple[Any, ...]) -> tuple[Any, ...]:
        if len(path) >= 2 and path[0] == "criteria" and isinstance(path[1], int):
            return ("criteria", path[1] + offset, *path[2:])
        return path

    def keep(path: tuple[Any, ...]) -> bool:
        return not (path and path[0] in replaced)

    locations = {p: loc for p, loc in base.locations.items() if keep(p)}
    locations.update({shifted(p): loc for p, loc in child.locations.items()})
    starts = {p: s for p, s in base.scalar_starts.items() if keep(p)}
    starts.update({shifted(p): s for p, s in child.scalar_starts.items()})
    return Located(data=data, locations=locations, scalar_starts=starts)
