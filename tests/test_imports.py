"""The project's modules form no import cycles and keep out of each other's private names.

Read from the source with `ast`, so imports inside functions (lazy imports) count as much as
those at the top of a module; relative imports are resolved against their package.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("ablate", "trainers")
CHECKED = (*PACKAGES, "benchmarks", "scripts")  # where a private import is looked for


def module_files(root: Path, packages: tuple[str, ...]) -> dict[str, Path]:
    """Dotted module name -> file, for every module of `packages` under `root`."""
    found = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imported_names(name: str, path: Path) -> Iterator[tuple[str, str | None, int]]:
    """(module, imported name or None, line) of each import in the file, lazy ones included;
    `from m import x` gives (m, x), `import m` gives (m, None)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: up level-1 packages from this module's package
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            for alias in node.names:
                yield base, alias.name, node.lineno


def dependencies(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules that `name` imports: `from p import m` depends on the module p.m when
    there is one, else on p (the name lives in p); a dotted module's parents are implied."""
    out = set()
    for module, attr, _ in imported_names(name, path):
        target = f"{module}.{attr}" if attr and f"{module}.{attr}" in modules else module
        while target and target not in modules:
            target = target.rpartition(".")[0]
        if target and target != name:
            out.add(target)
    return out


def import_cycles(modules: dict[str, Path]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    graph = {name: dependencies(name, path, modules) for name, path in modules.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while (top := stack.pop()) != node:
                component.append(top)
            if component:
                cycles.append(sorted([node, *component]))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def private_uses(name: str, path: Path, modules: dict[str, Path]) -> list[str]:
    """Where `name` takes a private (`_x`) name of another project module: `from m import _x`,
    or `m._x` on a name bound to a project module (`import a.m as m`, `from a import m`)."""
    found, bound = [], {}
    for module, attr, line in imported_names(name, path):
        if attr is None:
            if module in modules:  # `import a.b` binds `a`; chains are resolved below
                bound[module.split(".")[0]] = module.split(".")[0]
            continue
        if f"{module}.{attr}" in modules:
            bound[attr] = f"{module}.{attr}"
        elif _is_private(attr) and module in modules and module != name:
            found.append(f"{path.name}:{line} from {module} import {attr}")
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute) and _is_private(node.attr):
            owner = _dotted(node.value, bound)
            if owner in modules and owner != name:
                found.append(f"{path.name}:{node.lineno} {owner}.{node.attr}")
    return found


def _is_private(attr: str) -> bool:
    return attr.startswith("_") and not attr.startswith("__")


def _dotted(node: ast.expr, bound: dict[str, str]) -> str | None:
    """The module an expression such as `loop` or `trainers.loop` names, if any."""
    if isinstance(node, ast.Name):
        return bound.get(node.id)
    if isinstance(node, ast.Attribute) and (owner := _dotted(node.value, bound)):
        return f"{owner}.{node.attr}"
    return None


MODULES = module_files(REPO, PACKAGES)


@pytest.mark.parametrize("package", ["ablate", "trainers"])
def test_no_import_cycles(package):
    cycles = [c for c in import_cycles(MODULES) if c[0].split(".")[0] == package]
    assert not cycles, f"modules that import each other (move what they share out): {cycles}"


@pytest.mark.parametrize("package", CHECKED)
def test_no_module_takes_another_modules_private_names(package):
    modules = module_files(REPO, CHECKED)
    found = [
        use
        for name, path in modules.items()
        if name.split(".")[0] == package
        for use in private_uses(name, path, modules)
    ]
    assert not found, f"private names taken from other modules (make them public): {found}"


def write_package(root: Path, files: dict[str, str]) -> dict[str, Path]:
    for relative, text in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text)
    return module_files(root, ("pkg",))


def test_a_lazy_relative_import_cycle_is_found(tmp_path):
    """Negative control: a cycle closed by an import inside a function, written relatively."""
    modules = write_package(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "from pkg import b\n",
            "pkg/b.py": "from pkg.sub import c\n",
            "pkg/sub/__init__.py": "",
            "pkg/sub/c.py": "def f():\n    from ..a import x\n",
            "pkg/d.py": "import pkg.a\n",  # imports into the cycle, not part of it
        },
    )
    assert import_cycles(modules) == [["pkg.a", "pkg.b", "pkg.sub.c"]]


def test_a_submodule_importing_its_package_is_no_cycle_unless_it_takes_the_packages_names(
    tmp_path,
):
    files = {"pkg/__init__.py": "from pkg.a import f\n", "pkg/a.py": "from pkg import b\n"}
    files["pkg/b.py"] = ""
    assert import_cycles(write_package(tmp_path, files)) == []
    files["pkg/a.py"] = "from pkg import VERSION\n"  # defined in pkg/__init__: a real cycle
    assert import_cycles(write_package(tmp_path, files)) == [["pkg", "pkg.a"]]


def test_private_names_taken_from_another_module_are_found(tmp_path):
    """Negative control: each way of reaching into a module's privates is reported; a module's
    own privates, dunders and public names are not."""
    modules = write_package(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "_x = 1\n__all__ = []\ny = _x\n",
            "pkg/b.py": "from pkg.a import _x, y\nfrom . import a\nz = a._x + a.y\n",
            "pkg/c.py": "import pkg.a\n\ndef f():\n    return pkg.a._x, pkg.a.__all__\n",
        },
    )
    found = {name: private_uses(name, path, modules) for name, path in modules.items()}
    assert found == {
        "pkg": [],
        "pkg.a": [],
        "pkg.b": ["b.py:1 from pkg.a import _x", "b.py:3 pkg.a._x"],
        "pkg.c": ["c.py:4 pkg.a._x"],
    }
