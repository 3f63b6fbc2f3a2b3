"""The seams: each third-party dependency is imported by exactly one module, and the science
(`trainers`) never imports the program (`ablate`)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SEAMS = {
    "ray": {
        "ablate/search/tuning/ray_api.py",  # Tune and Ray core for trials: every API named
        "ablate/cluster/jobs.py",  # the Jobs API
        "ablate/cluster/nodes.py",  # Ray core: nodes
    },
    "mlflow": {"ablate/tracking/runs.py"},
    "optuna": {"ablate/search/space.py"},
    "hydra": {"ablate/config.py"},
    "omegaconf": {"ablate/config.py"},
    "pyarrow": {"ablate/results.py"},
    "open_clip": {"trainers/backbone.py"},
}
RAY_TUNE = "ablate/search/tuning/ray_api.py"  # ray.tune is imported here only


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


def imports_ray_tune(path: Path) -> bool:
    """Whether the file imports Ray Tune in any form (`import ray.tune`, `from ray import tune`,
    `from ray.tune.x import y`), lazily or not."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        if any(name == "ray.tune" or name.startswith("ray.tune.") for name in names):
            return True
    return False


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(REPO)))
def test_ray_tune_lives_in_the_tuning_package_only(path):
    name = str(path.relative_to(REPO))
    assert name.startswith(RAY_TUNE) or not imports_ray_tune(path), f"{name} imports ray.tune"


def test_each_way_of_importing_ray_tune_is_seen(tmp_path):
    """Negative control for the test above: Ray core alone is not Tune."""
    cases = {
        "import ray.tune\n": True,
        "from ray import tune\n": True,
        "def f():\n    from ray.tune.search import ConcurrencyLimiter\n": True,
        "import ray\nfrom ray.job_submission import JobSubmissionClient\n": False,
    }
    for number, (text, expected) in enumerate(cases.items()):
        path = tmp_path / f"m{number}.py"
        path.write_text(text)
        assert imports_ray_tune(path) is expected, text
