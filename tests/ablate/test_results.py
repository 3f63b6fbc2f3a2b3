"""The Parquet results table: atomic parts, compaction without duplicates, final statuses."""

from __future__ import annotations

from ablate import results


def rows(trial: str, epochs: int, seeds=(1, 2), **extra):
    return [
        {
            "study": "s",
            "trial_id": trial,
            "trial_name": f"t-{trial}",
            "trial_key": f"k-{trial}",
            "seed": s,
            "epoch": e,
            "wall_s": 0.1 * e,
            "status": "running",
            "val/hm": 50.0 + e,
            **extra,
        }
        for e in range(1, epochs + 1)
        for s in seeds
    ]


def test_parts_compact_into_one_table_without_duplicates(tmp_path):
    results.write_part(
        rows("a", 2, **{"optim.lr": 0.1, "method.schedule": "[1, 2]"}), tmp_path, "a"
    )
    results.write_part(rows("a", 3, **{"optim.lr": 0.1}), tmp_path, "a")  # rewritten each epoch
    results.write_part(rows("b", 1, **{"optim.lr": 0.2}), tmp_path, "b")
    path = results.compact(tmp_path, {"a": "completed", "b": "pruned"})
    table = results.read(path)
    assert table.num_rows == 3 * 2 + 1 * 2
    keys = list(zip(*(table.column(c).to_pylist() for c in ("trial_key", "seed", "epoch"))))
    assert len(keys) == len(set(keys))
    status = dict(zip(table.column("trial_id").to_pylist(), table.column("status").to_pylist()))
    assert status == {"a": "completed", "b": "pruned"}
    assert table.schema.field("val/hm").type == "double"
    assert table.schema.field("seed").type == "int64"
    # compacting again (e.g. after a resumed study) changes nothing
    assert results.read(results.compact(tmp_path)).num_rows == table.num_rows


def test_no_temporary_files_are_left_behind(tmp_path):
    results.write_part(rows("a", 1), tmp_path, "a")
    results.compact(tmp_path)
    leftovers = [p.name for p in tmp_path.rglob(".tmp-*")]
    assert leftovers == []


def test_list_parameters_are_stored_as_json_text():
    assert results.cell([1, 2]) == "[1, 2]"
    assert results.cell(0.5) == 0.5


def test_a_part_rewritten_while_compacting_is_kept_for_the_next_compaction(tmp_path, monkeypatch):
    """A trial still writing (e.g. a worker of a killed driver) rewrites its part after
    compaction read it: deleting that part would lose the epoch it just added."""
    results.write_part(rows("a", 2), tmp_path, "a")
    read_parts = results._tables

    def read_then_trial_writes(fs, path, parts):
        tables = read_parts(fs, path, parts)
        results.write_part(rows("a", 3), tmp_path, "a")  # epoch 3 lands after the read
        return tables

    monkeypatch.setattr(results, "_tables", read_then_trial_writes)
    assert results.read(results.compact(tmp_path)).num_rows == 2 * 2
    monkeypatch.setattr(results, "_tables", read_parts)
    assert results.read(results.compact(tmp_path)).num_rows == 3 * 2  # nothing lost


def test_finished_cells_follow_parts_rewritten_after_they_were_read(tmp_path):
    """A worker reads each part once for its keys and again only when it changes."""
    results.write_part(rows("a", 2, seeds=(1,))[:1], tmp_path, "ta")  # epoch 1 of 2
    results.write_part(rows("b", 2), tmp_path, "tb")
    assert results.finished_cells(tmp_path, "k-a", 2) == {}
    assert set(results.finished_cells(tmp_path, "k-b", 2)) == {1, 2}
    results.write_part(rows("a", 2, seeds=(1,)), tmp_path, "ta")  # the trial went on
    cells = results.finished_cells(tmp_path, "k-a", 2)
    assert list(cells) == [1] and [r["epoch"] for r in cells[1]] == [1, 2]
    results.compact(tmp_path)  # parts merged into results.parquet, then deleted
    assert set(results.finished_cells(tmp_path, "k-b", 2)) == {1, 2}
    assert results.finished_cells(tmp_path, "k-c", 2) == {}


def test_finished_cells_set_a_truncated_part_aside(tmp_path):
    part = results.write_part(rows("a", 2), tmp_path, "ta")
    assert set(results.finished_cells(tmp_path, "k-a", 2)) == {1, 2}  # keys cached
    data = part.read_bytes()
    part.write_bytes(data[: len(data) // 2])  # torn: a later rewrite that did not finish
    assert results.finished_cells(tmp_path, "k-a", 2) == {}  # not done: trained again
    assert part.with_name(part.name + ".corrupt").exists() and not part.exists()
