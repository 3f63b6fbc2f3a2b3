"""A trial's newest state, ablate's own: <study>/state/<key>.pt (`cells.state_key`: the
configuration and its seeds), replaced whole after every epoch, with the metrics the trial
reported for each epoch so far.

Ray Tune's checkpoint of a trial holds only how many epochs Tune was told of (a few bytes), so
Tune keeps all of them: pruning old checkpoints (`num_to_keep`) made Tune snapshot the whole
experiment after every epoch of every trial, O(trials^2) over a study, and a kill -9 between a
prune and its snapshot left the snapshot naming a deleted checkpoint, which Tune cannot
restore. The state is written before Tune is told of the epoch. A trial restored from a snapshot
older than its state (the driver killed between two snapshots) tells Tune again of the epochs
the snapshot lacks, from the history, and trains on from where it stopped; so does the trial
that a restored searcher suggests again for a configuration its snapshot had not yet seen.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

from ablate import results
from ablate.search.outcome import error_line

FOLDER = "state"


@dataclass
class Saved:
    """What a trial resumes from: None and [] for a new trial (or an unreadable state)."""

    state: dict[str, Any] | None = None  # trial_body.run(resume=...)
    history: list[dict[str, float]] = field(default_factory=list)  # reported, epoch by epoch

    @property
    def epoch(self) -> int:
        return int(self.state["epoch"]) if self.state else 0


def save(study_dir: results.Location, key: str, saved: Saved) -> None:
    import torch

    buffer = io.BytesIO()
    torch.save({"state": saved.state, "history": saved.history}, buffer)
    results.write_bytes(results.join(study_dir, FOLDER), f"{key}.pt", buffer.getvalue())


def load(study_dir: results.Location, key: str, trial_name: str) -> Saved:
    """The trial's saved state; an unreadable one (truncated, torn) is set aside, not fatal:
    the trial then trains again from epoch 1 into its same MLflow runs and Parquet part."""
    import torch

    folder = results.join(study_dir, FOLDER)
    data = results.read_bytes(folder, f"{key}.pt")
    if data is None:
        return Saved()
    try:
        saved = torch.load(io.BytesIO(data), weights_only=False)
        return Saved(saved["state"], list(saved["history"]))
    except Exception as err:
        problem = error_line(f"{type(err).__name__}: {err}")
    where = results.set_aside(results.join(folder, f"{key}.pt"))
    print(
        f"ablate: {trial_name}: its saved state cannot be read ({problem}); set aside as "
        f"{where}. The trial trains again from epoch 1 (same MLflow runs, rows rewritten)."
    )
    return Saved()
