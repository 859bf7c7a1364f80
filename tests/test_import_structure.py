"""The import structure of the product packages: which package may import which, and no
file-level import cycle anywhere.

Every ``.py`` file of the product packages is read with ``ast`` (nothing is imported), and
every import in it is resolved to a file of ours: absolute and relative imports, imports
under ``if TYPE_CHECKING:`` and imports inside functions alike (a deferred import still
ties the two files together). ``from pkg import name`` is an import of ``pkg/name.py`` when
that file exists, else of ``pkg/__init__.py``; ``import a.b`` is an import of ``a/b.py`` (or
``a/b/__init__.py``).
"""

from __future__ import annotations

import ast
import itertools
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("mediaserver", "contracts", "signaling", "devices", "recorder", "consult_api",
            "config", "huizhen")

# Which packages each package may import (besides itself). The composition root, huizhen,
# may import them all and nothing imports it; mediaserver, contracts and config import
# nothing of ours; recorder and signaling build on mediaserver; the shared vocabulary in
# contracts is open to every package but the media server.
ALLOWED: Mapping[str, frozenset[str]] = {
    "mediaserver": frozenset(),
    "contracts": frozenset(),
    "config": frozenset(),
    "devices": frozenset({"contracts"}),
    "consult_api": frozenset({"contracts"}),
    "recorder": frozenset({"mediaserver", "contracts"}),
    "signaling": frozenset({"mediaserver", "contracts"}),
    "huizhen": frozenset(PACKAGES) - {"huizhen"},
}


@dataclass(frozen=True)
class Import:
    """One import statement's tie from ``source`` to ``target`` (both repository paths)."""

    source: str
    target: str
    line: int
    names: tuple[str, ...]

    def describe(self) -> str:
        return f"{self.source}:{self.line} imports {', '.join(self.names)} from {self.target}"


@dataclass
class ImportGraph:
    files: list[str] = field(default_factory=list)
    imports: list[Import] = field(default_factory=list)

    def edges(self) -> dict[str, set[str]]:
        edges: dict[str, set[str]] = defaultdict(set)
        for found in self.imports:
            if found.target != found.source:
                edges[found.source].add(found.target)
        return edges

    def between(self, source: str, target: str) -> list[Import]:
        return [i for i in self.imports if i.source == source and i.target == target]


def package_of(path: str) -> str:
    return path.split("/", 1)[0]


def module_files(root: Path, packages: Iterable[str]) -> dict[str, str]:
    """Dotted module name -> repository path, for every .py file of ``packages``."""
    modules: dict[str, str] = {}
    for package in packages:
        directory = root / package
        if not directory.is_dir():
            continue  # a package that does not exist (yet) holds nothing to check
        for path in sorted(directory.rglob("*.py")):
            relative = path.relative_to(root)
            parts = list(relative.with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = relative.as_posix()
    return modules


def _imported(node: ast.Import | ast.ImportFrom, module: str, is_package: bool,
              modules: Mapping[str, str]) -> Iterator[tuple[str, str]]:
    """(dotted name, imported name) of each thing ``node`` imports."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield alias.name, alias.name
        return
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[:len(base) - (node.level - 1)]
        origin = ".".join([*base, *([node.module] if node.module else [])])
    else:
        origin = node.module or ""
    for alias in node.names:
        submodule = f"{origin}.{alias.name}"
        yield (submodule if submodule in modules else origin), alias.name


def _resolve(name: str, modules: Mapping[str, str]) -> str | None:
    """The file of ours that ``name`` (a module, or an attribute of one) lives in."""
    parts = name.split(".")
    while parts:
        found = modules.get(".".join(parts))
        if found is not None:
            return found
        parts.pop()
    return None


def walk(root: Path = ROOT, packages: Iterable[str] = PACKAGES) -> ImportGraph:
    modules = module_files(root, packages)
    graph = ImportGraph(files=sorted(modules.values()))
    for module, path in sorted(modules.items(), key=lambda item: item[1]):
        tree = ast.parse((root / path).read_text("utf-8"), filename=path)
        is_package = path.endswith("__init__.py")
        for node in ast.walk(tree):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            targets: dict[str, list[str]] = defaultdict(list)
            for dotted, name in _imported(node, module, is_package, modules):
                target = _resolve(dotted, modules)
                if target is not None:
                    targets[target].append(name)
            for target, names in targets.items():
                graph.imports.append(Import(path, target, node.lineno, tuple(names)))
    return graph


def strongly_connected(edges: Mapping[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one file (iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    nodes = sorted(set(edges) | {t for targets in edges.values() for t in targets})
    for start in nodes:
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(edges.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        components.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(edges.get(child, ())))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return sorted(components)


def _shortest_path(edges: Mapping[str, set[str]], start: str, goal: str,
                   allowed: set[str]) -> list[str]:
    """Breadth-first: the shortest path from start to goal inside ``allowed``."""
    previous: dict[str, str | None] = {start: None}
    frontier = [start]
    while frontier and goal not in previous:
        following = []
        for node in frontier:
            for child in sorted(edges.get(node, ())):
                if child in allowed and child not in previous:
                    previous[child] = node
                    following.append(child)
        frontier = following
    path: list[str] = []
    step: str | None = goal
    while step is not None:
        path.append(step)
        step = previous[step]
    return path[::-1]


def cycles(edges: Mapping[str, set[str]]) -> list[list[str]]:
    """One shortest cycle through every import edge inside a strongly connected component,
    each written from its smallest file and listed once: ``[a, b, a]``."""
    found: set[tuple[str, ...]] = set()
    for component in strongly_connected(edges):
        members = set(component)
        for source in component:
            for target in sorted(edges.get(source, set()) & members):
                loop = [source, *_shortest_path(edges, target, source, members)]
                body = loop[:-1]
                turn = body.index(min(body))
                body = body[turn:] + body[:turn]
                found.add((*body, body[0]))
    return [list(c) for c in sorted(found)]


def describe_cycle(graph: ImportGraph, cycle: list[str]) -> str:
    lines = [" -> ".join(cycle)]
    for source, target in itertools.pairwise(cycle):
        lines += [f"    {i.describe()}" for i in graph.between(source, target)]
    return "\n".join(lines)


def forbidden_imports(graph: ImportGraph) -> list[Import]:
    return [i for i in graph.imports
            if package_of(i.target) != package_of(i.source)
            and package_of(i.target) not in ALLOWED[package_of(i.source)]]


# --------------------------------------------------------------------------- the walker


def _tree(root: Path, files: Mapping[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, "utf-8")
    return root


def test_the_walker_resolves_relative_deferred_and_type_checking_imports(tmp_path: Path
                                                                         ) -> None:
    root = _tree(tmp_path, {
        "alpha/__init__.py": "from .beta import thing\n",
        "alpha/beta.py": "from typing import TYPE_CHECKING\n"
                         "if TYPE_CHECKING:\n    from alpha.gamma import Gamma\n"
                         "def later() -> None:\n    from . import gamma\n",
        "alpha/gamma.py": "import os\nfrom alpha import sub\nfrom alpha import VALUE\n",
        "alpha/sub/__init__.py": "from ..beta import later\nimport alpha.gamma as g\n",
    })
    graph = walk(root, ("alpha",))
    ties = {(i.source, i.target, i.names) for i in graph.imports}
    assert ties == {
        ("alpha/__init__.py", "alpha/beta.py", ("thing",)),
        ("alpha/beta.py", "alpha/gamma.py", ("Gamma",)),
        ("alpha/beta.py", "alpha/gamma.py", ("gamma",)),
        ("alpha/gamma.py", "alpha/sub/__init__.py", ("sub",)),
        ("alpha/gamma.py", "alpha/__init__.py", ("VALUE",)),
        ("alpha/sub/__init__.py", "alpha/beta.py", ("later",)),
        ("alpha/sub/__init__.py", "alpha/gamma.py", ("alpha.gamma",)),
    }
    assert cycles(graph.edges()) == [
        ["alpha/__init__.py", "alpha/beta.py", "alpha/gamma.py", "alpha/__init__.py"],
        ["alpha/beta.py", "alpha/gamma.py", "alpha/sub/__init__.py", "alpha/beta.py"],
        ["alpha/gamma.py", "alpha/sub/__init__.py", "alpha/gamma.py"],
    ]
    assert describe_cycle(graph, ["alpha/gamma.py", "alpha/sub/__init__.py",
                                  "alpha/gamma.py"]).splitlines() == [
        "alpha/gamma.py -> alpha/sub/__init__.py -> alpha/gamma.py",
        "    alpha/gamma.py:2 imports sub from alpha/sub/__init__.py",
        "    alpha/sub/__init__.py:2 imports alpha.gamma from alpha/gamma.py",
    ]


def test_the_table_refuses_an_import_of_the_composition_root(tmp_path: Path) -> None:
    root = _tree(tmp_path, {
        "huizhen/__init__.py": "", "huizhen/catalogue.py": "import consult_api\n",
        "consult_api/__init__.py": "def f() -> None:\n    from huizhen.catalogue import C\n",
        "recorder/__init__.py": "from mediaserver import Room\n",
        "mediaserver/__init__.py": "Room = object\n",
    })
    graph = walk(root, PACKAGES)
    assert [i.describe() for i in forbidden_imports(graph)] == [
        "consult_api/__init__.py:2 imports C from huizhen/catalogue.py"]


def test_the_walker_sees_a_package_that_does_not_exist_as_empty(tmp_path: Path) -> None:
    _tree(tmp_path, {"alpha/__init__.py": "from contracts import Thing\n"})
    graph = walk(tmp_path, ("alpha", "contracts"))
    assert graph.files == ["alpha/__init__.py"] and graph.imports == []


# --------------------------------------------------------------------------- the product


@pytest.fixture(scope="module")
def graph() -> ImportGraph:
    walked = walk()
    edges = sum(len(targets) for targets in walked.edges().values())
    print(f"\nimport structure: {len(walked.files)} files, {edges} import edges between "
          f"them ({len(walked.imports)} import statements resolved to files of ours)")
    return walked


def test_the_media_server_and_the_contracts_import_nothing_else_of_ours(graph: ImportGraph
                                                                        ) -> None:
    for package in ("mediaserver", "contracts"):
        outside = [i.describe() for i in graph.imports
                   if package_of(i.source) == package and package_of(i.target) != package]
        assert not outside, f"{package} must import only itself:\n" + "\n".join(outside)


def test_packages_import_only_what_the_table_allows(graph: ImportGraph) -> None:
    assert len(graph.files) > 100 and len(graph.imports) > 300  # the walk saw the product
    wrong = [i.describe() for i in forbidden_imports(graph)]
    assert not wrong, "imports between packages that the table does not allow:\n" + \
        "\n".join(wrong)


def test_no_file_level_import_cycle(graph: ImportGraph) -> None:
    found = cycles(graph.edges())
    assert not found, f"{len(found)} import cycle(s):\n" + \
        "\n".join(describe_cycle(graph, cycle) for cycle in found)
