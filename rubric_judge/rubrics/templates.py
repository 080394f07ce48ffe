"""Sandboxed Jinja2 for rubric prompts.

Prompts come from rubric files written by strangers, so they render in Jinja2's immutable
sandbox (no attribute access to Python internals, no mutation of passed objects) with
StrictUndefined (a misspelt variable is an error, never an empty string). `check` also refuses
internals statically, so a forbidden attribute inside a branch the trial render never takes is
still an error at validate time, not at judge time.
"""

from __future__ import annotations

import difflib
import itertools
import re
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, meta, nodes
from jinja2.exceptions import SecurityError, TemplateError, UndefinedError
from jinja2.sandbox import (
    UNSAFE_ASYNC_GENERATOR_ATTRIBUTES,
    UNSAFE_COROUTINE_ATTRIBUTES,
    UNSAFE_FUNCTION_ATTRIBUTES,
    UNSAFE_GENERATOR_ATTRIBUTES,
    UNSAFE_METHOD_ATTRIBUTES,
    ImmutableSandboxedEnvironment,
)

# Attribute names no template needs: dunders and private names, and the sandbox's own list.
_UNSAFE_NAMES = (
    {"mro"}
    | UNSAFE_FUNCTION_ATTRIBUTES
    | UNSAFE_METHOD_ATTRIBUTES
    | UNSAFE_GENERATOR_ATTRIBUTES
    | UNSAFE_COROUTINE_ATTRIBUTES
    | UNSAFE_ASYNC_GENERATOR_ATTRIBUTES
)
_INTERNALS_FIX = "templates may only read inputs and the criteria/dimension/verdict/rubric values; remove the access to Python internals"


@lru_cache(maxsize=1)
def environment() -> ImmutableSandboxedEnvironment:
    return ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)


@lru_cache(maxsize=4096)
def compiled(source: str):
    return environment().from_string(source)


def render(source: str, context: dict[str, Any]) -> str:
    return compiled(source).render(context).strip()


class TemplateProblem(Exception):
    def __init__(self, message: str, line: int | None, fix: str):
        super().__init__(message)
        self.line = line
        self.fix = fix


def check(source: str, allowed: set[str], trial_context: dict[str, Any] | None = None) -> None:
    """Raise TemplateProblem if the template is malformed, uses an undeclared name, reaches for
    Python internals or (given representative values) fails or breaks the sandbox rendering."""
    try:
        ast = environment().parse(source)
    except TemplateSyntaxError as exc:
        message, line = exc.message or "", exc.lineno
        opened = _unclosed_block(source) if "unexpected end of template" in message.lower() else None
        if opened is not None:
            tag, line = opened
            message = f"`{{% {tag} %}}` opened on this line is never closed (the template ends first)"
        raise TemplateProblem(f"template syntax error: {message}", line, _syntax_fix(message)) from None
    _check_internals(ast)
    unknown = sorted(meta.find_undeclared_variables(ast) - allowed)
    if unknown:
        close = difflib.get_close_matches(unknown[0], sorted(allowed), n=1)
        hint = f"did you mean `{close[0]}`? " if close else ""
        names = ", ".join(f"`{name}`" for name in unknown)
        raise TemplateProblem(
            f"template uses {names}, which {'is' if len(unknown) == 1 else 'are'} not a declared input",
            _name_line(ast, unknown[0]),
            f"{hint}declare it under `inputs:` (e.g. `{unknown[0]}: text`), or use one of: {', '.join(sorted(allowed))}",
        )
    if trial_context is None:
        return
    try:
        compiled(source).render(trial_context)
    except SecurityError as exc:
        raise TemplateProblem(f"template does something the sandbox forbids: {exc}", _error_line(exc), _INTERNALS_FIX) from None
    except UndefinedError as exc:
        raise TemplateProblem(
            f"template refers to something undefined: {exc}",
            _error_line(exc),
            "check attribute names: criteria have id, text, weight, dimension, number; dimension has id, name, description "
            "(and is none in per_sample mode: guard it with `{% if dimension %}`); verdict has kind, min, max",
        ) from None
    except TemplateError as exc:
        raise TemplateProblem(
            f"template fails to render: {exc}", _error_line(exc), "fix the expression on this line of the template"
        ) from None
    except Exception as exc:  # a filter or expression raising an ordinary error
        raise TemplateProblem(
            f"template fails to render: {type(exc).__name__}: {exc}", _error_line(exc), "fix the expression on this line of the template"
        ) from None


def _syntax_fix(message: str) -> str:
    lowered = message.lower()
    opened = re.search(r"`\{% (\w+) %\}` opened", message)
    if opened:
        return f"add `{{% end{opened.group(1)} %}}` where the `{opened.group(1)}` block should end"
    if "unexpected end of template" in lowered and "looking for" in lowered:
        return "close every `{% for %}` with `{% endfor %}` and every `{% if %}` with `{% endif %}`"
    if "unexpected '}'" in lowered or "end of print statement" in lowered:
        return "write values as `{{ name }}` (two braces on each side) and tags as `{% ... %}`"
    if "unexpected end of template" in lowered:
        return "close the last `{{` with `}}` or `{%` with `%}`"
    if "unknown tag" in lowered:
        return "use Jinja2 tags: `{% if %}`/`{% elif %}`/`{% else %}`/`{% endif %}`, `{% for %}`/`{% endfor %}`, `{% set %}`"
    return "fix the Jinja2 syntax on this line: `{{ value }}` for values, `{% if %}` ... `{% endif %}` and `{% for %}` ... `{% endfor %}` for logic"


_BLOCK_TAGS = {"for", "if", "macro", "call", "filter", "block", "with", "autoescape", "trans"}


def _unclosed_block(source: str) -> tuple[str, int] | None:
    """The innermost `{% for %}`/`{% if %}`/... still open at the end of the template."""
    stack: list[tuple[str, int]] = []
    try:
        tokens = [token for token in environment().lex(source) if token[1] != "whitespace"]
    except TemplateSyntaxError:
        return None
    for (lineno, kind, _), (_, next_kind, name) in itertools.pairwise(tokens):
        if kind != "block_begin" or next_kind != "name":
            continue
        if name in _BLOCK_TAGS:
            stack.append((name, lineno))
        elif name.startswith("end") and stack and stack[-1][0] == name[3:]:
            stack.pop()
    return stack[-1] if stack else None


def _check_internals(ast: nodes.Template) -> None:
    found: list[tuple[int, str]] = []
    for node in ast.find_all((nodes.Getattr, nodes.Getitem, nodes.Filter)):
        name = None
        if isinstance(node, nodes.Getattr):
            name = node.attr
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
            name = node.arg.value
        elif isinstance(node, nodes.Filter) and node.name == "attr" and node.args and isinstance(node.args[0], nodes.Const):
            name = str(node.args[0].value)
        if name is not None and (name.startswith("_") or name in _UNSAFE_NAMES):
            found.append((node.lineno, name))
    if found:
        line, name = min(found)
        raise TemplateProblem(f"template reaches into Python internals (`{name}`), which the sandbox forbids", line, _INTERNALS_FIX)


def _name_line(ast: nodes.Template, name: str) -> int | None:
    lines = [node.lineno for node in ast.find_all(nodes.Name) if node.name == name and node.ctx == "load"]
    return min(lines) if lines else None


def _error_line(exc: BaseException) -> int | None:
    tb = exc.__traceback__
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line
