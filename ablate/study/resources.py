"""What a trial asks Ray for: the file's CPU and GPU numbers, or with `resources.gpu: auto` a
GPU share measured per configuration by a short probe (trainers.probe)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ray
from ray import tune

from ablate import config, space
from ablate.spec import StudySpec
from ablate.study.callbacks import error_line

TRIAL_NUMBER = "trial"  # added to each sampled config: Optuna's trial number, 0, 1, 2, ...


def trial_resources(spec: StudySpec) -> dict[str, float] | Callable[[dict], Any]:
    """What one trial asks Ray for. With `resources.gpu: auto` the GPU share is measured per
    configuration by a short probe on a GPU (trainers.probe), so Ray packs as many trials on a
    GPU as fit in its memory; configurations that differ only in optimiser settings share one
    measurement."""
    if not spec.resources.gpu_auto:
        return {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu}
    from trainers import probe

    measure = ray.remote(num_cpus=0, num_gpus=probe.STEP)(_measured_share)
    shares: dict[str, float] = {}

    def resources(params: dict[str, Any]) -> tune.PlacementGroupFactory:
        values = space.decode({k: v for k, v in params.items() if k != TRIAL_NUMBER})
        cfg = config.compose(spec.trial_overrides(values))
        key = probe.memory_key(cfg)
        if key not in shares:
            shares[key] = _probe_or_whole(measure, cfg, len(spec.seeds), spec.resources.gpu)
        return tune.PlacementGroupFactory([{"CPU": spec.resources.cpu, "GPU": shares[key]}])

    return resources


def _probe_or_whole(
    measure: Any, cfg: Any, seeds: int, whole: float, timeout: float = 600
) -> float:
    """The probe's share; a probe that cannot run (the GPUs are full, it fails) must not block
    or crash the study: the trial then asks for the file's upper bound, one GPU."""
    ref = measure.remote(cfg, seeds)
    try:
        return ray.get(ref, timeout=timeout)
    except Exception as err:
        ray.cancel(ref, force=True)
        print(f"ablate: the GPU memory probe did not finish ({error_line(str(err))}); "
              f"the trial asks for {whole:g} GPU")  # fmt: skip
        return whole


def _measured_share(cfg: Any, seeds: int) -> float:
    from trainers import probe

    peak, total = probe.peak_gpu_memory(cfg, seeds)
    share = probe.gpu_share(peak, total)
    print(f"ablate: a trial of this configuration peaks at {peak / 2**30:.2f} GiB of "
          f"{total / 2**30:.0f} GiB; it asks for {share:g} GPU")  # fmt: skip
    return share
