"""How much GPU memory one trial of a configuration needs: a short, real run to measure it.

Used by `resources.gpu: auto` to ask Ray for the fraction of a GPU a trial really uses, so that
as many trials share a GPU as fit in its memory. The probe trains one epoch with the trial's own
shots and evaluates the validation split, the same code paths and batch sizes as the
trial itself, and reports the allocator's peak (reserved, not just allocated: what the process
keeps from other processes).
"""

from __future__ import annotations

import dataclasses
import math

import torch

from trainers.configs import TrialConfig
from trainers.engine import resolve_device
from trainers.train import fit_seeds

CUDA_CONTEXT_BYTES = 600 * 2**20  # a process's CUDA context and kernels, outside the allocator
HEADROOM = 1.2  # fragmentation, batch-shape variation
STEP = 0.05  # GPU shares are rounded up to multiples of this


def peak_gpu_memory(cfg: TrialConfig, seeds: int = 1) -> tuple[int, int]:
    """(peak bytes of an epoch of `cfg` with `seeds` seeds, total bytes of the device) on
    `cfg`'s GPU. Fused seeds (`train.fuse_seeds`) hold all seeds' activations at once."""
    device = resolve_device(cfg.train.device)
    if device.type != "cuda":
        raise RuntimeError(f"measuring GPU memory needs a CUDA device, got {device}")
    # the trial's own shots and batch sizes (its train split sits on the GPU whole), one
    # epoch, the default optimiser: a sampled learning rate must not make the probe diverge
    probe = dataclasses.replace(
        cfg,
        optim=type(cfg.optim)(),
        train=dataclasses.replace(cfg.train, epochs=1, test_at_end=False),
    )
    torch.cuda.reset_peak_memory_stats(device)
    for _ in fit_seeds(probe, range(1, seeds + 1)):
        pass
    peak = torch.cuda.max_memory_reserved(device)
    return peak, torch.cuda.get_device_properties(device).total_memory


def gpu_share(peak: int, total: int) -> float:
    """The fraction of a GPU a trial needs, rounded up to `STEP`, at least `STEP`, at most 1.

    The probe ran the trial's seeds as the trial will (fused or one after another), so `peak`
    already holds what the seeds need together; HEADROOM is for fragmentation and varying
    batch shapes.
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
