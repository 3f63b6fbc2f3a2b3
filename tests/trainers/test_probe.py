"""Memory-aware packing: the GPU share a configuration asks for, from a measured peak."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from trainers import TrainConfig, TrialConfig
from trainers.configs import DataConfig, OptimConfig
from trainers.methods.coop import CoOpConfig
from trainers.probe import STEP, gpu_share, memory_key, peak_gpu_memory

GIB = 2**30


def test_the_share_covers_the_peak_with_headroom_and_the_cuda_context():
    assert gpu_share(2 * GIB, 80 * GIB) == pytest.approx(0.05)  # (2.4 + 0.6) / 80 = 0.0375
    assert gpu_share(10 * GIB, 80 * GIB) == pytest.approx(0.2)  # (12 + 0.6) / 80 = 0.1575
    assert gpu_share(1, 80 * GIB) == pytest.approx(STEP)  # never below one step
    assert gpu_share(100 * GIB, 80 * GIB) == 1.0  # never above a whole GPU
    share = gpu_share(7 * GIB, 80 * GIB)
    assert share * 80 * GIB >= 7 * GIB * 1.2 and share == pytest.approx(round(share / STEP) * STEP)


def test_configurations_that_differ_only_in_optimiser_or_seed_share_a_measurement():
    cfg = TrialConfig(method=CoOpConfig(), dataset=DataConfig(batch_size=8))
    assert memory_key(cfg) == memory_key(
        dataclasses.replace(cfg, optim=OptimConfig(lr=0.5), seed=7, train=TrainConfig(epochs=50))
    )
    assert memory_key(cfg) != memory_key(
        dataclasses.replace(cfg, dataset=DataConfig(batch_size=64))
    )
    assert memory_key(cfg) != memory_key(dataclasses.replace(cfg, method=CoOpConfig(8)))


def test_measuring_needs_a_gpu():
    cfg = TrialConfig(method=CoOpConfig(), train=TrainConfig(device="cpu"))
    with pytest.raises(RuntimeError, match="needs a CUDA device"):
        peak_gpu_memory(cfg)


@pytest.mark.gpu
def test_the_probe_measures_a_real_peak_on_the_gpu():
    cfg = TrialConfig(
        method=CoOpConfig(),
        dataset=DataConfig(shots=2, batch_size=8),
        train=TrainConfig(device="cuda"),
    )
    peak, total = peak_gpu_memory(cfg)
    assert 0 < peak < total == torch.cuda.get_device_properties(0).total_memory
    assert 0 < gpu_share(peak, total) <= 1
