"""How much GPU memory one trial of a configuration needs: a short, real run to measure it.

Used by `resources.gpu: auto` to ask Ray for the fraction of a GPU a trial really uses, so that
as many trials share a GPU as fit in its memory. The probe trains one epoch on enough shots for
one full batch and evaluates the validation split, the same code paths and batch sizes as the
trial itself, and reports the allocator's peak (reserved, not just allocated: what the process
keeps from other processes).
"""

from __future__ import annotations

import dataclasses
import math

import torch

from trainers.configs import TrialConfig
from trainers.data import load_task
from trainers.loop import fit, resolve_device

CUDA_CONTEXT_BYTES = 600 * 2**20  # a process's CUDA context and kernels, outside the allocator
HEADROOM = 1.2  # fragmentation, other seeds' optimizers in lockstep, batch-shape variation
STEP = 0.05  # GPU shares are rounded up to multiples of this


def peak_gpu_memory(cfg: TrialConfig) -> tuple[int, int]:
    """(peak bytes of one seed's epoch of `cfg`, total bytes of the device) on `cfg`'s GPU."""
    device = resolve_device(cfg.train.device)
    if device.type != "cuda":
        raise RuntimeError(f"measuring GPU memory needs a CUDA device, got {device}")
    task = load_task(cfg.dataset)
    shots = min(cfg.dataset.shots, math.ceil(cfg.dataset.batch_size / len(task.base_classes)))
    probe = dataclasses.replace(
        cfg,
        dataset=dataclasses.replace(cfg.dataset, shots=max(shots, 1)),
        train=dataclasses.replace(cfg.train, epochs=1, test_at_end=False),
    )
    torch.cuda.reset_peak_memory_stats(device)
    for _ in fit(probe, task=task):
        pass
    peak = torch.cuda.max_memory_reserved(device)
    return peak, torch.cuda.get_device_properties(device).total_memory


def gpu_share(peak: int, total: int) -> float:
    """The fraction of a GPU a trial needs, rounded up to `STEP`, at least `STEP`, at most 1.

    A trial's seeds run in lockstep on one backbone and free their activations between steps,
    so one seed's peak plus HEADROOM (their prompts and optimizer states) covers the trial.
    """
    need = (peak * HEADROOM + CUDA_CONTEXT_BYTES) / total
    return min(1.0, max(STEP, math.ceil(need / STEP - 1e-9) * STEP))


def memory_key(cfg: TrialConfig) -> str:
    """What a configuration's memory depends on: all of it but the optimiser, seed and length."""
    same = dataclasses.replace(
        cfg,
        optim=type(cfg.optim)(),
        seed=0,
        train=dataclasses.replace(cfg.train, epochs=1),
    )
    return repr(same)
