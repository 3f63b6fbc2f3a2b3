"""The shape of the `ablate` package: no import cycles among its modules (lazy imports
included), and reading a study's state or writing its report stays clear of Ray Tune and torch."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "ablate"


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imported(tree: ast.AST, modules: set[str], package: str) -> set[str]:
    """The ablate modules an AST imports anywhere (module level or in a function), but not under
    `if TYPE_CHECKING:`, which never runs. `from ablate.pkg import x` imports `ablate.pkg.x` when
    that is a module, else a name of `ablate.pkg` itself (its `__init__`)."""
    found: set[str] = set()
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            named = {f"{base}.{alias.name}" for alias in node.names}
            found |= named & modules
            if named - modules:
                found.add(base)
    return {name for name in found if name in modules}


def _runtime_nodes(node: ast.AST) -> list[ast.AST]:
    """Every node below `node`, minus the bodies of `if TYPE_CHECKING:` blocks."""
    if isinstance(node, ast.If) and _is_type_checking(node):
        return [n for child in node.orelse for n in _runtime_nodes(child)]
    return [node] + [n for child in ast.iter_child_nodes(node) for n in _runtime_nodes(child)]


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        graph[name] = _imported(ast.parse(path.read_text()), set(modules), package) - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles_among_ablate_modules() -> None:
    graph = import_graph()
    assert cycles(graph) == [], "\n".join(" <-> ".join(c) for c in cycles(graph))


def test_the_cycle_finder_finds_a_lazy_cycle() -> None:
    """Negative control: two modules importing each other, one of them inside a function."""
    a = ast.parse("from ablate import b\n")
    b = ast.parse("def f():\n    from ablate.a import x\n")
    modules = {"ablate.a", "ablate.b"}
    graph = {
        "ablate.a": _imported(a, modules, "ablate"),
        "ablate.b": _imported(b, modules, "ablate"),
    }
    assert cycles(graph) == [["ablate.a", "ablate.b"]]
    typed = ast.parse("if TYPE_CHECKING:\n    from ablate.a import x\n")
    assert _imported(typed, modules, "ablate") == set()
    # a package's __init__ that imports a module which takes a name from the __init__ back
    init = ast.parse("from ablate.pkg import page\n")
    page = ast.parse("from ablate.pkg import Analysis\n")
    modules = {"ablate.pkg", "ablate.pkg.page"}
    graph = {
        "ablate.pkg": _imported(init, modules, "ablate.pkg"),
        "ablate.pkg.page": _imported(page, modules, "ablate.pkg"),
    }
    assert cycles(graph) == [["ablate.pkg", "ablate.pkg.page"]]


HEAVY = ("ray.tune", "torch")


def _loaded_after(code: str, tmp_path: Path) -> list[str]:
    script = textwrap.dedent(code) + textwrap.dedent(
        f"""
        import sys
        print(sorted(m for m in {HEAVY!r} if m in sys.modules))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return ast.literal_eval(done.stdout.strip().splitlines()[-1])


def test_reading_a_study_state_imports_neither_ray_tune_nor_torch(tmp_path: Path) -> None:
    code = f"""
    from ablate.search.resume import load_state
    assert load_state({str(tmp_path)!r}) is None
    """
    assert _loaded_after(code, tmp_path) == []


@pytest.mark.slow
def test_writing_a_report_imports_neither_ray_tune_nor_torch(tmp_path: Path) -> None:
    code = f"""
    from ablate import results
    from ablate.cli import main

    folder = {str(tmp_path / "abl")!r}
    for t, level in enumerate((60.0, 55.0)):
        rows = [
            {{"study": "abl", "trial_id": f"id{{t}}", "trial_name": f"t00{{t}}",
              "trial_key": f"k{{t}}", "seed": seed, "epoch": 1, "wall_s": 1.0,
              "status": "completed", "val/hm": level + seed, "test/hm": level + seed,
              "lr": 0.1 * (t + 1)}}
            for seed in (1, 2, 3)
        ]
        results.write_part(rows, folder, f"id{{t}}")
    results.compact(folder)
    assert main(["report", folder, "--no-mlflow", "--importance", "mdi"]) == 0
    """
    assert _loaded_after(code, tmp_path) == []


def test_the_import_check_sees_torch(tmp_path: Path) -> None:
    """Negative control: a module that does import torch is reported."""
    assert _loaded_after("import torch.nn\n", tmp_path) == ["torch"]
