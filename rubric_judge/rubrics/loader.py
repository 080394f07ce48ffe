"""Load rubric files: safe YAML, `extends` resolution, validation, and errors with locations.

`load_rubric_file` returns a validated `Rubric` or raises `UserError` listing every problem found,
each with file:line:column, the field path, what was expected and a fix. `extends` targets
resolve relative to the extending file and must stay inside the rubric root (or the bundled
library, written `builtin:illugenbench/base.yaml`): a rubric cannot read arbitrary files.
"""

from __future__ import annotations

import difflib
import re
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
    "string_type": "write text here (quote it if it looks like a number, a date or true/false)",
    "int_parsing": "write a whole number, without quotes",
    "int_type": "write a whole number, without quotes",
    "int_from_float": "write a whole number, without a fraction",
    "float_parsing": "write a number, without quotes",
    "float_type": "write a number, without quotes",
    "bool_parsing": "write true or false",
    "bool_type": "write true or false",
    "list_type": "write a YAML list: `[a, b]` or lines starting with `- `",
    "dict_type": "write a YAML mapping: `key: value` lines indented under this key",
    "model_type": "write a YAML mapping: `key: value` lines indented under this key",
    "model_attributes_type": "write a YAML mapping: `key: value` lines indented under this key",
    "too_short": "add at least one entry",
    "string_too_short": "write a non-empty value",
}

# What a type error expected, in words, for the message.
_EXPECTED = {
    "string_type": "text",
    "int_parsing": "a whole number",
    "int_type": "a whole number",
    "int_from_float": "a whole number",
    "float_parsing": "a number",
    "float_type": "a number",
    "bool_parsing": "true or false",
    "bool_type": "true or false",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}

# A typical value for fields people get wrong, shown in fixes: `temperature: 0`.
_EXAMPLES = {
    ("rubric",): "my-lab/chest-xray",
    ("description",): "What this rubric judges, in one sentence.",
    ("task",): "heart-chambers",
    ("judge", "model"): "openai/gpt-4.1",
    ("judge", "temperature"): "0",
    ("judge", "max_tokens"): "1024",
    ("scoring", "threshold"): "8",
    ("metrics", int, "num_layers"): "17",
    ("images", int, "label"): '"Generated image"',
    ("images", int, "strip"): "true",
    ("outputs",): "[generated_image]",
}

# How to write the mappings people most often write as something else.
_MAPPING_FIXES = {
    ("judge",): "write `judge:` with `model: openai/gpt-4.1` (and `temperature:`, `mode:`) on indented lines below",
    ("scoring",): "write `scoring:` with `method: weighted_points` on an indented line below",
    ("criteria", int): 'write each criterion as a mapping: `- {id: accuracy-1, dimension: accuracy, weight: 1, text: "..."}`',
    ("dimensions", int): "write each dimension as its id (`- accuracy`) or a mapping (`- {id: accuracy, description: ...}`)",
    ("images", int): 'write each image slot as a mapping: `- {field: generated_image, label: "Generated"}`',
    ("metrics", int): "write each metric as a mapping: `- {metric: ssim, output: generated_image, reference: reference_image}`",
    ("inputs",): "write `inputs:` with one `name: text` or `name: image` line per input, indented below",
}

# Fixes for required fields, by field name.
_MISSING = {
    "rubric": "add `rubric: <id>` (e.g. `rubric: my-lab/chest-xray`) as the first key",
    "inputs": "add `inputs:` naming what each sample provides, e.g. `prompt: text` and `generated_image: image`",
    "dimensions": "add `dimensions:` with at least one entry, e.g. `- id: accuracy`",
    "prompt": "add `prompt: |` with the judge's instructions (a Jinja2 template) on the indented lines below",
    "scoring": "add `scoring:` with `method: weighted_points` (binary verdicts) or `method: mean_scale` / `pass_rate` (scale verdicts)",
    "method": "add `method: weighted_points`, `mean_scale` or `pass_rate`",
    "text": 'add `text: "..."` saying what the judge must check',
    "dimension": "add `dimension:` naming one of the rubric's dimensions",
    "id": "add `id:` (unique within the list)",
    "field": "add `field:` naming an image input",
    "metric": "add `metric: ssim`, `psnr`, `lpips` or `bertscore`",
    "output": "add `output:` naming the input the model under test produces",
    "reference": "add `reference:` naming the input to compare against",
    "kind": "add `kind: text` or `kind: image`",
}

# Id-like fields: what the pattern allows, in words, and how to turn a bad value into a good one.
_PATTERNS = {
    schema.CRITERION_ID: ("may use only letters, digits, `_`, `-` and `.`, starting with a letter or digit", r"[^A-Za-z0-9_.\-]+", "-"),
    schema.IDENTIFIER: ("must be a plain identifier: letters, digits and `_`, starting with a letter", r"\W+", "_"),
    schema.RUBRIC_ID: ("may use only letters, digits, `_`, `-`, `.` and `/`, starting with a letter or digit", r"[^A-Za-z0-9_.\-/]+", "-"),
}


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
        problems = _pydantic_problems(exc.errors(), located, path)
        partial, unusable = schema.partial_rubric(data)
        problems += _cross_field_problems(partial, unusable, located, path)
        if "inputs" not in unusable:
            problems += _template_problems(partial, located, path, unusable=unusable)
        raise UserError(_in_order(problems)) from None
    problems = _cross_field_problems(rubric, frozenset(), located, path)
    problems += _template_problems(rubric, located, path)
    if problems:
        raise UserError(_in_order(problems))
    return rubric


def _cross_field_problems(rubric: schema.Rubric, unusable: frozenset[str], located: Located, path: Path) -> list[Problem]:
    return [
        Problem(located.where(field_path, path), message, field=dotted(field_path), fix=fix)
        for field_path, message, fix in schema.cross_field_problems(rubric, unusable)
    ]


def _in_order(problems: list[Problem]) -> list[Problem]:
    """Problems by file and line, each once."""
    unique = list(dict.fromkeys(problems))
    return sorted(unique, key=lambda p: (str(p.location.file or ""), p.location.line, p.location.column))


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


def _pydantic_problems(errors: list[Any], located: Located, path: Path) -> list[Problem]:
    # `prompts:` for `prompt:` is one mistake: report the misspelt key, not also the missing one.
    renamed = {(tuple(e["loc"][:-1]), _close_key(e["loc"])) for e in errors if e["type"] == "extra_forbidden"}
    kept = [e for e in errors if not (e["type"] == "missing" and (tuple(e["loc"][:-1]), e["loc"][-1]) in renamed)]
    return [_problem_from_pydantic(err, located, path) for err in kept]


def _problem_from_pydantic(err: Any, located: Located, path: Path) -> Problem:
    loc = tuple(part for part in err["loc"] if isinstance(part, int) or not str(part).startswith(("function-", "constrained-")))
    kind = err["type"]
    given = err.get("input")
    ctx = err.get("ctx") or {}
    where = located.where(loc, path)
    field = dotted(loc)
    message = err["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    if kind == schema.RUBRIC_ERROR:
        return Problem(where, message, field=field, fix=ctx.get("fix", ""))
    if kind == "extra_forbidden":
        return _unknown_key(loc, where)
    if kind in ("enum", "literal_error"):
        choices = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        close = difflib.get_close_matches(str(given), choices, n=1, cutoff=0.5)
        hint = f"did you mean `{close[0]}`? " if close else ""
        listing = ", ".join(f"`{c}`" for c in choices)
        return Problem(where, f"{given!r} is not allowed here; expected one of {listing}", field=field, fix=f"{hint}write one of {listing}")
    if kind == "missing":
        name = str(loc[-1])
        return Problem(where, "required field is missing", field=field, fix=_MISSING.get(name, f"add `{name}:`"))
    example = _example(loc)
    if kind in ("model_type", "dict_type", "model_attributes_type") and _normalised(loc) in _MAPPING_FIXES:
        return Problem(where, f"expected a mapping, got {_describe(given)}", field=field, fix=_MAPPING_FIXES[_normalised(loc)])
    if kind in _EXPECTED:
        got = _describe(given)
        return Problem(
            where, f"expected {_EXPECTED[kind]}, got {got}", field=field, fix=_FIXES[kind] + (f", e.g. `{example}`" if example else "")
        )
    if kind == "string_pattern_mismatch" and ctx.get("pattern") in _PATTERNS:
        rule, bad, replacement = _PATTERNS[ctx["pattern"]]
        what = {"criteria": "criterion id", "dimensions": "dimension id", "rubric": "rubric id"}.get(str(loc[0]), "this id")
        suggestion = re.sub(bad, replacement, str(given)).strip("-_./") or "item-1"
        if ctx["pattern"] == schema.IDENTIFIER and not suggestion[0].isalpha():
            suggestion = "d_" + suggestion
        return Problem(where, f"{what} {given!r} {rule}", field=field, fix=f"write e.g. `{suggestion}`")
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        bound = next(iter(ctx.values()), "")
        bound = f"{bound:g}" if isinstance(bound, float) else bound
        limit = {"greater_than": "above", "greater_than_equal": "at least", "less_than": "below", "less_than_equal": "at most"}[kind]
        return Problem(where, f"{loc[-1]} {given!r} is out of range: it must be {limit} {bound}", field=field, fix=_range_fix(loc))
    if kind == "too_short" and loc == ("dimensions",):
        return Problem(where, "a rubric needs at least one dimension", field=field, fix=_MISSING["dimensions"])
    return Problem(where, message, field=field, fix=_FIXES.get(kind, "see the DSL reference in the README"))


def _describe(value: Any) -> str:
    return f"the text {value!r}" if isinstance(value, str) else schema.describe_value(value)


def _close_key(loc: tuple[Any, ...]) -> str | None:
    """The allowed key an unknown key is probably a misspelling of."""
    close = difflib.get_close_matches(str(loc[-1]), _allowed_keys(loc[:-1]), n=1, cutoff=0.6)
    return close[0] if close else None


def _unknown_key(loc: tuple[Any, ...], where: Location) -> Problem:
    key = str(loc[-1])
    allowed = _allowed_keys(loc[:-1])
    close = _close_key(loc)
    if close:
        fix = f"did you mean `{close}`? allowed here: {', '.join(allowed)}"
    else:
        here = _normalised(loc[:-1])
        home = [
            ".".join("[]" if p in (int, str) else p for p in at)
            for at, model in _MODEL_AT.items()
            if at != here and key in model.model_fields
        ]
        fix = f"`{key}` belongs under `{home[0]}:`; move it there" if home else f"remove it; allowed here: {', '.join(allowed)}"
    return Problem(where, f"unknown key `{key}`", field=dotted(loc), fix=fix)


def _normalised(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(int if isinstance(p, int) else p for p in loc)


def _example(loc: tuple[Any, ...]) -> str:
    value = _EXAMPLES.get(_normalised(loc))
    return f"{loc[-1]}: {value}" if value is not None else ""


def _range_fix(loc: tuple[Any, ...]) -> str:
    bounds: dict[str, Any] = {}
    model = _MODEL_AT.get(_normalised(loc[:-1]))
    info = model.model_fields.get(str(loc[-1])) if model else None
    for constraint in info.metadata if info else []:
        bounds.update({name: getattr(constraint, name) for name in ("ge", "gt", "le", "lt") if hasattr(constraint, name)})
    example = _example(loc)
    suffix = f", e.g. `{example}`" if example else ""
    if "ge" in bounds and "le" in bounds:
        return f"use a number from {bounds['ge']} to {bounds['le']}{suffix}"
    parts = [
        f"at least {bounds['ge']}" if "ge" in bounds else "",
        f"above {bounds['gt']}" if "gt" in bounds else "",
        f"at most {bounds['le']}" if "le" in bounds else "",
        f"below {bounds['lt']}" if "lt" in bounds else "",
    ]
    wanted = " and ".join(p for p in parts if p)
    return f"use a number {wanted}{suffix}" if wanted else "use a number in the allowed range"


def _allowed_keys(parent: tuple[Any, ...]) -> list[str]:
    normalised = _normalised(parent)
    model = _MODEL_AT.get(normalised)
    if model is None and len(normalised) == 2:
        model = _MODEL_AT.get((normalised[0], str))
    if model is None:
        return []
    return [info.alias or name for name, info in model.model_fields.items()]


def _template_problems(rubric: schema.Rubric, located: Located, path: Path, unusable: frozenset[str] | None = None) -> list[Problem]:
    """Check `system` and `prompt`. A fully valid rubric is also trial-rendered with
    representative values; a partial one (unusable given) gets the static checks only."""
    from rubric_judge.rubrics.context import template_context, trial_fields

    allowed = set(rubric.inputs) | set(schema.TEMPLATE_GLOBALS)
    context = None
    if unusable is None:
        # The dimension is None in per_sample mode, as when judging.
        dimension = None if rubric.judge.mode is schema.Batching.per_sample else rubric.dimensions[0]
        context = template_context(rubric, "sample-1", trial_fields(rubric), rubric.criteria or [_TRIAL_CRITERION], dimension)
    problems = []
    for key in ("system", "prompt"):
        source = getattr(rubric, key, None) if key not in (unusable or ()) else None
        if not isinstance(source, str):
            continue
        try:
            templates.check(source, allowed, context)
        except templates.TemplateProblem as exc:
            problems.append(Problem(_template_line(located, key, exc.line, path), str(exc), field=key, fix=exc.fix))
    return problems


def _template_line(located: Located, key: str, line: int | None, path: Path) -> Location:
    """The file line of line `line` of a template: exact for `|` blocks and one-line values."""
    where = located.where((key,), path)
    start = located.scalar_starts.get((key,))
    if start is None or line is None:
        return where
    first, exact = start
    file = where.file or path
    return Location(file, first + line - 1 if exact else first, 1)


_TRIAL_CRITERION = schema.Criterion(id="trial-1", dimension="trial", weight=1.0, text="A criterion.")
