"""The floor plan: imports flow down the layers only (STYLE.md), checked on the source with ``ast``.

    cli → pipeline, report, api (the Python front door) → compress, edge, quantum (and artifacts.py, which opens any model file)
        → train → distributed → models, data → config, errors, utils

A module may import from its own layer or below. Imports inside functions count too: a lazy import
upward is still an upward dependency.
"""

import ast
from pathlib import Path

import pytest

import lepton

PACKAGE = Path(lepton.__file__).parent
LAYERS = [
    ("errors", "utils", "config"),
    ("models", "data"),
    ("distributed",),
    ("train",),
    ("compress", "edge", "quantum", "artifacts"),
    ("report", "pipeline", "api"),
    ("cli",),
]
RANK = {name: i for i, names in enumerate(LAYERS) for name in names}
ENTRY_POINTS = {"__init__.py", "__main__.py", "train/__main__.py"}  # `python -m` shims and re-exports may reach up


def layer(module: str) -> int | None:
    parts = module.split(".")
    return RANK.get(parts[1]) if parts[0] == "lepton" and len(parts) > 1 else None


def upward_imports(source: str, own: int) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
        elif isinstance(node, ast.Import):
            modules = [a.name for a in node.names]
        else:
            continue
        found += [m for m in modules if (rank := layer(m)) is not None and rank > own]
    return found


def violations() -> list[str]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel in ENTRY_POINTS:
            continue
        own = RANK.get(rel.split("/")[0].removesuffix(".py"))
        if own is None:
            out.append(f"{rel}: not in any layer; add its package to LAYERS")
            continue
        out += [f"{rel} (layer {own}) imports {m} (layer {layer(m)})" for m in upward_imports(path.read_text(), own)]
    return out


def test_imports_flow_down_the_layers():
    assert violations() == []


@pytest.mark.parametrize(
    "source, own, expected",
    [
        ("from lepton.train.job import train_model", RANK["data"], ["lepton.train.job"]),
        ("def f():\n    import lepton.cli.app", RANK["train"], ["lepton.cli.app"]),
        ("from lepton.errors import FormatError\nimport torch", RANK["models"], []),
        ("from lepton.compress.chain import x", RANK["edge"], []),  # same layer
    ],
)
def test_the_check_catches_a_planted_upward_import(source, own, expected):
    assert upward_imports(source, own) == expected
