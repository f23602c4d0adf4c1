"""The GAN gate (issue 25): D's separation over the last half of a run, a batch-means CI, a fixed
threshold; synthetic log.csv files with a known answer, and the perceptual sentences it withholds."""
import csv
import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from pdd.stats import GAN_GATE_MIN_SEPARATION, adaptation_gains, batch_means_ci, gan_gate


def write_log(path, separation, p_fake=0.4, d=True):
    """log.csv with iterations 10, 20, ...: p_real - p_fake = ``separation`` at each (no p_real
    column at all when ``d`` is False, as a run without a discriminator logs)."""
    path.mkdir(parents=True, exist_ok=True)
    with open(path / "log.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["iter", "total", "p_real", "p_fake"] if d else ["iter", "total"])
        for i, s in enumerate(separation):
            w.writerow([10 * (i + 1), 1.0, p_fake + s, p_fake] if d else [10 * (i + 1), 1.0])
    return path


def test_threshold_is_the_documented_one():
    assert GAN_GATE_MIN_SEPARATION == 0.05
    doc = gan_gate.__doc__
    assert "before any PDD number" in doc and "0.05" in doc and "2.776" in doc and "5 consecutive batches" in doc


def test_constant_separation_with_small_noise_passes(tmp_path):
    rng = np.random.default_rng(0)
    g = gan_gate(write_log(tmp_path / "r", 0.2 + rng.normal(0, 0.01, 40)))
    assert g["passed"] is True and g["n"] == 20 and g["from_iter"] == 205
    assert abs(g["mean"] - 0.2) < 0.01 and g["lo"] > 0.18 and g["hi"] < 0.22
    assert g["verdict"].startswith("GAN gate passed: p_real - p_fake +0.20")


def test_separation_alternating_around_zero_fails(tmp_path):
    g = gan_gate(write_log(tmp_path / "r", [0.1, -0.1] * 20))
    assert g["passed"] is False and g["mean"] == pytest.approx(0.0, abs=1e-12)
    assert g["std"] == pytest.approx(0.1026, abs=1e-3)  # the spread of the 20 points, reported beside the CI
    assert g["verdict"].startswith("GAN gate failed")


def test_mean_just_above_threshold_with_large_noise_fails(tmp_path):
    rng = np.random.default_rng(3)
    noise = rng.normal(0, 0.1, 40)
    g = gan_gate(write_log(tmp_path / "r", 0.06 + noise - noise[20:].mean()))  # last half's mean exactly 0.06
    assert g["mean"] == pytest.approx(0.06, abs=1e-12)
    assert g["lo"] < GAN_GATE_MIN_SEPARATION < g["hi"] and g["passed"] is False


def test_a_run_without_d_is_not_gated(tmp_path):
    g = gan_gate(write_log(tmp_path / "r", [0.0] * 10, d=False))
    assert g["passed"] is None and g["verdict"] == "no discriminator"


def test_too_few_points_fail_and_say_why(tmp_path):
    g = gan_gate(write_log(tmp_path / "r", [0.3] * 7))   # iterations 10..70: the last half is 40..70, 4 points
    assert g["passed"] is False and g["n"] == 4
    assert "not enough to judge" in g["verdict"] and "5 needed" in g["verdict"]


def test_batch_means_ci_by_hand(tmp_path):
    # the last half (iterations 100..190) holds these 10 points: batches of 2, means 0.2, 0.2, 0.2, 0.1, 0.3
    late = [0.1, 0.3, 0.2, 0.2, 0.4, 0.0, 0.1, 0.1, 0.3, 0.3]
    mean, lo, hi, means = batch_means_ci(late)
    np.testing.assert_allclose(means, [0.2, 0.2, 0.2, 0.1, 0.3])
    se = math.sqrt((0.1 ** 2 + 0.1 ** 2) / 4) / math.sqrt(5)   # sd of the batch means (ddof 1) / sqrt(5)
    assert mean == pytest.approx(0.2) and lo == pytest.approx(0.2 - 2.776 * se) and hi == pytest.approx(0.2 + 2.776 * se)
    g = gan_gate(write_log(tmp_path / "r", [0.0] * 9 + late))   # 19 rows: span 10..190, last half from 100
    assert g["n"] == 10 and g["from_iter"] == 100
    assert (g["mean"], g["lo"], g["hi"]) == pytest.approx((mean, lo, hi))
    assert g["passed"] is True   # 0.2 - 0.0878 = 0.112 > 0.05


# --------------------------------------------------------------------------- what the gate withholds
def frame(methods, n_images=20, seed=0):
    """Per-image PSNR and NIQE of the generalist and of methods {name: (psnr shift, niqe shift)}."""
    rng = np.random.default_rng(seed)
    rows = []
    for side in ("target", "source"):
        base_p, base_n = rng.normal(25, 2, n_images), rng.normal(6, 0.5, n_images)
        for i in range(n_images):
            rows.append(dict(method="generalist", seed=-1, iteration=0, name=f"im{i}", psnr=base_p[i], niqe=base_n[i],
                             **{"test set": side}))
            for m, (dp, dn) in methods.items():
                rows.append(dict(method=m, seed=0, iteration=300, name=f"im{i}", psnr=base_p[i] + dp,
                                 niqe=base_n[i] + dn, **{"test set": side}))
    return pd.DataFrame(rows)


def test_claim_verdict_withholds_niqe_when_a_gate_fails_and_keeps_psnr():
    from pdd.experiments import claim_verdict

    df = frame({"EMA PDD": (0.3, -0.2), "naive distillation": (0.1, 0.4), "finetune control": (0.2, 0.0)})
    ungated = claim_verdict(df, n_boot=200)
    niqe = [ln for ln in ungated if ln.startswith("naive distillation NIQE")]
    assert len(niqe) == 1 and "as the paper says" in niqe[0]
    # every gate passed: the same sentences as without gates
    assert claim_verdict(df, n_boot=200, gates={"EMA PDD": True, "naive distillation": True}) == ungated
    gated = claim_verdict(df, n_boot=200, gates={"EMA PDD": False, "naive distillation": True})
    assert not any(ln.startswith("naive distillation NIQE") for ln in gated)
    said = [ln for ln in gated if ln.startswith("naive distillation vs EMA PDD, NIQE")]
    assert len(said) == 1 and "withheld: the GAN gate failed for EMA PDD" in said[0]
    # the PSNR sentences stay, word for word
    assert [ln for ln in gated if "PSNR" in ln] == [ln for ln in ungated if "PSNR" in ln]


def test_hr_aware_vs_pdd_withholds_niqe_against_a_row_that_failed_its_gate():
    from pdd.experiments import hr_aware_vs_pdd

    df = frame({"HR-aware fine-tuning": (0.4, -0.3), "EMA PDD": (0.3, -0.2), "finetune control": (0.2, 0.0)})
    ungated = hr_aware_vs_pdd(df, n_boot=200)
    assert hr_aware_vs_pdd(df, n_boot=200, gates={"EMA PDD": True, "finetune control": True}) == ungated
    gated = hr_aware_vs_pdd(df, n_boot=200, gates={"EMA PDD": False, "finetune control": True})
    assert [ln for ln in gated if "PSNR" in ln] == [ln for ln in ungated if "PSNR" in ln]
    vs_ema = [ln for ln in gated if ln.startswith("HR-aware fine-tuning vs EMA PDD, NIQE")]
    assert len(vs_ema) == 1 and "withheld: the GAN gate failed for EMA PDD" in vs_ema[0]
    # the control passed and the generalist is never gated: those NIQE lines keep their numbers
    kept = [ln for ln in gated if "NIQE" in ln and "EMA PDD" not in ln]
    assert kept == [ln for ln in ungated if "NIQE" in ln and "EMA PDD" not in ln] and len(kept) == 2


def _run(tmp_path, row, seed, separation=None):
    """A stand-in for pdd.runs.Run: what the gates read (config.has_discriminator, dir, label, row)."""
    d = tmp_path / f"{row}_{seed}".replace(" ", "-")
    if separation is not None:
        write_log(d, separation)
    return SimpleNamespace(config=SimpleNamespace(has_discriminator=separation is not None), dir=d, row=row,
                           seed=seed, label=f"{row} s{seed}")


def test_conclusions_print_the_gate_and_gate_by_row(tmp_path):
    from pdd.experiments import evidence_conclusions
    from pdd.experiments.verdicts import conclusion_header, row_gates

    rows = [_run(tmp_path, "EMA PDD", 0, [0.2] * 20), _run(tmp_path, "EMA PDD", 1, [0.2] * 10 + [0.0] * 10),
            _run(tmp_path, "naive distillation", 0, [0.3] * 20), _run(tmp_path, "HR-aware fine-tuning", 0)]
    assert row_gates(rows) == {"EMA PDD": False, "naive distillation": True}   # one seed failed: the row fails
    header = conclusion_header(tmp_path, "D", "tiny", rows)
    gate = [ln for ln in header if ln.startswith("GAN gate")]
    assert len(gate) == 1 and "above 0.05" in gate[0] and "passed 2 of 3 runs with D" in gate[0]
    assert "EMA PDD s0 +0.200 [+0.200, +0.200] passed" in gate[0] and "EMA PDD s1 +0.000" in gate[0]
    assert "HR-aware" not in gate[0]

    df = frame({"EMA PDD": (0.3, -0.2), "naive distillation": (0.1, 0.4)})
    lines = evidence_conclusions(tmp_path, "D", "tiny", rows, df, adaptation_gains(df, n_boot=200), n_boot=200)
    assert "EMA PDD, niqe: withheld: the GAN gate failed for EMA PDD" in "\n".join(lines)
    assert any(ln.startswith("naive distillation, niqe: target") for ln in lines)
    assert any(ln.startswith("EMA PDD, psnr: target") for ln in lines)
