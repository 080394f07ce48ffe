"""Safe YAML loading that remembers where every value came from.

Rubric files are data from strangers: only PyYAML's safe constructors run, explicit tags other
than the plain YAML types are refused (`!!python/object` and friends), duplicate keys are errors
(YAML silently keeps the last one), alias expansion and nesting depth are bounded before any
value is built, and every value's file:line:column is kept in a side table keyed by its path, so
that later validation errors can point at the exact line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rubric_judge.errors import Location, Problem, UserError

# libyaml's parser builds the node tree ~13x faster (validating 296 task files) and keeps line
# and column marks; the pure-Python safe loader is the fallback where libyaml is absent.
_FAST_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

Path_ = tuple[str | int, ...]

# A rubric is a few thousand values at most; this bounds "billion laughs" alias bombs.
MAX_NODES = 200_000
# A rubric nests four or five levels deep; this bounds pathological nesting. It is checked on
# the parser's event stream before any node is built: libyaml's composer recurses in C once per
# level and overflows the C stack (SIGSEGV) somewhere past 20,000 levels.
MAX_DEPTH = 64

_CORE = "tag:yaml.org,2002:"
_MAP_TAG, _SEQ_TAG = _CORE + "map", _CORE + "seq"
# Scalar tags a rubric may use (explicitly or implicitly): plain data, nothing that builds objects.
# (`value` is what PyYAML resolves a bare `=` to; it is read as the text "=".)
_SCALAR_TAGS = {_CORE + t for t in ("str", "int", "float", "bool", "null", "timestamp", "value")}


@dataclass
class Located:
    """Plain Python data from one YAML document plus the location of every value in it."""

    data: Any
    locations: dict[Path_, Location] = field(default_factory=dict)
    # Where the text of each string scalar starts, for templates whose errors carry their own
    # line numbers: (first content line, exact). `exact` is true when line N of the string is
    # line first+N-1 of the file (a literal `|` block, or a one-line value); folded and
    # multi-line flow scalars join lines, so only their first line is known.
    scalar_starts: dict[Path_, tuple[int, bool]] = field(default_factory=dict)

    def where(self, path: Path_, file: Path | None = None) -> Location:
        """The location of `path`, or of its nearest located ancestor."""
        for end in range(len(path), -1, -1):
            loc = self.locations.get(tuple(path[:end]))
            if loc is not None:
                return loc
        return Location(file)


def load_yaml(text: str, file: Path | None) -> Located:
    """Parse one YAML document into plain data with locations; raises UserError."""
    try:
        _check_nesting(text, file)
    except yaml.MarkedYAMLError as exc:
        raise UserError(_syntax_problem(exc, text, file)) from None
    except yaml.YAMLError:
        pass  # reported with the composer's wording below
    loader = _FAST_SAFE_LOADER(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        raise UserError(_syntax_problem(exc, text, file)) from None
    except yaml.YAMLError as exc:
        raise UserError(
            Problem(Location(file), f"not valid YAML: {exc}", fix="check the file is one YAML document of `key: value` lines")
        ) from None
    except RecursionError:
        raise UserError(
            Problem(
                Location(file),
                "not valid YAML: the document is nested too deeply",
                fix="a rubric nests a few levels at most; remove the nested brackets",
            )
        ) from None
    finally:
        loader.dispose()
    if node is None:
        raise UserError(
            Problem(
                Location(file, 1, 1),
                "the file is empty",
                fix="start with `rubric: <id>`; `rubric-judge new NAME` writes a commented example",
            )
        )
    _check_shape(node, file)
    located = Located(data=None)
    located.data = _convert(node, (), file, located, loader)
    return located


def _check_nesting(text: str, file: Path | None) -> None:
    """Refuse collections nested deeper than MAX_DEPTH before the (recursive) composer sees them.

    The parser underneath is a state machine with explicit stacks (libyaml's in C, or PyYAML's
    pure-Python one), so walking its events never recurses, whatever the nesting. It adds about a tenth to the
    load time (a 2 MB rubric of 35,000 criteria: ~0.5 s of events against ~5 s to build the nodes).
    """
    loader = _FAST_SAFE_LOADER(text)
    depth = 0
    try:
        while (event := loader.get_event()) is not None:
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    raise UserError(
                        Problem(
                            _mark(file, event.start_mark),
                            f"values are nested more than {MAX_DEPTH} levels deep (brackets or indented lists and mappings)",
                            fix="a rubric nests a few levels at most; close the brackets or flatten this value",
                        )
                    )
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    finally:
        loader.dispose()


def _syntax_problem(exc: yaml.MarkedYAMLError, text: str, file: Path | None) -> Problem:
    """Turn PyYAML's parser message into a plain one with a fix for the usual mistakes."""
    context, problem = exc.context or "", exc.problem or ""
    mark = exc.problem_mark or exc.context_mark
    where = _mark(file, mark) if mark else Location(file)
    detail = " ".join(p for p in (context, problem) if p)
    lines = text.splitlines()
    line_text = lines[mark.line] if mark and mark.line < len(lines) else ""
    if "'\\t'" in problem:
        return Problem(
            where,
            "a tab character in the indentation; YAML indents with spaces only",
            fix="replace the tab at the start of this line with spaces (two per level)",
        )
    if context.startswith("while parsing a flow") and exc.context_mark is not None:
        opener, closer = ("[", "]") if "sequence" in context else ("{", "}")
        found = (
            f" before line {exc.problem_mark.line + 1}"
            if exc.problem_mark is not None and exc.problem_mark.line != exc.context_mark.line
            else ""
        )
        return Problem(
            _mark(file, exc.context_mark),
            f"not valid YAML: the `{opener}` opened here is not closed{found} ({problem})",
            fix=f"add the closing `{closer}`, or put a `,` between the items",
        )
    if context.startswith("while scanning a block scalar"):
        value = line_text.split(":", 1)[1].strip() if ":" in line_text else ""
        key = line_text.split(":", 1)[0].strip().lstrip("- ")
        example = f'`{key}: "{value}"`' if key and value else "the value"
        return Problem(
            where,
            f"not valid YAML: a value starting with `>` or `|` begins a multi-line text block ({problem})",
            fix=f"put the value in quotes: {example}",
        )
    if context.startswith("while scanning a quoted scalar") and exc.context_mark is not None:
        return Problem(
            _mark(file, exc.context_mark),
            f"not valid YAML: the quote opened here is never closed ({problem})",
            fix="add the closing quote on the same line, or use a `|` block for multi-line text",
        )
    if "mapping values are not allowed here" in problem:
        return Problem(
            where,
            "not valid YAML: a second `: ` on one line (text containing `: ` must be quoted)",
            fix='put the value in quotes, e.g. `description: "Note: ..."`',
        )
    if "found undefined alias" in problem:
        return Problem(
            where, f"not valid YAML: {detail}", fix="define the anchor (`&name`) before its alias (`*name`), or remove the alias"
        )
    if "found character '@'" in problem or "found character '`'" in problem:
        return Problem(where, f"not valid YAML: {detail}", fix="values starting with @ or ` must be quoted")
    return Problem(
        where,
        f"not valid YAML: {detail}",
        fix="check indentation (spaces, aligned with the keys above), quoting and the `key: value` colons on this line",
    )


def _check_shape(root: yaml.Node, file: Path | None) -> None:
    """Refuse recursive aliases, deep nesting and alias bombs before building any value."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node: yaml.Node, depth: int) -> int:
        known = sizes.get(id(node))
        if known is not None:
            return known
        if id(node) in active:
            raise UserError(
                Problem(
                    _loc(file, node),
                    "this value contains itself through a YAML alias (`&name` ... `*name` inside it)",
                    fix="remove the alias; rubric values cannot be recursive",
                )
            )
        if depth > MAX_DEPTH:
            raise UserError(
                Problem(
                    _loc(file, node),
                    f"values are nested more than {MAX_DEPTH} levels deep",
                    fix="a rubric nests a few levels at most; flatten this value",
                )
            )
        active.add(id(node))
        total = 1
        if isinstance(node, yaml.MappingNode):
            total += sum(size(value, depth + 1) for _, value in node.value)
        elif isinstance(node, yaml.SequenceNode):
            total += sum(size(item, depth + 1) for item in node.value)
        active.discard(id(node))
        sizes[id(node)] = total
        return total

    if size(root, 0) <= MAX_NODES:
        return
    # Point at the smallest value that is too big by itself: the one whose aliases explode.
    node, path = root, ()
    while True:
        children = (
            node.value if isinstance(node, yaml.SequenceNode) else [v for _, v in node.value] if isinstance(node, yaml.MappingNode) else []
        )
        keys = (
            range(len(children))
            if isinstance(node, yaml.SequenceNode)
            else [k.value for k, _ in node.value]
            if isinstance(node, yaml.MappingNode)
            else []
        )
        big = next(((key, child) for key, child in zip(keys, children, strict=True) if sizes[id(child)] > MAX_NODES), None)
        if big is None:
            break
        path, node = (*path, big[0]), big[1]
    name = f"`{dotted(path)}`" if path else "the document"
    raise UserError(
        Problem(
            _loc(file, node),
            f"{name} expands to {sizes[id(node)]:,} values through YAML aliases (the limit is {MAX_NODES:,}): an alias bomb",
            field=dotted(path),
            fix="remove the repeated `*alias` references and write the values out",
        )
    )


def _convert(node: yaml.Node, path: Path_, file: Path | None, out: Located, loader: Any) -> Any:
    out.locations[path] = _loc(file, node)
    if isinstance(node, yaml.MappingNode):
        _check_tag(node, _MAP_TAG, path, file)
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise UserError(
                    Problem(
                        _loc(file, key_node),
                        "mapping keys must be plain names",
                        field=dotted(path),
                        fix="write the key as a plain word, e.g. `name: value`",
                    )
                )
            if key_node.tag == _CORE + "merge":
                raise UserError(
                    Problem(
                        _loc(file, key_node),
                        "YAML merge keys (`<<`) are not supported",
                        field=dotted(path),
                        fix="use `extends:` or write the values out",
                    )
                )
            _check_tag(key_node, None, path, file)
            key = loader.construct_object(key_node)
            if not isinstance(key, str):
                key = str(key)
            if key in result:
                first = out.locations.get(path + (key,))
                seen = f" (first at line {first.line})" if first and first.line else ""
                raise UserError(
                    Problem(
                        _loc(file, key_node),
                        f"duplicate key {key!r}{seen}; YAML would silently keep only the last one",
                        field=dotted(path + (key,)),
                        fix="remove one of the two entries",
                    )
                )
            result[key] = _convert(value_node, path + (key,), file, out, loader)
            out.locations[path + (key,)] = _loc(file, key_node)
        return result
    if isinstance(node, yaml.SequenceNode):
        _check_tag(node, _SEQ_TAG, path, file)
        return [_convert(item, path + (i,), file, out, loader) for i, item in enumerate(node.value)]
    _check_tag(node, None, path, file)
    try:
        value = node.value if node.tag == _CORE + "value" else loader.construct_object(node)
    except (yaml.YAMLError, ValueError) as exc:
        raise UserError(
            Problem(
                _loc(file, node),
                f"cannot read value: {exc}",
                field=dotted(path),
                fix="write the value as plain text, in quotes if it starts with a special character",
            )
        ) from None
    if isinstance(node, yaml.ScalarNode) and isinstance(value, str):
        if node.style == "|":
            out.scalar_starts[path] = (node.start_mark.line + 2, True)
        elif node.style == ">":
            out.scalar_starts[path] = (node.start_mark.line + 2, False)
        else:
            out.scalar_starts[path] = (node.start_mark.line + 1, node.end_mark.line == node.start_mark.line)
    return value


def _check_tag(node: yaml.Node, expected: str | None, path: Path_, file: Path | None) -> None:
    """Only plain YAML types: a `!!python/...` or custom tag is refused, not silently ignored."""
    allowed = node.tag == expected if expected else node.tag in _SCALAR_TAGS
    if allowed:
        return
    shown = "!!" + node.tag[len(_CORE) :] if node.tag.startswith(_CORE) else node.tag
    raise UserError(
        Problem(
            _loc(file, node),
            f"the YAML tag `{shown}` is not allowed: rubric files hold plain text, numbers, lists and mappings only",
            field=dotted(path),
            fix=f"remove `{shown}` and write the value itself",
        )
    )


def _mark(file: Path | None, mark: yaml.Mark) -> Location:
    return Location(file, mark.line + 1, mark.column + 1)


def _loc(file: Path | None, node: yaml.Node) -> Location:
    return _mark(file, node.start_mark)


def dotted(path: Path_) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text
