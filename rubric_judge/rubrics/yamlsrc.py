"""Safe YAML loading that remembers where every value came from.

Rubric files are data from strangers: only PyYAML's safe constructors run, duplicate keys are
errors (YAML silently keeps the last one), alias expansion is bounded, and every value's
file:line:column is kept in a side table keyed by its path, so that later validation errors
can point at the exact line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rubric_judge.errors import Location, Problem, UserError

Path_ = tuple[str | int, ...]

# A rubric is a few thousand values at most; this bounds "billion laughs" alias bombs.
MAX_NODES = 200_000


@dataclass
class Located:
    """Plain Python data from one YAML document plus the location of every value in it."""

    data: Any
    locations: dict[Path_, Location] = field(default_factory=dict)
    # Where the text of each block scalar starts, for templates whose errors carry their own
    # line numbers: (first content line, is_block_scalar).
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
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = Location(file, mark.line + 1, mark.column + 1) if mark else Location(file)
        message = " ".join(str(p) for p in (exc.context, exc.problem) if p)
        raise UserError(
            Problem(where, f"not valid YAML: {message}", fix="check indentation, quoting and colons on this line")
        ) from None
    except yaml.YAMLError as exc:
        raise UserError(Problem(Location(file), f"not valid YAML: {exc}")) from None
    finally:
        loader.dispose()
    if node is None:
        raise UserError(Problem(Location(file, 1, 1), "the file is empty", fix="start with `rubric: <id>`"))
    located = Located(data=None)
    counter = [0]
    located.data = _convert(node, (), file, located, loader, counter)
    return located


def _convert(node: yaml.Node, path: Path_, file: Path | None, out: Located, loader: yaml.SafeLoader, counter: list[int]) -> Any:
    counter[0] += 1
    if counter[0] > MAX_NODES:
        raise UserError(
            Problem(Location(file), f"the document expands to more than {MAX_NODES} values", fix="remove recursive or repeated YAML aliases")
        )
    mark = node.start_mark
    out.locations[path] = Location(file, mark.line + 1, mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise UserError(Problem(_loc(file, key_node), "mapping keys must be plain names", fix="quote the key or use a scalar"))
            key = loader.construct_object(key_node)
            if key == "<<":
                raise UserError(Problem(_loc(file, key_node), "YAML merge keys (`<<`) are not supported", fix="use `extends:` or write the values out"))
            if not isinstance(key, str):
                key = str(key)
            if key in result:
                raise UserError(
                    Problem(_loc(file, key_node), f"duplicate key {key!r}", field=dotted(path + (key,)), fix="remove one of the two entries")
                )
            result[key] = _convert(value_node, path + (key,), file, out, loader, counter)
            out.locations[path + (key,)] = _loc(file, key_node)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, path + (i,), file, out, loader, counter) for i, item in enumerate(node.value)]
    try:
        value = loader.construct_object(node)
    except yaml.YAMLError as exc:
        raise UserError(Problem(_loc(file, node), f"cannot read value: {exc}", field=dotted(path))) from None
    if isinstance(node, yaml.ScalarNode) and isinstance(value, str):
        block = node.style in ("|", ">")
        out.scalar_starts[path] = (mark.line + 1 + (1 if block else 0), block)
    return value


def _loc(file: Path | None, node: yaml.Node) -> Location:
    return Location(file, node.start_mark.line + 1, node.start_mark.column + 1)


def dotted(path: Path_) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text

