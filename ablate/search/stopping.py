"""SIGTERM handled as Ctrl-C: what Kubernetes, Slurm and `ray job stop` send stops a study at a
clean point (trials checkpointed, MLflow and Parquet flushed) and exits 143, never mid-step.

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


def take_sigterm() -> None:
    """Route SIGTERM through SIGINT from now on (main thread only, as signal handlers are)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _as_interrupt)


def _as_interrupt(signum: int, frame: FrameType | None) -> None:
    _TERMINATED.set()
    signal.raise_signal(signal.SIGINT)


def terminated() -> bool:
    return _TERMINATED.is_set()


def how() -> str:
    """How the study was stopped, for the resume hint."""
    return "stopped by SIGTERM" if terminated() else "interrupted"


@contextlib.contextmanager
def on_sigterm() -> Iterator[None]:
    """While the study runs: SIGTERM is taken once Ray is up (`take_sigterm`); afterwards the
    previous handler is back and the flag is cleared for the next study in this process."""
    previous = signal.getsignal(signal.SIGTERM)
    _TERMINATED.clear()
    try:
        yield
    finally:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, previous)
