"""The science: prompt-learning methods on a frozen open_clip CLIP, in plain PyTorch.

Importable without ray, mlflow, hydra, optuna or pyarrow (a test enforces it).
"""

from trainers import methods  # noqa: F401  (registers every method)
from trainers.configs import BackboneConfig, DataConfig, OptimConfig, TrainConfig, TrialConfig
from trainers.engine import EpochMetrics, TrainingDiverged, resolve_device, word_embedder
from trainers.registry import get_method, list_methods, method_for_config, register_method
from trainers.train import fit, fit_seeds

__all__ = [
    "BackboneConfig",
    "DataConfig",
    "EpochMetrics",
    "OptimConfig",
    "TrainConfig",
    "TrainingDiverged",
    "TrialConfig",
    "fit",
    "fit_seeds",
    "get_method",
    "list_methods",
    "method_for_config",
    "register_method",
    "resolve_device",
    "word_embedder",
]
