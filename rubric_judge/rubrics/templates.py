"""Sandboxed, bounded Jinja2 for rubric prompts.

Prompts come from rubric files written by strangers, so they render in Jinja2's immutable
sandbox (no attribute access to Python internals, no mutation of passed objects) with
StrictUndefined (a misspelt variable is an error, never an empty string). `check` also refuses
internals statically, so a forbidden attribute inside a branch the trial render never takes is
still an error at validate time, not at judge time.

The sandbox stops a template reading what it should not, but not from exhausting the machine:
`{{ "a" * 1000000000 }}`, `{{ 10 ** 1000000000 }}`, `x | center(1000000000)` or two nested
`range(100000)` loops each take gigabytes or hours. Every render therefore runs on a budget,
and going over it raises `RenderLimitError` (a validation error at the trial render, a per-sample
error when scoring), never a hang:

* MAX_OUTPUT_CHARS (10 million): the rendered prompt, checked while it streams, and any single
  text or list the template builds. Operations that build a value in one step are estimated
  *before* they run, from their inputs: `*` repetition, `+`, `%` and `format` widths,
  `str.format` fields, the text methods and filters that take a width or repeat a string
  (`center`, `ljust`, `indent`, `wordwrap`, `replace`, `join`, `expandtabs`, ...). Any whole
  number passed to a call or filter (a width, a count, a length) must be within the limit too.
* MAX_PRODUCED_CHARS (50 million): all text produced on the way, including `{% set %}` blocks
  and macro output that is later thrown away.
* MAX_INT_BITS (100,000 bits, ~30,000 digits): integers built by `*` and `**`.
* MAX_STEPS (1 million): loop iterations, calls, filters and operators, where a filter that walks
  a list costs one step per item. Jinja's own `range` still refuses more than 100,000 items.
* MAX_RENDER_SECONDS (10): a wall-clock deadline checked at every step.

* MAX_STEPS counts a macro call as ten steps (it costs Jinja about ten loop iterations).

Real prompts are far below all of these: the IlluGenBench prompt takes ~60 steps for its ~30
criteria (about 1 ms to render), a prompt listing 35,000 criteria 70,000 steps and 3.8 million
characters. The checks are a few isinstance tests per loop iteration, call and print.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import itertools
import re
import string
import time
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, meta, nodes, pass_context
from jinja2.exceptions import SecurityError, TemplateError, UndefinedError
from jinja2.runtime import Context
from jinja2.sandbox import (
    UNSAFE_ASYNC_GENERATOR_ATTRIBUTES,
    UNSAFE_COROUTINE_ATTRIBUTES,
    UNSAFE_FUNCTION_ATTRIBUTES,
    UNSAFE_GENERATOR_ATTRIBUTES,
    UNSAFE_METHOD_ATTRIBUTES,
    ImmutableSandboxedEnvironment,
)
from jinja2.utils import Namespace, _PassArg
from jinja2.visitor import NodeTransformer

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

MAX_OUTPUT_CHARS = 10_000_000
MAX_PRODUCED_CHARS = 50_000_000
MAX_INT_BITS = 100_000
MAX_STEPS = 1_000_000
MAX_RENDER_SECONDS = 10.0
# Values nested deeper than this are refused when measured (data from YAML nests at most 64).
_MAX_VALUE_NESTING = 100

LIMITS_FIX = (
    f"a prompt lists inputs and criteria: remove the repetition, huge width or nested loop "
    f"(limits per render: {MAX_OUTPUT_CHARS:,} characters, {MAX_STEPS:,} steps, {MAX_RENDER_SECONDS:g} s)"
)


class RenderLimitError(TemplateError):
    """A template render went over one of the limits in the module docstring."""


class _Budget:
    """What one render has spent so far; the active one lives in `_ACTIVE`."""

    __slots__ = ("deadline", "next_clock", "produced", "sizes", "steps")

    def __init__(self) -> None:
        self.steps = 0
        self.produced = 0
        self.deadline = time.monotonic() + MAX_RENDER_SECONDS
        self.next_clock = _CLOCK_EVERY
        # id -> (value, measured size): a container is measured once per render; the value is
        # kept so that its id cannot be reused by another object during the render.
        self.sizes: dict[int, tuple[Any, int]] = {}

    def step(self, count: int = 1) -> None:
        self.steps += count
        if self.steps > MAX_STEPS:
            raise RenderLimitError(
                f"the template takes more than {MAX_STEPS:,} steps (loop iterations, calls, filters, operators)"
            )
        if self.steps >= self.next_clock:  # reading the clock costs more than the rest of a step
            self.next_clock = self.steps + _CLOCK_EVERY
            if time.monotonic() > self.deadline:
                raise RenderLimitError(f"the template takes longer than {MAX_RENDER_SECONDS:g} s to render")

    def produce(self, chars: int) -> None:
        self.produced += chars
        if self.produced > MAX_PRODUCED_CHARS:
            raise RenderLimitError(f"the template produces more than {MAX_PRODUCED_CHARS:,} characters of text along the way")


# One step is at most one Jinja operation on values already within the limits (well under a
# millisecond), so reading the clock every 1,024 steps keeps the deadline to within a second.
_CLOCK_EVERY = 1024

_ACTIVE: ContextVar[_Budget | None] = ContextVar("rubric_template_budget", default=None)


def _budget() -> _Budget:
    # Outside a render (Jinja folding constants at compile time) each check gets a fresh budget:
    # the per-value limits still hold.
    return _ACTIVE.get() or _Budget()


def _measure(value: Any, budget: _Budget, depth: int = 0) -> int:
    """About how many characters `str(value)` has, stopping early once over the limit.

    Containers count their contents, so `[big] * 1000` is as large as it would print, although
    it holds 1,000 references to one string."""
    if isinstance(value, str | bytes):
        return len(value)
    if isinstance(value, bool) or value is None:
        return 5
    if isinstance(value, int):
        return value.bit_length() // 3 + 2
    if isinstance(value, float):
        return 24
    if isinstance(value, list | tuple | set | frozenset | dict | Namespace):
        known = budget.sizes.get(id(value))
        if known is not None:
            return known[1]
        if depth > _MAX_VALUE_NESTING:
            raise RenderLimitError(f"the template builds values nested more than {_MAX_VALUE_NESTING} levels deep")
        budget.step()
        items: Iterable[Any] = value
        if isinstance(value, Namespace):
            items = object.__getattribute__(value, "_Namespace__attrs").items()
        elif isinstance(value, dict):
            items = value.items()
        total = 2
        for item in items:
            total += _measure(item, budget, depth + 1) + 2
            if total > MAX_OUTPUT_CHARS:
                break
        budget.sizes[id(value)] = (value, total)
        return total
    return 16  # ranges, undefined values, macros, loop helpers: short to print


def _refuse_size(chars: int, what: str) -> None:
    if chars > MAX_OUTPUT_CHARS:
        raise RenderLimitError(f"{what} would be {chars:,} characters long (the limit is {MAX_OUTPUT_CHARS:,})")


def _refuse_big_numbers(values: Iterable[Any], what: str) -> None:
    """Widths, counts and lengths beyond the output limit cannot be meant: refuse them before
    the call allocates anything."""
    for value in values:
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_OUTPUT_CHARS:
            raise RenderLimitError(f"{what} is given the number {value:,}, over the limit of {MAX_OUTPUT_CHARS:,} for widths and counts")


# `%` conversions with their width and precision: `%(name)-10.3f`.
_PERCENT_FIELD = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d*)(?:\.(\*|\d*))?[hlL]?[diouxXeEfFgGcrsab%]")


def _check_percent(template: str | bytes, arguments: Any, budget: _Budget) -> None:
    """`"%10s" % value` and the `format` filter: widths, precisions and the arguments' sizes."""
    text = template.decode("latin-1") if isinstance(template, bytes) else template
    padding = 0
    for match in _PERCENT_FIELD.finditer(text):
        width, precision = match.group(1), match.group(2) or ""
        if "*" in (width, precision):
            raise RenderLimitError("`%` formatting with a `*` width is not supported in templates")
        padding += int(width or 0) + int(precision or 0)
    _refuse_size(len(text) + padding + _measure(arguments, budget), "the `%` formatted text")


def _check_binop(operator: str, left: Any, right: Any, budget: _Budget) -> None:
    """Estimate `left operator right` from its operands and refuse it if it is too large."""
    plain = (str, bytes, list, tuple)
    if operator == "*":
        if isinstance(left, int) and isinstance(right, int):
            if left.bit_length() + right.bit_length() > MAX_INT_BITS:
                raise RenderLimitError(f"the template multiplies numbers beyond {MAX_INT_BITS:,} bits")
            return
        sequence, times = (left, right) if isinstance(right, int) else (right, left)
        if isinstance(sequence, plain) and isinstance(times, int) and times > 1:
            _refuse_size(max(len(sequence), _measure(sequence, budget)) * times, "the repeated value")
    elif operator == "**":
        ints = isinstance(left, int) and isinstance(right, int)
        if ints and right > 0 and abs(left) > 1 and abs(left).bit_length() * right > MAX_INT_BITS:
            raise RenderLimitError(
                f"`{left} ** {right}` has about {int(abs(left).bit_length() * right * 0.30103):,} digits (the limit is {MAX_INT_BITS:,} bits)"
            )
    elif operator == "+":
        if isinstance(left, plain) and isinstance(right, plain):
            _refuse_size(len(left) + len(right), "the joined value")
    elif operator == "%" and isinstance(left, str | bytes):
        _check_percent(left, right, budget)


# Text methods whose result can be much larger than the text itself.
def _check_text_method(owner: str | bytes, name: str, args: tuple[Any, ...], kwargs: dict[str, Any], budget: _Budget) -> tuple[Any, ...]:
    """Estimate a `str`/`bytes` method call; returns the arguments to call it with."""
    if name == "expandtabs":
        tabsize = args[0] if args else kwargs.get("tabsize", 8)
        if isinstance(tabsize, int):
            _refuse_size(len(owner) * max(tabsize, 1), "the text with its tabs expanded")
    elif name == "replace" and len(args) >= 2 and isinstance(args[0], str | bytes) and isinstance(args[1], str | bytes):
        old, new = args[0], args[1]
        hits = owner.count(old) if old else len(owner) + 1
        _refuse_size(len(owner) + hits * max(0, len(new) - len(old)), "the replaced text")
    elif name == "join" and args:
        items = list(args[0])
        budget.step(len(items))
        _refuse_size(sum(_measure(item, budget) for item in items) + len(owner) * len(items), "the joined text")
        return (items, *args[1:])
    elif name == "translate" and args and isinstance(args[0], dict):
        longest = max((_measure(v, budget) for v in args[0].values()), default=1)
        _refuse_size(len(owner) * max(longest, 1), "the translated text")
    return args


def _check_result(value: Any, what: str, budget: _Budget) -> Any:
    """A call's or filter's result: within the size limit, and its text counted as produced."""
    if isinstance(value, str | bytes | list | tuple | dict):
        _refuse_size(len(value), what)
        if isinstance(value, str):
            budget.produce(len(value))
    return value


def _check_str_format(template: str, args: tuple[Any, ...], kwargs: dict[str, Any], budget: _Budget) -> None:
    padding = 0
    for _, field, spec, _ in string.Formatter().parse(template):
        if field is None or not spec:
            continue
        if "{" in spec:
            raise RenderLimitError("`str.format` with a width taken from an argument (`{:{}}`) is not supported in templates")
        padding += sum(int(number) for number in re.findall(r"\d+", spec))
    _refuse_size(len(template) + padding + _measure(args, budget) + _measure(kwargs, budget), "the formatted text")


# Filters that look at a list without walking it; every other filter costs a step per item.
_CONSTANT_TIME_FILTERS = frozenset({"length", "count", "first", "default", "d", "attr", "abs", "int", "float", "bool", "round", "random"})


def _check_filter(name: str, arguments: dict[str, Any], value: Any, size: int, budget: _Budget) -> Any:
    """Estimate the filters that can build much more text than they are given; returns the
    input to pass instead where it had to be materialised to be measured (else None)."""
    if name == "indent":
        width = arguments.get("width", 4)
        lines = (value.count("\n") if isinstance(value, str) else size) + 1
        _refuse_size(size + lines * (len(width) if isinstance(width, str) else max(int(width), 0)), "the indented text")
    elif name == "wordwrap":
        width, wrap = arguments.get("width", 79), arguments.get("wrapstring") or "\n"
        lines = size // max(int(width), 1) + (value.count("\n") if isinstance(value, str) else 0) + 1
        _refuse_size(size + lines * len(wrap), "the wrapped text")
    elif name == "replace":
        old, new = str(arguments.get("old", "")), str(arguments.get("new", ""))
        text = value if isinstance(value, str) else str(value)
        hits = text.count(old) if old else len(text) + 1
        _refuse_size(len(text) + hits * max(0, len(new) - len(old)), "the replaced text")
    elif name == "format":
        _check_percent(str(value), arguments.get("args") or arguments.get("kwargs"), budget)
    elif name == "join":
        items = value if isinstance(value, list | tuple) else list(value)
        budget.step(len(items))
        separator = arguments.get("d", "")
        _refuse_size(_measure(items, budget) + len(str(separator)) * len(items), "the joined text")
        return items
    elif name == "tojson":
        indent = arguments.get("indent")
        if indent is not None and (len(indent) if isinstance(indent, str) else int(indent)) > 8:
            raise RenderLimitError("`tojson` indents by at most 8")
    return None


def _guard_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap one of Jinja's filters with the budget: a step (per item for filters that walk a list),
    the input's size, number arguments, a size estimate for the amplifying filters, the result."""
    passes_arg = _PassArg.from_obj(func) is not None
    # Only the amplifying filters bind their arguments; inspect.signature of every filter costs
    # tens of milliseconds of each start (builtins' signatures are parsed from text).
    signature = inspect.signature(func) if name in _AMPLIFYING_FILTERS else None
    walks = name not in _CONSTANT_TIME_FILTERS

    @functools.wraps(func)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        budget = _budget()
        budget.step()
        offset = 1 if passes_arg else 0
        value = args[offset] if len(args) > offset else None
        if walks and isinstance(value, list | tuple | dict | set | frozenset):
            budget.step(len(value))
        size = _measure(value, budget)
        _refuse_size(size, f"the input of the `{name}` filter")
        _refuse_big_numbers(itertools.chain(args[offset + 1 :], kwargs.values()), f"the `{name}` filter")
        if signature is not None:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            replaced = _check_filter(name, dict(bound.arguments), value, size, budget)
            if replaced is not None:  # the filter's input is always passed by position
                args = (*args[:offset], replaced, *args[offset + 1 :])
        return _check_result(func(*args, **kwargs), f"the result of the `{name}` filter", budget)

    return guarded


_AMPLIFYING_FILTERS = frozenset({"indent", "wordwrap", "replace", "format", "join", "tojson"})


@pass_context
def _tick(context: Context, literal_chars: int, steps: int) -> None:
    """Charged at the start of every loop iteration and macro call: its steps, plus the literal
    text of the body (which Jinja yields without any hook)."""
    budget = _ACTIVE.get() or _Budget()
    budget.step(steps)
    if literal_chars:
        budget.produce(literal_chars)


@pass_context
def _iterate(context: Context, iterable: Iterable[Any]) -> Iterator[Any]:
    """A step per item for loops with an `if` test, whose skipped items never reach the body."""
    budget = _budget()
    for item in iterable:
        budget.step()
        yield item


@pass_context
def _concat(context: Context, parts: list[Any]) -> str:
    """`a ~ b ~ c`, measured before it is joined."""
    budget = _budget()
    total = sum(_measure(part, budget) for part in parts)
    _refuse_size(total, "the text joined with `~`")
    budget.produce(total)
    return "".join(map(str, parts))


def _finalize(value: Any) -> Any:
    """Every `{{ value }}`: measured (containers by their contents) before it is printed."""
    budget = _ACTIVE.get() or _Budget()
    kind = type(value)
    # The common cases inline: this runs for every `{{ }}` of every prompt.
    size = len(value) if kind is str else 8 if kind is int and -(10**6) < value < 10**6 else _measure(value, budget)
    if size > MAX_OUTPUT_CHARS:
        _refuse_size(size, "a printed value")
    budget.produced += size
    if budget.produced > MAX_PRODUCED_CHARS:
        budget.produce(0)
    return value


_BUDGET_FILTERS = {"rubric_judge_tick": _tick, "rubric_judge_iterate": _iterate, "rubric_judge_concat": _concat}


class _BoundedEnvironment(ImmutableSandboxedEnvironment):
    """The immutable sandbox with the budget of the module docstring charged at every operator,
    call, filter, loop iteration and print."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self) -> None:
        super().__init__(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False, finalize=_finalize)
        self.globals.pop("lipsum", None)  # lorem ipsum of any length: no prompt needs it
        self.filters = {name: _guard_filter(name, func) for name, func in self.filters.items()} | _BUDGET_FILTERS

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        budget = _budget()
        budget.step()
        _check_binop(operator, left, right, budget)
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        budget = _budget()
        budget.step()
        template = getattr(__obj, "rubric_judge_format_of", None)
        if template is not None:  # str.format: the arguments are data, the widths are in the text
            _check_str_format(template, args, kwargs, budget)
            return _check_result(super().call(__context, __obj, *args, **kwargs), "the formatted text", budget)
        name = getattr(__obj, "__name__", type(__obj).__name__)
        _refuse_big_numbers(itertools.chain(args, kwargs.values()), f"`{name}()`")
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, str | bytes):
            args = _check_text_method(owner, name, args, kwargs, budget)
        return _check_result(super().call(__context, __obj, *args, **kwargs), f"the result of `{name}()`", budget)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is not None:
            template = value.__self__
            if value.__name__ == "format_map":
                # format_map(mapping): measured like format(**mapping).
                def format_map(mapping: Any) -> str:
                    _check_str_format(str(template), (), {"mapping": mapping}, _budget())
                    return wrapped(mapping)

                return format_map
            wrapped.rubric_judge_format_of = str(template)  # type: ignore[attr-defined]
        return wrapped


class _Instrument(NodeTransformer):
    """Adds the budget's hooks to a parsed template: a tick at the start of every loop body and
    macro, a counted iterator for filtered loops, a measured `~`."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.body.insert(0, _tick_node(node.body, node.lineno, 1))
        if node.test is not None:
            node.iter = nodes.Filter(node.iter, "rubric_judge_iterate", [], [], None, None, lineno=node.lineno)
        return node

    def visit_Macro(self, node: nodes.Macro) -> nodes.Node:
        self.generic_visit(node)
        node.body.insert(0, _tick_node(node.body, node.lineno, _MACRO_CALL_STEPS))
        return node

    def visit_CallBlock(self, node: nodes.CallBlock) -> nodes.Node:
        self.generic_visit(node)
        node.body.insert(0, _tick_node(node.body, node.lineno, _MACRO_CALL_STEPS))
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        parts = nodes.List(node.nodes, lineno=node.lineno)
        return nodes.Filter(parts, "rubric_judge_concat", [], [], None, None, lineno=node.lineno)


# A macro call costs Jinja about ten times a loop iteration (frames, argument binding, output).
_MACRO_CALL_STEPS = 10


def _tick_node(body: list[nodes.Node], lineno: int, steps: int) -> nodes.ExprStmt:
    # A statement, not an `{{ }}` output: nothing is printed. `pass_context` keeps Jinja from
    # evaluating the filter once at compile time.
    arguments: list[nodes.Expr] = [nodes.Const(steps, lineno=lineno)]
    charge = nodes.Filter(nodes.Const(_literal_chars(body)), "rubric_judge_tick", arguments, [], None, None, lineno=lineno)
    return nodes.ExprStmt(charge, lineno=lineno)


def _literal_chars(body: list[nodes.Node]) -> int:
    """The template text written by one pass over `body`, not counting nested loops and macros
    (they charge their own)."""
    total, pending = 0, list(body)
    while pending:
        node = pending.pop()
        if isinstance(node, nodes.TemplateData):
            total += len(node.data)
        elif not isinstance(node, nodes.For | nodes.Macro | nodes.CallBlock):
            pending.extend(node.iter_child_nodes())
    return total


@lru_cache(maxsize=1)
def environment() -> ImmutableSandboxedEnvironment:
    return _BoundedEnvironment()


@lru_cache(maxsize=4096)
def compiled(source: str):
    env = environment()
    ast = env.parse(source)
    _Instrument().visit(ast)
    template = env.from_string(ast)
    # Jinja keeps a template's globals as a ChainMap over the environment's and copies it into a
    # dict at every render; iterating a ChainMap is slow (30 µs, half of a short prompt's whole
    # render). The environment's globals never change after it is made, so one dict serves.
    template.globals = dict(template.globals)
    return template


def is_template(text: str) -> bool:
    """Whether a text uses Jinja syntax (`{{`, `{%` or `{#`); criterion texts without it are used
    as written, so a plain text is never rendered (nor its braces interpreted)."""
    return "{{" in text or "{%" in text or "{#" in text


_OPENERS = re.compile(r"\{[{%#]")


def literal(text: str) -> str:
    """A template that renders to `text` exactly: each Jinja opener (`{{`, `{%`, `{#`) written as
    an expression that prints it. For writing text from elsewhere (an imported benchmark's
    criterion) into a rubric, where criterion texts are templates."""
    return _OPENERS.sub(lambda match: "{{ '" + match.group() + "' }}", text)


def render(source: str, context: dict[str, Any]) -> str:
    """Render a prompt template within the limits of the module docstring.

    Args:
        source: the template text.
        context: the values it may use.
    Returns:
        The rendered text, stripped.
    Raises:
        RenderLimitError: the template went over a limit; other exceptions: it failed to render.
    """
    template = compiled(source)
    budget = _Budget()
    token = _ACTIVE.set(budget)
    try:
        pieces, length = [], 0
        for piece in template.generate(context):
            length += len(piece)
            if length > MAX_OUTPUT_CHARS:
                raise RenderLimitError(f"the rendered prompt is longer than {MAX_OUTPUT_CHARS:,} characters")
            pieces.append(piece)
        return "".join(pieces).strip()
    finally:
        _ACTIVE.reset(token)


class TemplateProblem(Exception):
    def __init__(self, message: str, line: int | None, fix: str):
        super().__init__(message)
        self.line = line
        self.fix = fix


def check(source: str, allowed: set[str], trial_context: dict[str, Any] | None = None) -> None:
    """Raise TemplateProblem if the template is malformed, uses an undeclared name, reaches for
    Python internals or (given representative values) fails or breaks the sandbox rendering."""
    declared = _names_used(source)
    unknown = sorted(declared - allowed)
    if unknown:
        close = difflib.get_close_matches(unknown[0], sorted(allowed), n=1)
        hint = f"did you mean `{close[0]}`? " if close else ""
        names = ", ".join(f"`{name}`" for name in unknown)
        raise TemplateProblem(
            f"template uses {names}, which {'is' if len(unknown) == 1 else 'are'} not a declared input",
            _name_line(environment().parse(source), unknown[0]),
            f"{hint}declare it under `inputs:` (e.g. `{unknown[0]}: text`), or use one of: {', '.join(sorted(allowed))}",
        )
    if trial_context is None:
        return
    _check_rendering(source, trial_context)


@lru_cache(maxsize=4096)
def _names_used(source: str) -> frozenset[str]:
    """The names a template reads, after checking its syntax, filters and tests and that it
    reaches for no Python internals. Memoised: the task rubrics of a benchmark share their
    prompt templates, and Jinja's analysis costs milliseconds a template (a TemplateProblem is
    raised again each time, never cached)."""
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
    try:
        declared = meta.find_undeclared_variables(ast)  # compiles the template: an unknown filter or test fails here
    except TemplateSyntaxError as exc:
        raise TemplateProblem(f"template error: {exc.message}", exc.lineno,
                              f"use Jinja's built-in filters and tests ({', '.join(sorted(environment().filters)[:12])}, ...)") from None
    return frozenset(declared)


def _check_rendering(source: str, trial_context: dict[str, Any]) -> None:
    """Raise TemplateProblem if the template fails to render `trial_context` in the sandbox."""
    try:
        render(source, trial_context)
    except RenderLimitError as exc:
        raise TemplateProblem(f"template goes over a render limit: {exc}", _error_line(exc), LIMITS_FIX) from None
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
