"""Turn what validation finds into located `Problem`s: file:line:column, field path and a fix.

This module owns the wording of rubric errors: pydantic errors become messages in plain words
(what was expected, what was given), with a did-you-mean for misspelt keys and values, the
allowed range for out-of-range numbers and an example value where one helps. It also places the
findings of `validation.cross_field_problems` and the template checks (`system`, `prompt`) at
their line in the file, through the `Located` map the YAML reader builds. The loader decides
what to check; this module says where the problem is and how to fix it.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any

from rubric_judge.errors import Location, Problem
from rubric_judge.rubrics import schema, templates, validation
from rubric_judge.rubrics.yamlsrc import Located, dotted

# Which model describes the mapping at a (normalised) path, for did-you-mean on unknown keys.
_MODEL_AT: dict[tuple[Any, ...], type[schema.StrictModel]] = {
    (): schema.Rubric,
    ("judge",): schema.JudgeConfig,
    ("scoring",): schema.Scoring,
    ("cache",): schema.CacheConfig,
    ("criteria", int): schema.Criterion,
    ("dimensions", int): schema.Dimension,
    ("verdict",): schema.VerdictSpec,
    ("dimensions", int, "verdict"): schema.VerdictSpec,
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
    schema.RUBRIC_ID: ("may use only letters, digits, `_`, `-`, `.`, `/` and `@`, starting with a letter or digit", r"[^A-Za-z0-9_.\-/@]+", "-"),
}


def located_problems(found: validation.Problems, located: Located, path: Path) -> list[Problem]:
    """Place (field path, message, fix) findings at their field's line in the file.

    Args:
        found: findings from `validation.cross_field_problems`.
        located: the merged rubric data with the location of every field.
        path: the rubric file, for fields the location map does not know.

    Returns:
        One Problem per finding.
    """
    return [Problem(located.where(field_path, path), message, field=dotted(field_path), fix=fix) for field_path, message, fix in found]


def in_order(problems: list[Problem]) -> list[Problem]:
    """Problems by file and line, each once.

    Args:
        problems: problems from any of the checks, possibly repeated.

    Returns:
        Each distinct problem once, sorted by file, line and column.
    """
    unique = list(dict.fromkeys(problems))
    return sorted(unique, key=lambda p: (str(p.location.file or ""), p.location.line, p.location.column))


def pydantic_problems(errors: list[Any], located: Located, path: Path) -> list[Problem]:
    """Translate pydantic's errors for a rubric into Problems in plain words, each with a fix.

    Args:
        errors: `ValidationError.errors()` from validating the merged rubric.
        located: the merged rubric data with the location of every field.
        path: the rubric file, for fields the location map does not know.

    Returns:
        One Problem per error, less a `missing` error already explained by a misspelt key.
    """
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


def template_problems(rubric: schema.Rubric, located: Located, path: Path, unusable: frozenset[str] | None = None) -> list[Problem]:
    """Check `system`, `prompt` and every criterion text that uses template syntax, each
    problem placed at its line in the file.

    A fully valid rubric is also trial-rendered with representative values; a partial one
    (`unusable` given, see `validation.partial_rubric`) gets the static checks only. A criterion
    text may use the rubric's inputs and `sample_id`, `rubric` and `verdict`
    (`context.CRITERION_GLOBALS`), since it is rendered once per sample, before batching.

    Args:
        rubric: the rubric, whole or partial.
        located: the merged rubric data with the location of every field.
        path: the rubric file, for fields the location map does not know.
        unusable: for a partial rubric, the fields that are missing or invalid.

    Returns:
        The template problems, none when every template is fine.
    """
    from rubric_judge.rubrics.context import CRITERION_GLOBALS, criterion_context, template_context, trial_fields

    allowed = set(rubric.inputs) | set(schema.TEMPLATE_GLOBALS)
    context = None
    if unusable is None:
        # The dimension is None in per_sample mode, as when judging.
        dimension = None if rubric.judge.mode is schema.Batching.per_sample or not rubric.dimensions else rubric.dimensions[0]
        context = template_context(rubric, "sample-1", trial_fields(rubric), rubric.criteria or [_TRIAL_CRITERION], dimension)
    sources: list[tuple[tuple[str | int, ...], Any, set[str], dict[str, Any] | None]] = [
        ((key,), getattr(rubric, key, None) if key not in (unusable or ()) else None, allowed, context) for key in ("system", "prompt")
    ]
    if "criteria" not in (unusable or ()):
        criterion_allowed = set(rubric.inputs) | set(CRITERION_GLOBALS)
        dimensions = {getattr(d, "id", None): d for d in rubric.dimensions} if "dimensions" not in (unusable or ()) else {}
        for i, criterion in enumerate(rubric.criteria):
            text = getattr(criterion, "text", None)
            if not isinstance(text, str) or not templates.is_template(text):
                continue
            trial = None
            if unusable is None:
                dim = dimensions.get(criterion.dimension)
                verdict = rubric.verdict_for(dim) if dim is not None else rubric.verdict
                trial = criterion_context(rubric, "sample-1", trial_fields(rubric), verdict)
            sources.append((("criteria", i, "text"), text, criterion_allowed, trial))
    problems = []
    for field_path, source, names, trial in sources:
        if not isinstance(source, str):
            continue
        try:
            templates.check(source, names, trial)
        except templates.TemplateProblem as exc:
            problems.append(Problem(_template_line(located, field_path, exc.line, path), str(exc), field=dotted(field_path), fix=exc.fix))
    return problems


def _template_line(located: Located, field_path: tuple[str | int, ...], line: int | None, path: Path) -> Location:
    """The file line of line `line` of a template: exact for `|` blocks and one-line values."""
    where = located.where(field_path, path)
    start = located.scalar_starts.get(field_path)
    if start is None or line is None:
        return where
    first, exact = start
    file = where.file or path
    return Location(file, first + line - 1 if exact else first, 1)


_TRIAL_CRITERION = schema.Criterion(id="trial-1", dimension="trial", weight=1.0, text="A criterion.")
