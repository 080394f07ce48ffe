"""The package's layout follows the data: each stage imports only from the stages before it.

    errors -> foundation (redaction, llm, imageio, files) -> cache, testing -> rubrics -> planning
    -> judge, metrics -> store -> report, benchmarks -> run (the pipeline), serve (rewards)
    -> integrations (trainers' reward functions) -> cli

A module may import from its own unit and from units of an earlier layer, never from a later
one or from another unit of its own layer; nothing imports the CLI. Every import counts, also
those inside functions and under TYPE_CHECKING. The public API (`rubric_judge/__init__.py`)
names its modules as strings and is exempt.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "rubric_judge"

LAYERS: list[set[str]] = [
    {"errors"},
    {"redaction", "llm", "imageio", "files"},
    {"cache", "testing"},
    {"rubrics"},
    {"planning"},
    {"judge", "metrics"},
    {"store"},
    {"report", "benchmarks"},
    {"run", "plan_summary", "serve"},
    {"integrations"},  # the trainers' reward functions: over HTTP, or a RewardService in process
    {"cli"},
]
LAYER = {unit: index for index, units in enumerate(LAYERS) for unit in units}


def unit_of(module: str) -> str:
    """`rubric_judge.planning.compile` -> `planning`."""
    return module.split(".")[1]


def imported_modules(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names if alias.name.startswith("rubric_judge.")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.startswith("rubric_judge."):
                found.append((node.lineno, node.module))
            elif node.module == "rubric_judge":  # from rubric_judge import imageio
                found += [(node.lineno, f"rubric_judge.{alias.name}") for alias in node.names]
    return found


def modules() -> list[tuple[Path, str]]:
    return [(path, ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)) for path in sorted(PACKAGE.rglob("*.py"))]


def test_every_module_belongs_to_a_layer():
    units = {unit_of(name) for _, name in modules() if name != "rubric_judge.__init__"}
    assert units <= set(LAYER), f"add these to LAYERS: {sorted(units - set(LAYER))}"


def test_imports_follow_the_flow():
    violations = []
    for path, name in modules():
        if name == "rubric_judge.__init__":
            continue
        own = unit_of(name)
        for line, target in imported_modules(path):
            other = unit_of(target)
            if other == own:
                continue
            if LAYER[other] >= LAYER[own]:
                violations.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {own} (layer {LAYER[own]}) imports {target} (layer {LAYER[other]})")
    assert not violations, "imports against the flow:\n" + "\n".join(violations)


def test_the_check_sees_imports_inside_functions(tmp_path: Path):
    sample = tmp_path / "m.py"
    sample.write_text("def f():\n    from rubric_judge.cli.output import stdout\n\nif False:\n    import rubric_judge.store.db\n")
    assert imported_modules(sample) == [(2, "rubric_judge.cli.output"), (5, "rubric_judge.store.db")]
