"""Load rubric files: safe YAML, `extends` resolution, validation, and errors with locations.

`load_rubric` returns a validated `Rubric` or raises `UserError` listing every problem found,
each with file:line:column, the field path, what was expected and a fix. `extends` targets
resolve relative to the extending file and must stay inside the rubric root (or the bundled
library, written `builtin:illugenbench/base.yaml`): a rubric cannot read arbitrary files.
"""

from __future__ import annotations

import difflib
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from rubric_judge.errors import Location, Problem, UserError
from rubric_judge.rubrics import schema, templates
from rubric_judge.rubrics.yamlsrc import Located, dotted, load_yaml

LIBRARY = Path(__file__).parent / "library"
BUILTIN_PREFIX = "builtin:"
RUBRIC_SUFFIXES = (".yaml", ".yml")
MAX_FILE_BYTES = 2_000_000

# Which model describes the mapping at a (normalised) path, for did-you-mean on unknown keys.
_MODEL_AT: dict[tuple[Any, ...], type[schema.StrictModel]] = {
    (): schema.Rubric,
    ("judge",): schema.JudgeConfig,
    ("scoring",): schema.Scoring,
    ("cache",): schema.CacheConfig,
    ("criteria", int): schema.Criterion,
    ("dimensions", int): schema.Dimension,
    ("images", int): schema.ImageSlot,
    ("metrics", int): schema.MetricSpec,
    ("inputs", str): schema.InputSpec,
}

_FIXES = {
    "missing": "add this field",
    "string_type": "write text here (quote it if it looks like a number)",
    "int_parsing": "write a whole number",
    "int_type": "write a whole number",
    "float_parsing": "write a number",
    "float_type": "write a number",
    "bool_parsing": "write true or false",
    "list_type": "write a YAML list (lines starting with `- `)",
    "dict_type": "write a YAML mapping (`key: value` lines)",
    "model_type": "write a YAML mapping (`key: value` lines)",
    "string_pattern_mismatch": "use letters, digits, `_`, `-` and `.` only, starting with a letter or digit",
    "too_short": "add at least one entry",
    "string_too_short": "write a non-empty value",
}


def load_rubric(path: Path, root: Path | None = None) -> schema.Rubric:
    """Load, merge, validate and template-check one rubric file."""
    path = Path(path)
    root = (root or path.parent).resolve()
    located = _resolve(path, root, chain=())
    data = dict(located.data)
    data.pop("extends", None)
    try:
        rubric = schema.Rubric.model_validate(data)
    except ValidationError as exc:
        raise UserError([_problem_from_pydantic(err, located, path) for err in exc.errors()]) from None
    problems = [
        Problem(located.where(field_path, path), message, field=dotted(field_path), fix=fix)
        for field_path, message, fix in schema.cross_field_problems(rubric)
    ]
    if not problems:
        problems = _template_problems(rubric, located, path)
    if problems:
        raise UserError(problems)
    return rubric


def load_rubric_set(path: Path) -> list[schema.Rubric]:
    """One rubric file, or every rubric in a directory (task files); all problems at once."""
    rubrics, problems = [], []
    for file, root in discover([Path(path)]):
        try:
            rubrics.append(load_rubric(file, root))
        except UserError as exc:
            problems.extend(exc.problems)
    if problems:
        raise UserError(problems)
    if not rubrics:
        raise UserError(Problem(Location(Path(path)), "no rubric files (*.yaml) found", fix="point at a rubric file or a directory of them"))
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


def _resolve(path: Path, root: Path, chain: tuple[Path, ...]) -> Located:
    resolved = path.resolve()
    if resolved in chain:
        cycle = " -> ".join(p.name for p in (*chain, resolved))
        raise UserError(Problem(Location(path), f"`extends` cycle: {cycle}", field="extends", fix="remove one of the `extends` links"))
    located = _read(resolved, resolved.stat().st_mtime_ns if resolved.exists() else 0, path)
    if not isinstance(located.data, dict):
        raise UserError(Problem(located.where((), path), "a rubric file must be a YAML mapping", fix="start with `rubric: <id>`"))
    target = located.data.get("extends")
    if target is None:
        return located
    where = located.where(("extends",), path)
    if not isinstance(target, str) or not target.strip():
        raise UserError(Problem(where, "`extends` must be a file path", field="extends", fix="write e.g. `extends: builtin:illugenbench/base.yaml`"))
    base_path = _extends_target(target.strip(), path, root, where)
    base = _resolve(base_path, root if not target.startswith(BUILTIN_PREFIX) else LIBRARY.resolve(), (*chain, resolved))
    return _merge(base, located)


def _extends_target(target: str, path: Path, root: Path, where: Location) -> Path:
    if target.startswith(BUILTIN_PREFIX):
        base_dir, relative, allowed = LIBRARY, target[len(BUILTIN_PREFIX):], LIBRARY.resolve()
    else:
        base_dir, relative, allowed = path.parent, target, root
    candidate = (base_dir / relative).resolve()
    if Path(relative).suffix not in RUBRIC_SUFFIXES:
        raise UserError(Problem(where, f"`extends` must name a .yaml file, got {target!r}", field="extends", fix="point at another rubric file"))
    if not candidate.is_relative_to(allowed):
        raise UserError(
            Problem(where, f"`extends: {target}` points outside the rubric directory {allowed}", field="extends", fix="keep extended rubrics inside the rubric directory, or use `builtin:` for library rubrics")
        )
    if not candidate.is_file():
        available = sorted(str(p.relative_to(LIBRARY)) for p in LIBRARY.rglob("*.yaml")) if target.startswith(BUILTIN_PREFIX) else []
        fix = f"library rubrics: {', '.join(available)}" if available else "check the path; it is relative to the extending file"
        raise UserError(Problem(where, f"`extends` target not found: {target}", field="extends", fix=fix))
    return candidate


@lru_cache(maxsize=512)
def _read(resolved: Path, mtime_ns: int, shown: Path) -> Located:
    """Parse one file; cached so 296 task files extending one base parse the base once."""
    del mtime_ns  # part of the cache key only
    try:
        raw = resolved.read_bytes()
    except OSError as exc:
        raise UserError(Problem(Location(shown), f"cannot read file: {exc.strerror}", fix="check the path and permissions")) from None
    if len(raw) > MAX_FILE_BYTES:
        raise UserError(Problem(Location(shown), f"file is {len(raw)} bytes; rubric files are limited to {MAX_FILE_BYTES}", fix="split it into task files that `extends` a base"))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(Problem(Location(shown), f"not UTF-8 text (byte {exc.start})", fix="save the file as UTF-8")) from None
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


def _problem_from_pydantic(err: Any, located: Located, path: Path) -> Problem:
    loc = tuple(part for part in err["loc"] if isinstance(part, int) or not str(part).startswith(("function-", "constrained-")))
    kind = err["type"]
    where = located.where(loc, path)
    message = err["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, "):]
    if kind == "extra_forbidden":
        key = str(loc[-1])
        allowed = _allowed_keys(loc[:-1])
        close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
        hint = f"did you mean `{close[0]}`?" if close else "remove it"
        return Problem(where, f"unknown key `{key}`", field=dotted(loc), fix=f"{hint} allowed here: {', '.join(allowed)}")
    if kind in ("enum", "literal_error"):
        given = err.get("input")
        choices = err.get("ctx", {}).get("expected", "")
        return Problem(where, f"{given!r} is not allowed; expected {choices}", field=dotted(loc), fix="pick one of the listed values")
    if kind == "missing":
        return Problem(where, "required field is missing", field=dotted(loc), fix=f"add `{loc[-1]}:`" + _missing_hint(loc))
    return Problem(where, message, field=dotted(loc), fix=_FIXES.get(kind, "see the DSL reference in the README"))


def _missing_hint(loc: tuple[Any, ...]) -> str:
    hints = {"text": " with what the judge must check", "dimension": " naming one of the rubric's dimensions", "prompt": " with the judge's instructions (a Jinja2 template)"}
    return hints.get(str(loc[-1]), "")


def _allowed_keys(parent: tuple[Any, ...]) -> list[str]:
    normalised = tuple(int if isinstance(p, int) else p for p in parent)
    model = _MODEL_AT.get(normalised)
    if model is None and len(normalised) == 2:
        model = _MODEL_AT.get((normalised[0], str))
    if model is None:
        return []
    return [info.alias or name for name, info in model.model_fields.items()]


def _template_problems(rubric: schema.Rubric, located: Located, path: Path) -> list[Problem]:
    from rubric_judge.rubrics.compile import template_context, trial_fields

    allowed = set(rubric.inputs) | set(schema.TEMPLATE_GLOBALS)
    context = template_context(rubric, "sample-1", trial_fields(rubric), rubric.criteria or [_TRIAL_CRITERION], rubric.dimensions[0])
    problems = []
    for key in ("system", "prompt"):
        source = getattr(rubric, key)
        if source is None:
            continue
        try:
            templates.check(source, allowed, context)
        except templates.TemplateProblem as exc:
            start = located.scalar_starts.get((key,))
            where = located.where((key,), path)
            if start and exc.line:
                where = Location(path, start[0] + exc.line - 1, 1)
            problems.append(Problem(where, str(exc), field=key, fix=exc.fix))
    return problems


_TRIAL_CRITERION = schema.Criterion(id="trial-1", dimension="trial", weight=1.0, text="A criterion.")
