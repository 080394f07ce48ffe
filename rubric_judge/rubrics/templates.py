"""Sandboxed Jinja2 for rubric prompts.

Prompts come from rubric files written by strangers, so they render in Jinja2's immutable
sandbox (no attribute access to Python internals, no mutation of passed objects) with
StrictUndefined (a misspelt variable is an error, never an empty string).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, meta
from jinja2.exceptions import SecurityError, TemplateError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment


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


def check(source: str, allowed: set[str], trial_context: dict[str, Any]) -> None:
    """Raise TemplateProblem if the template is malformed, uses an undeclared name, or does
    something the sandbox forbids when rendered with representative values."""
    env = environment()
    try:
        ast = env.parse(source)
    except TemplateSyntaxError as exc:
        raise TemplateProblem(f"template syntax error: {exc.message}", exc.lineno, "fix the Jinja2 syntax ({{ ... }}, {% ... %})") from None
    unknown = sorted(meta.find_undeclared_variables(ast) - allowed)
    if unknown:
        line = next((i + 1 for i, text in enumerate(source.splitlines()) if unknown[0] in text), None)
        raise TemplateProblem(
            f"template uses {', '.join(map(repr, unknown))}, which is not a declared input",
            line,
            f"declare it under `inputs:` or use one of: {', '.join(sorted(allowed))}",
        )
    try:
        compiled(source).render(trial_context)
    except SecurityError as exc:
        raise TemplateProblem(f"template does something the sandbox forbids: {exc}", _error_line(exc), "templates may only read inputs and criteria; remove access to Python internals") from None
    except UndefinedError as exc:
        raise TemplateProblem(f"template refers to something undefined: {exc}", _error_line(exc), "check attribute names: criteria have id, text, weight, dimension, number") from None
    except TemplateError as exc:
        raise TemplateProblem(f"template fails to render: {exc}", _error_line(exc), "fix the template") from None
    except Exception as exc:  # a filter or expression raising an ordinary error
        raise TemplateProblem(f"template fails to render: {type(exc).__name__}: {exc}", _error_line(exc), "fix the template") from None


def _error_line(exc: BaseException) -> int | None:
    tb = exc.__traceback__
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line
