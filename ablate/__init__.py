"""ablate: hyperparameter and ablation searches for prompt learning on frozen CLIP."""

__version__ = "0.2.0"
