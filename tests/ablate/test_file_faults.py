"""File faults in the results table: a truncated part or table is set aside (never deleted) and
its cells count as not done; a full disk raises DiskFull naming the file and damages nothing."""

from __future__ import annotations

import errno
import logging
from pathlib import Path

import pytest

from ablate import results
from ablate.errors import DiskFull, is_disk_full
from tests.ablate.test_results import rows
from tests.conftest import tmpfs


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_a_truncated_part_is_set_aside_and_its_cells_are_not_done(tmp_path, caplog):
    results.write_part(rows("a", 2, seeds=(1,)), tmp_path, "a")
    results.write_part(rows("b", 2, seeds=(1,)), tmp_path, "b")
    broken = tmp_path / "parts/part-a.parquet"
    _truncate(broken)
    with caplog.at_level(logging.WARNING, logger="ablate"):
        left = results.rows(tmp_path)
    assert {r["trial_id"] for r in left} == {"b"}
    assert str(broken) in caplog.text and "trains them again" in caplog.text
    assert not broken.exists() and (tmp_path / "parts/part-a.parquet.corrupt").exists()
    assert results.finished_cells(tmp_path, "k-a", 2) == {}
    assert set(results.finished_cells(tmp_path, "k-b", 2)) == {1}


def test_a_truncated_table_is_set_aside_and_compaction_keeps_the_parts(tmp_path, caplog):
    results.write_part(rows("a", 2), tmp_path, "a")
    table = Path(results.compact(tmp_path, {"a": "completed"}))
    _truncate(table)
    results.write_part(rows("b", 1), tmp_path, "b")
    with caplog.at_level(logging.WARNING, logger="ablate"):
        results.compact(tmp_path, {"b": "completed"})
    assert f"{table} cannot be read" in caplog.text
    assert (tmp_path / "results.parquet.corrupt").exists()  # never deleted
    assert {r["trial_id"] for r in results.rows(tmp_path)} == {"b"}
    _truncate(table)  # a second fault is set aside beside the first
    assert results.rows(tmp_path) == []
    assert (tmp_path / "results.parquet.corrupt-2").exists()


def test_disk_full_is_recognised_however_it_is_worded():
    assert is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert is_disk_full(OSError("Error writing bytes to file. Detail: [errno 28] No space"))
    assert is_disk_full(RuntimeError("(sqlite3.OperationalError) database or disk is full"))
    assert not is_disk_full(OSError(errno.EACCES, "Permission denied"))


@pytest.fixture
def tiny_disk(tmp_path: Path):
    """A 256 KiB tmpfs: a real full disk (root only; skipped where mount is not permitted)."""
    with tmpfs(tmp_path / "disk", "256k") as folder:
        yield folder


def test_a_full_disk_raises_disk_full_and_leaves_the_last_part_whole(tiny_disk):
    results.write_part(rows("a", 1, seeds=(1,)), tiny_disk, "a")
    (tiny_disk / "ballast").write_bytes(b"\0" * (results.free_bytes(tiny_disk) or 0))
    big = rows("a", 400, seeds=(1, 2, 3), note="x" * 200)
    with pytest.raises(DiskFull, match=f"disk full: {tiny_disk}/parts/part-a.parquet"):
        results.write_part(big, tiny_disk, "a")
    assert [p.name for p in (tiny_disk / "parts").iterdir()] == ["part-a.parquet"]  # no tmp
    assert len(results.rows(tiny_disk)) == 1  # the part written before is intact


def test_a_trial_that_finds_the_disk_full_waits_for_space_instead_of_failing(tmp_path):
    from ablate.search.trial_body import when_space

    attempts = []

    def write() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise DiskFull(tmp_path / "parts/part-a.parquet")
        return "written"

    assert when_space(write, "t000", every=0.01) == "written"
    with pytest.raises(DiskFull):
        when_space(lambda: (_ for _ in ()).throw(DiskFull("x")), "t000", every=0.01, patience=0.02)
