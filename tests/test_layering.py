"""Data flows one way: data -> models -> explain -> metrics -> study -> report -> cli, on a shared bottom.

Every module under src/binsight belongs to a part with a rank (a module whose part has no rank fails the
test). A module may import its own part and parts of LOWER rank, never a higher one; inside the study, each
module has a rank of its own (STUDY_RANK) and imports study modules of its rank or lower. Imports are read
statically (ast), including imports inside functions, and relative imports are resolved. A second test
checks that the module import graph has no circle, a third that argparse is imported only under
binsight/cli (no library function parses arguments).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "binsight"

#: rank of each part of the package: the root package, the bottom modules, then the layers.
RANK = {
    "binsight": 0,  # the root __init__ (__version__)
    "errors": 0,
    "_io": 0,
    "_registry": 1,  # errors
    "_utils": 1,  # errors
    "distributed": 2,  # _utils, errors (torch.distributed helpers)
    "nn": 2,
    "data": 3,
    "models": 4,
    "explain": 5,
    "metrics": 6,
    "train": 7,  # beside the study: data, models, nn; explain and metrics never import it
    "study": 8,
    "report": 9,
    "cli": 10,
    "__main__": 11,  # python -m binsight: the command line
}


#: rank of each module (or subpackage) directly under binsight.study: a study module may import the study
#: modules of its own rank or lower (the module graph test keeps those of one rank from importing in a circle).
STUDY_RANK = {
    "study": 0,  # binsight.study itself (the package's __init__)
    "errors": 0,
    "passes": 0,  # counting the images a stage puts through its models
    "stats": 0,  # the two-level bootstrap
    "measures": 0,  # the per-map and per-pair values, the chance maps
    "names": 1,  # names shared by the study, the verdicts and the report
    "formats": 2,  # the run folder's file formats (Row, ...)
    "records": 2,  # one typed record per concept of the run folder
    "config": 2,  # the configuration (sections, check, toml)
    "files": 2,  # the run folder's one guarded reader and writer
    "chunks": 3,  # the run folder's checksummed .npz chunks (maps, curves)
    "units": 3,  # the run folder's checksummed unit CSVs and measurements.csv
    "record_store": 3,  # the run folder's records (models.json, images.json, ...)
    "store": 3,  # the run folder: claiming, lock, manifest; holds the parts above
    "plan": 4,  # the configuration resolved once
    "verdicts": 4,
    "inference": 4,  # the verdicts' statistics (#21)
    "context": 5,
    "launch": 5,
    "stages": 6,  # each stage one module; stages may import each other
    "runner": 7,
    "settings_reference": 8,  # docs/settings.md, --print-config
}


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = sorted(SRC.rglob("*.py"))
KNOWN = {_module_name(p) for p in MODULES}
module_name = _module_name


def part_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def all_imports(path: Path, module: str | None = None) -> list[str]:
    """Every module ``path`` imports (binsight's and any other, also inside functions), as absolute names:
    ``import X`` gives X; ``from X import y`` gives X.y where that is a module of the package (a
    submodule), else X.

    ``module``: the file's dotted name (default: from its place under src/binsight).
    """
    tree = ast.parse(path.read_text(), filename=str(path))
    module = module or module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            names += [f"{base}.{a.name}" if f"{base}.{a.name}" in KNOWN else base for a in node.names]
    return list(dict.fromkeys(names))


def imports(path: Path, module: str | None = None) -> list[str]:
    """The binsight modules among :func:`all_imports`."""
    return [n for n in all_imports(path, module) if n == "binsight" or n.startswith("binsight.")]


COMMAND_LINE_ONLY = ("argparse",)
"""Modules only the command line (``binsight.cli``) may import: no library function parses arguments."""


def command_line_imports(module: str, names: list[str]) -> list[str]:
    """What is wrong with ``module`` importing ``names``: a command-line-only module outside ``binsight.cli``."""
    if module == "binsight.cli" or module.startswith("binsight.cli."):
        return []
    return [f"{module} imports {name}, which only binsight.cli may import" for name in names
            if name.split(".")[0] in COMMAND_LINE_ONLY]


def study_module_of(module: str) -> str:
    """The module or subpackage directly under binsight.study that ``module`` is or belongs to ("study"
    for the package itself)."""
    parts = module.split(".")
    return parts[2] if len(parts) > 2 else "study"


def violations(module: str, names: list[str]) -> list[str]:
    """What is wrong with ``module`` importing ``names``: an unranked part, or a higher layer (inside the
    study: an unranked study module, or a study module of higher rank)."""
    own = part_of(module)
    if own not in RANK:
        return [f"{module}: part {own!r} has no rank; add it to RANK in tests/test_layering.py"]
    if own == "study" and study_module_of(module) not in STUDY_RANK:
        return [f"{module}: study module {study_module_of(module)!r} has no rank; add it to STUDY_RANK in "
                "tests/test_layering.py"]
    found = []
    for name in names:
        part = part_of(name)
        if part not in RANK:
            found.append(f"{module} imports {name}: part {part!r} has no rank")
        elif part != own and RANK[part] > RANK[own]:
            found.append(f"{module} ({own}) imports {name}, a higher layer ({part})")
        elif part == own == "study":
            found += _study_violations(module, name)
    return found


def _study_violations(module: str, name: str) -> list[str]:
    """``module`` (of the study) importing study module ``name``: unranked, or of a higher rank."""
    mine, theirs = study_module_of(module), study_module_of(name)
    if theirs not in STUDY_RANK:
        return [f"{module} imports {name}: study module {theirs!r} has no rank"]
    if STUDY_RANK[theirs] > STUDY_RANK[mine]:
        return [f"{module} (study rank {STUDY_RANK[mine]}) imports {name}, a higher study module "
                f"({theirs}, rank {STUDY_RANK[theirs]})"]
    return []


def circle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``graph`` (module -> modules it imports), or None."""
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def module_graph() -> dict[str, set[str]]:
    """Each module -> the package modules it imports."""
    return {module_name(p): {n for n in imports(p) if n in KNOWN and n != module_name(p)} for p in MODULES}


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_every_module_is_ranked_and_imports_only_its_own_or_lower_layers(path):
    assert violations(module_name(path), imports(path)) == []


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_argparse_is_imported_only_under_binsight_cli(path):
    assert command_line_imports(module_name(path), all_imports(path)) == []


def test_the_module_graph_has_no_circle():
    assert circle(module_graph()) is None


def test_the_checks_can_fail(tmp_path):
    """An explain module importing train, an unranked part, and a two-module circle are all caught."""
    bad = tmp_path / "command.py"
    bad.write_text("def f():\n    from binsight.train import load_checkpoint\nfrom .base import Explainer\n")
    names = imports(bad, "binsight.explain.command")
    assert sorted(names) == ["binsight.explain.base", "binsight.train"]
    assert violations("binsight.explain.command", names) == [
        "binsight.explain.command (explain) imports binsight.train, a higher layer (train)"
    ]
    assert "has no rank" in violations("binsight.newpart.x", [])[0]
    assert violations("binsight.study.store", ["binsight.study.runner", "binsight.study.config.sections"]) == [
        "binsight.study.store (study rank 3) imports binsight.study.runner, a higher study module (runner, rank 7)"
    ]
    assert "study module 'newstage' has no rank" in violations("binsight.study.newstage", [])[0]
    assert violations("binsight.study.verdicts.noise", ["binsight.study.verdicts.rules", "binsight.study.stats"]) == []
    parser = tmp_path / "settings.py"
    parser.write_text("def f():\n    import argparse.foo\nfrom argparse import Namespace\n")
    assert command_line_imports("binsight.study.settings", all_imports(parser, "binsight.study.settings")) == [
        "binsight.study.settings imports argparse, which only binsight.cli may import",
        "binsight.study.settings imports argparse.foo, which only binsight.cli may import",
    ]
    assert command_line_imports("binsight.cli.study", ["argparse"]) == []
    assert circle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]
    assert circle({"a": {"b"}, "b": set()}) is None


def test_test_folders_mirror_the_source_tree():
    """tests/PART/ holds the tests of binsight.PART (a package or module of src/binsight); the files at the
    top of tests/ are the bottom modules', the whole project's, and what the folders share."""
    tests = Path(__file__).resolve().parent
    folders = sorted(p.name for p in tests.iterdir() if p.is_dir() and not p.name.startswith((".", "__")))
    assert folders, "no test folders"
    parts = {p.stem for p in SRC.iterdir() if p.suffix == ".py" or (p / "__init__.py").exists()}
    assert [f for f in folders if f not in parts] == [], "a test folder must be named for a part of src/binsight"
    assert all(any(f.glob("test_*.py")) for f in map(tests.joinpath, folders))


MAX_LINES = 600


def test_no_source_file_is_long():
    """A newcomer reads a module in one sitting: at most 600 lines a file."""
    long = [f"{path.relative_to(SRC)}: {n} lines" for path in sorted(SRC.rglob("*.py"))
            if (n := path.read_text(encoding="utf-8").count("\n")) > MAX_LINES]
    assert long == []


def test_no_library_function_takes_a_namespace():
    """Only binsight/cli sees argparse.Namespace: no library function is annotated with it or reads options
    off a parameter named ``args`` (``args.epochs``), the shape of a parsed command line."""
    found = []
    for path in sorted(SRC.rglob("*.py")):
        if "cli" in path.relative_to(SRC).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            named = "args" in [a.arg for a in node.args.args + node.args.kwonlyargs]
            reads = any(isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "args"
                        for n in ast.walk(node))
            if "Namespace" in ast.unparse(node.args) or (named and reads):
                found.append(f"{path.relative_to(SRC)}: {node.name}")
    assert found == []


MAX_METHODS = 25


def methods_per_class(tree: ast.AST) -> dict[str, int]:
    """{class name: how many functions its body defines (methods, properties, class and static methods)}."""
    return {node.name: sum(isinstance(b, (ast.FunctionDef, ast.AsyncFunctionDef)) for b in node.body)
            for node in ast.walk(tree) if isinstance(node, ast.ClassDef)}


def test_no_class_has_many_methods():
    """A class has one job: at most 25 methods a class across src/binsight."""
    found = [f"{path.relative_to(SRC)}: {name} has {n} methods"
             for path in sorted(SRC.rglob("*.py"))
             for name, n in methods_per_class(ast.parse(path.read_text(encoding="utf-8"))).items() if n > MAX_METHODS]
    assert found == []
    crowded = ast.parse("class Big:\n" + "".join(f"    def m{i}(self): pass\n" for i in range(MAX_METHODS + 1)))
    assert methods_per_class(crowded) == {"Big": MAX_METHODS + 1}
