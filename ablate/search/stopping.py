"""SIGTERM handled as Ctrl-C: what Kubernetes, Slurm and `ray job stop` send stops a study at a
clean point (trials checkpointed, MLflow and Parquet flushed) and exits 143, never mid-step.
The study stops itself the same way for a reason of its own (`stop`: a full disk), exit 1.

The handler re-raises the signal as SIGINT: inside Tuner.fit Ray Tune's own SIGINT handler stops
the trials and saves the experiment; elsewhere Python raises KeyboardInterrupt, which the driver
already turns into an interrupted, resumable study.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

EXIT_CODE = 128 + signal.SIGTERM  # 143: what shells and schedulers expect after SIGTERM
_TERMINATED = threading.Event()
_REASONS: list[str] = []  # why the study stopped itself (`stop`), for the resume hint


def take_sigterm() -> None:
    """Route SIGTERM through SIGINT from now on (main thread only, as signal handlers are)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _as_interrupt)


def _as_interrupt(signum: int, frame: FrameType | None) -> None:
    _TERMINATED.set()
    signal.raise_signal(signal.SIGINT)


def stop(reason: str) -> None:
    """Stop the study as Ctrl-C does, saying `reason` (the driver's main thread, where Ray
    Tune's callbacks run); once: a second SIGINT would skip Tune's last checkpoint."""
    if not _REASONS:
        _REASONS.append(reason)
        signal.raise_signal(signal.SIGINT)


def terminated() -> bool:
    return _TERMINATED.is_set()


def reason() -> str | None:
    """Why the study stopped itself, or None."""
    return _REASONS[0] if _REASONS else None


def how() -> str:
    """How the study was stopped, for the resume hint."""
    if _REASONS:
        return f"stopped: {_REASONS[0]}"
    return "stopped by SIGTERM" if terminated() else "interrupted"


@contextlib.contextmanager
def on_sigterm() -> Iterator[None]:
    """While the study runs: SIGTERM is taken once Ray is up (`take_sigterm`); afterwards the
    previous handler is back and the flag is cleared for the next study in this process."""
    previous = signal.getsignal(signal.SIGTERM)
    _TERMINATED.clear()
    _REASONS.clear()
    try:
        yield
    finally:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, previous)
