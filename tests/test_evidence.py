"""Adaptation gain and bootstrap CIs on synthetic per-image numbers with a known answer."""
import numpy as np
import pandas as pd
import pytest

from pdd.stats import adaptation_gains, bootstrap_ci


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


# --------------------------------------------------------------------------- the premise gate
def starting_pair(gaps: dict, n_images=30, noise=0.05, seed=0):
    """Generalist and specialist per seed (one pair per seed, as under `scratch`); the specialist
    is the generalist of its seed shifted by gaps[seed] = (source shift, target shift)."""
    rng = np.random.default_rng(seed)
    rows = []
    for s, (src, tgt) in gaps.items():
        for side, shift in (("source", src), ("target", tgt)):
            base = rng.normal(24 + s, 2, n_images)   # each seed's generalist differs
            for i in range(n_images):
                rows.append(dict(method="generalist", seed=s, iteration=0, name=f"im{i}", psnr=base[i], **{"test set": side}))
                rows.append(dict(method="specialist", seed=s, iteration=0, name=f"im{i}",
                                 psnr=base[i] + shift + rng.normal(0, noise), **{"test set": side}))
    return pd.DataFrame(rows)


def test_premise_holds_with_margin_when_every_seed_does():
    from pdd.stats import premise_check
    c = premise_check(starting_pair({0: (1.5, -1.0), 1: (1.2, -0.8)}))
    assert c["holds"] and c["with_margin"]
    t = c["table"].set_index("seed")
    assert abs(t.loc[0, "source gap"] - 1.5) < 0.03 and abs(t.loc[1, "target gap"] + 0.8) < 0.03
    assert "HOLDS with margin" in c["sentence"]


def test_premise_fails_when_one_seed_fails_and_margin_is_separate():
    from pdd.stats import premise_check
    # seed 1's specialist also wins on the target: the premise fails for the domain
    c = premise_check(starting_pair({0: (1.5, -1.0), 1: (1.2, +0.3)}))
    assert not c["holds"] and not c["with_margin"]
    assert c["table"].set_index("seed").loc[0, "holds"] and not c["table"].set_index("seed").loc[1, "holds"]
    assert "does NOT hold" in c["sentence"]
    # holds, but a 0.2 dB target loss is inside the 0.5 dB margin
    c = premise_check(starting_pair({0: (1.5, -0.2)}))
    assert c["holds"] and not c["with_margin"]


def test_premise_gate_round_trip_and_banner(tmp_path):
    from pdd.evaluate import result_record
    from pdd.stats import premise_banner, premise_check, read_premise, write_premise
    assert "NOT CHECKED" in premise_banner(tmp_path)
    write_premise(premise_check(starting_pair({0: (1.0, 0.5)})), tmp_path, result_record(preset="x"))
    saved = read_premise(tmp_path)
    assert saved["holds"] is False and saved["record"]["preset"] == "x" and "git_commit" in saved["record"]
    assert premise_banner(tmp_path, "D", "p").startswith("PREMISE FAILS on D (p)")


def test_per_seed_baseline_pairs_each_run_with_its_own_seed():
    from pdd.stats import adaptation_gains
    f = starting_pair({0: (1.0, 2.0), 1: (1.0, 2.0)}, noise=0.0)
    g = adaptation_gains(f.rename(columns={}), baseline="generalist", metrics=("psnr",)).iloc[0]
    # paired with the wrong seed's generalist the gains would be off by the seeds' 1 dB offset
    assert abs(g["target gain"] - 2.0) < 1e-9 and abs(g["source gain"] - 1.0) < 1e-9


def test_paired_difference_averages_the_baselines_checkpoints():
    from pdd.stats import paired_difference
    f = frame(0.7, 0.0, noise=0.0)   # method m, 2 seeds x 2 checkpoints, against a seed -1 generalist
    ctrl = f[f.method == "m"].assign(method="control")
    ctrl.loc[ctrl.iteration == 250, "psnr"] -= 0.2   # the control's two checkpoints: -0.2 and 0
    r = paired_difference(pd.concat([f, ctrl]), "m", "control", "target")
    assert abs(r["difference"] - 0.1) < 1e-9 and r["verdict"] == "better"
    r = paired_difference(pd.concat([f, ctrl]), "m", "generalist", "source")
    assert abs(r["difference"]) < 1e-9 and r["verdict"] == "no effect"


# --------------------------------------------------------------------------- the discriminator's verdict
def write_log(path, p_real, p_fake):
    import csv
    path.mkdir(parents=True, exist_ok=True)
    with open(path / "log.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["iter", "p_real", "p_fake"])
        for i, (a, b) in enumerate(zip(p_real, p_fake)):
            w.writerow([10 * (i + 1), a, b])


def test_d_separation_at_chance_is_inert_even_when_single_values_stray(tmp_path):
    from pdd.stats import d_separation
    rng = np.random.default_rng(0)
    # the case: means 0.500 / 0.494, single values 0.41-0.54 -> D never separated them
    common = rng.uniform(-0.08, 0.04, 30)
    write_log(tmp_path / "chance", 0.5 + common + 0.003, 0.494 + common)
    r = d_separation(tmp_path / "chance")
    assert not r["separated"] and "GAN term inert" in r["verdict"]
    assert abs(r["mean"] - 0.009) < 1e-6 and r["n"] == 15   # the last half of the logged rows


def test_d_separation_detects_a_discriminator_that_separates(tmp_path):
    from pdd.stats import d_separation
    rng = np.random.default_rng(1)
    write_log(tmp_path / "sep", 0.7 + rng.normal(0, 0.02, 20), 0.3 + rng.normal(0, 0.02, 20))
    r = d_separation(tmp_path / "sep")
    assert r["separated"] and abs(r["mean"] - 0.4) < 0.03
    write_log(tmp_path / "nod", [float("nan")] * 3, [float("nan")] * 3)
    assert not d_separation(tmp_path / "nod")["separated"]


def test_hr_aware_row_verdict_follows_its_gain_over_the_generalist():
    """claim_verdict's HR-aware line: its paper claims a gain over the generalist; a constant
    +0.5 dB on every image is 'better' (holds), -0.3 dB is 'worse' (does NOT hold)."""
    from pdd.experiments import claim_verdict

    for shift, word in ((0.5, "holds here"), (-0.3, "does NOT hold here")):
        df = frame(shift, 0.0, noise=0.0).replace({"method": {"m": "HR-aware fine-tuning"}})
        line = [v for v in claim_verdict(df, n_boot=200) if v.startswith("HR-aware fine-tuning")]
        assert len(line) == 1 and line[0].endswith(f"(a gain over the generalist) {word}.")
        assert f"{shift:+.2f} dB [{shift:+.2f}, {shift:+.2f}] vs the generalist" in line[0]


def test_adaptation_gain_from_a_source_that_lost_more_is_not_called_adaptation(tmp_path):
    """target -1 dB, source -3 dB: adaptation gain +2 dB with a CI above 0, but the target got
    worse, so the method is named as degraded, not as adapting; target +1, source 0 adapts."""
    from pdd.experiments import evidence_conclusions

    for (t, s), adapts in (((-1.0, -3.0), False), ((1.0, 0.0), True)):
        df = frame(t, s, noise=0.0)
        gains = adaptation_gains(df, n_boot=200)
        lines = evidence_conclusions(tmp_path, "D", "tiny", (), df, gains, n_boot=200)
        said = [ln for ln in lines if ln.startswith("Methods with a PSNR adaptation gain")][0]
        assert said.endswith(": m.") == adapts and said.endswith(": none.") != adapts
        assert any(ln.startswith("Adaptation gain above 0 only because") and ln.endswith(": m.") for ln in lines) != adapts


# --------------------------------------------------------------------------- CIs by photo, not only by tile
def test_photo_of_strips_the_tile_suffix_only():
    from pdd.stats import photo_of
    assert photo_of("rocket_t0") == "rocket" and photo_of("motorcycle_left_t12") == "motorcycle_left"
    assert photo_of("big#2") == "big"                        # a DRealSR 512 crop of image "big"
    assert photo_of("im3") == "im3" and photo_of("a_tx") == "a_tx" and photo_of("t_0") == "t_0"


def photo_frame(n_photos=4, tiles=5, seed=0):
    """EMA PDD vs a shared generalist where every tile of a photo moves with its photo (one effect
    per photo, tiny per-tile noise): tiles of one photo are one piece of evidence, not five."""
    rng = np.random.default_rng(seed)
    effect = rng.normal(0.3, 1.0, n_photos)
    rows = []
    for side in ("target", "source"):
        for p in range(n_photos):
            for k in range(tiles):
                name, base = f"photo{p}_t{k}", rng.normal(25, 2)
                rows.append(dict(method="generalist", seed=-1, iteration=0, name=name, psnr=base, **{"test set": side}))
                rows.append(dict(method="EMA PDD", seed=0, iteration=300, name=name, psnr=base + effect[p]
                                 + rng.normal(0, 0.01), **{"test set": side}))
    return pd.DataFrame(rows)


def test_photo_clusters_resample_whole_photos():
    from pdd.stats import adaptation_gains, paired_difference

    df = photo_frame()
    by_tile = paired_difference(df, "EMA PDD", "generalist", "target", n_boot=2000)
    by_photo = paired_difference(df, "EMA PDD", "generalist", "target", n_boot=2000, cluster="photo")
    assert by_photo["difference"] == by_tile["difference"]
    assert by_photo["hi"] - by_photo["lo"] > by_tile["hi"] - by_tile["lo"]
    # by hand: the bootstrap over the 4 photos (sorted, as np.unique orders them) with the same seed
    g = df[(df.method == "EMA PDD") & (df["test set"] == "target")]
    base = df[(df.method == "generalist") & (df["test set"] == "target")].set_index("name")["psnr"]
    d = g["psnr"].to_numpy() - base.loc[g["name"]].to_numpy()
    photos = g["name"].str.replace(r"_t\d+$", "", regex=True).to_numpy()
    uniq = sorted(set(photos))
    sums = np.array([d[photos == p].sum() for p in uniq])
    counts = np.array([(photos == p).sum() for p in uniq], dtype=float)
    pick = np.random.default_rng(0).integers(0, len(uniq), size=(2000, len(uniq)))
    boots = sums[pick].sum(axis=1) / counts[pick].sum(axis=1)
    assert by_photo["lo"] == pytest.approx(np.quantile(boots, 0.025), abs=1e-12)
    assert by_photo["hi"] == pytest.approx(np.quantile(boots, 0.975), abs=1e-12)
    # the gains table clusters the same way (its target gain is the same paired difference)
    gains = adaptation_gains(df, metrics=("psnr",), cluster="photo").iloc[0]
    assert (gains["target gain lo"], gains["target gain hi"]) == pytest.approx((by_photo["lo"], by_photo["hi"]))
    assert adaptation_gains(df, metrics=("psnr",)).equals(adaptation_gains(df, metrics=("psnr",), cluster="image"))
    with pytest.raises(ValueError, match="cluster="):
        paired_difference(df, "EMA PDD", "generalist", cluster="scene")


def test_evidence_report_adds_photo_level_cis_when_there_are_photos():
    from pdd.experiments.reports import photo_level_section

    md = photo_level_section(photo_frame(), n_boot=200)
    assert md[0] == "## Photo-level CIs" and "the 4 photos the 20 target test tiles were cut from" in md[2]
    assert "| EMA PDD | generalist | target | psnr |" in md[4]
    one_photo = photo_frame(n_photos=1)
    assert photo_level_section(one_photo, n_boot=200) == [] and photo_level_section(None, n_boot=200) == []
