"""The seams: each third-party dependency is imported by exactly one module, and the science
(`trainers`) never imports the program (`ablate`)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SEAMS = {
    "ray": {
        "ablate/search/tuning.py",
        "ablate/cluster.py",
        "ablate/cluster_nodes.py",
    },  # Tune; Jobs; nodes
    "mlflow": {"ablate/tracking.py"},
    "optuna": {"ablate/search/space.py"},
    "hydra": {"ablate/config.py"},
    "omegaconf": {"ablate/config.py"},
    "pyarrow": {"ablate/results.py"},
    "open_clip": {"trainers/backbone.py"},
}


def imports_of(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


SOURCES = sorted(p for pkg in ("ablate", "trainers") for p in (REPO / pkg).rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(REPO)))
def test_each_dependency_lives_behind_its_seam(path):
    name = str(path.relative_to(REPO))
    for module in imports_of(path) & set(SEAMS):
        assert name in SEAMS[module], f"{name} imports {module}; only {SEAMS[module]} may"
    if name.startswith("trainers/"):
        assert "ablate" not in imports_of(path)
