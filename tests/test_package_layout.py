"""Reading a study's state or writing its report stays clear of Ray Tune and torch (import
cycles and private names: tests/test_imports.py)."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


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
