"""Data flows one way: data -> models -> explain -> metrics -> study -> report.

A lower layer must never import a higher one; this reads every module's imports (statically, with ast)
and fails naming the offending file and import.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "binsight"
# rank of each top-level part; a module may import only parts of equal or lower rank
RANK = {"_io": 0, "nn": 1, "data": 1, "models": 2, "train": 3, "explain": 4, "metrics": 5, "study": 6, "report": 7, "cli": 8}


def _part(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "binsight" or len(parts) < 2:
        return None
    return parts[1]


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def _modules():
    return sorted(p for p in SRC.rglob("*.py"))


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_lower_layers_do_not_import_higher_ones(path):
    rel = path.relative_to(SRC)
    own = rel.parts[0].removesuffix(".py")
    if own not in RANK:
        return
    for name in _imports(path):
        part = _part(name)
        if part is None or part not in RANK:
            continue
        assert RANK[part] <= RANK[own], f"{rel} ({own}) imports {name}, a higher layer ({part})"


def test_the_rank_table_knows_every_part():
    parts = {p.name.removesuffix(".py") for p in SRC.iterdir() if not p.name.startswith("__")}
    parts.discard("__pycache__")
    assert parts <= set(RANK), f"add {sorted(parts - set(RANK))} to RANK"

