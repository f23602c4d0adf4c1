"""PDD companion: Pairwise Distance Distillation for unsupervised real-world SR (ECCV 2024).

Modules (README "How the code is laid out"): runs (where a run lives), archs (networks), losses,
stats (paired bootstrap, the gates), imageops, weights (pretrained weights, online and offline),
config, degradations, data, train, evaluate, experiments (rows, plans, pool, scoring, verdicts,
reports), analysis, viz, reproduce.
"""
__version__ = "0.1.0"

from pathlib import Path as _Path

ROOT = _Path(__file__).resolve().parents[1]  # the repository (results/, runs/, data/)
