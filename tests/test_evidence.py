"""Adaptation gain and bootstrap CIs on synthetic per-image numbers with a known answer."""
import numpy as np
import pandas as pd

from pdd.evaluate import adaptation_gains, bootstrap_ci


def frame(target_shift, source_shift, n_images=40, seeds=(0, 1), noise=0.05, seed=0):
    """Generalist scores per image, and a method shifted by known amounts (+ small noise)."""
    rng = np.random.default_rng(seed)
    base = {s: rng.normal(25, 2, n_images) for s in ("target", "source")}
    rows = []
    for side in ("target", "source"):
        for i in range(n_images):
            rows.append(dict(method="generalist", seed=-1, iteration=0, **{"test set": side}, name=f"im{i}",
                             psnr=base[side][i]))
    for s in seeds:
        for it in (250, 300):
            for side, shift in (("target", target_shift), ("source", source_shift)):
                for i in range(n_images):
                    rows.append(dict(method="m", seed=s, iteration=it, **{"test set": side}, name=f"im{i}",
                                     psnr=base[side][i] + shift + rng.normal(0, noise)))
    return pd.DataFrame(rows)


def test_bootstrap_ci_of_constant_shift_is_tight_and_of_zero_mean_noise_contains_zero():
    mean, lo, hi = bootstrap_ci(np.full(50, 0.5) + np.random.default_rng(0).normal(0, 0.01, 50))
    assert abs(mean - 0.5) < 0.01 and lo > 0.49 and hi < 0.51
    mean, lo, hi = bootstrap_ci(np.random.default_rng(1).normal(0, 1, 200))
    assert lo < 0 < hi


def test_equal_target_and_source_gain_is_no_adaptation():
    g = adaptation_gains(frame(0.5, 0.5), metrics=("psnr",)).iloc[0]
    assert abs(g["target gain"] - 0.5) < 0.02 and g["target gain verdict"] == "better"
    assert abs(g["source gain"] - 0.5) < 0.02
    assert abs(g["adaptation gain"]) < 0.02
    assert g["adaptation gain lo"] <= 0 <= g["adaptation gain hi"]
    assert g["adaptation gain verdict"] == "no effect"


def test_target_only_gain_is_adaptation_with_ci_excluding_zero():
    g = adaptation_gains(frame(0.5, 0.0), metrics=("psnr",)).iloc[0]
    assert abs(g["adaptation gain"] - 0.5) < 0.02
    assert g["adaptation gain lo"] > 0 and g["adaptation gain verdict"] == "better"
    assert g["source gain verdict"] == "no effect"
    assert g["n"] == 2 * 2 * 40  # seeds x checkpoints x images, paired


def test_cluster_bootstrap_is_wider_than_naive_when_values_repeat_per_image():
    rng = np.random.default_rng(0)
    per_image = rng.normal(0, 1, 20)
    d = np.repeat(per_image, 10)              # 10 identical values per image
    groups = np.repeat(np.arange(20), 10)
    _, lo_n, hi_n = bootstrap_ci(d)
    _, lo_c, hi_c = bootstrap_ci(d, groups=groups)
    assert (hi_c - lo_c) > 2 * (hi_n - lo_n)  # the naive CI pretends 200 independent values


def test_verdict_follows_metric_direction():
    f = frame(0.5, 0.0).rename(columns={"psnr": "niqe"})
    g = adaptation_gains(f, metrics=("niqe",)).iloc[0]
    assert g["adaptation gain verdict"] == "worse"   # NIQE went up on the target only
