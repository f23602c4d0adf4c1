"""PDD companion: Pairwise Distance Distillation for unsupervised real-world SR (ECCV 2024).

Modules: archs (networks), weights (pretrained weights, online and offline), losses,
degradations, data, train, evaluate, analysis, viz, config.
"""
__version__ = "0.1.0"

from pathlib import Path as _Path

ROOT = _Path(__file__).resolve().parents[1]  # the repository (results/, runs/, data/)
