"""The fair set-up (issue 25, items 1 and 2): the starting models' GAN stage, a D started from
another run's D, the set-up threaded through the catalogue, and the decision rules of
pdd.experiments.decisions applied to logs and scores with a known answer."""
import copy
import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from pdd import runs
from pdd.archs import UNetDiscriminatorSN
from pdd.config import SCRATCH_DISC_FEAT, make_config, pretrain_config
from pdd.experiments import catalogue as C
from pdd.experiments import decisions as D
from pdd.stats import gan_gate
from pdd.weights import WeightsError


# ------------------------------------------------------------------ the GAN stage's config

def test_the_gan_stage_trains_on_from_the_pixel_stage_with_wavelet_perceptual_and_gan():
    pixel = pretrain_config("scratch", "specialist", "Synth-ISO", 0, "/r/pretrained-specialist_s0")
    assert (pixel.sup.perceptual, pixel.gan, pixel.batch_l, pixel.iters) == (0.0, False, 8, 1000)
    init = "/r/pretrained-specialist_s0/weights/net_g_001000.pth"
    c = pretrain_config("scratch", "specialist", "Synth-ISO", 0, "/r/gan", stage="gan", init_s=init)
    assert c.mode == "supervised" and c.down == "bicubic" and c.init_s == init
    assert c.sup.gan == 0.1 and c.sup.perceptual == 1.0 and c.sup.perceptual_layers and c.sup.wavelet == 0.5
    assert c.has_discriminator and c.disc_feat == SCRATCH_DISC_FEAT == 32 and c.warmup_d_iters == 0
    assert (c.iters, c.batch_l, c.patch, c.lr) == (600, 2, 32, 1e-4)
    assert c.starts_from() == {Path("/r/pretrained-specialist_s0")}
    g = pretrain_config("scratch", "generalist", "Synth-ISO", 0, "/r/g", stage="gan", init_s=init)
    assert g.down == "second_order"
    with pytest.raises(ValueError, match="init_s"):
        pretrain_config("scratch", "generalist", "Synth-ISO", 0, "/r/g", stage="gan")
    with pytest.raises(ValueError, match="stage"):
        pretrain_config("scratch", "generalist", "Synth-ISO", 0, "/r/g", stage="vgg")


# ------------------------------------------------------------------ D from another run's D

def _tiny_gan_run(tmp_path, disc_feat=16):
    """A 2-iteration tiny supervised run with D (the tiny pretraining's full loss)."""
    from pdd.train import Trainer

    cfg = make_config("tiny", "supervised", out=str(tmp_path / f"d{disc_feat}"), iters=2, threads=1,
                      disc_feat=disc_feat, ckpt_every=1, log_every=1)
    Trainer(cfg, progress=False).fit()
    return cfg


def test_a_run_with_d_leaves_its_final_d_and_another_run_starts_its_d_from_it(tmp_path):
    from pdd.train import Trainer

    first = _tiny_gan_run(tmp_path)
    d_file = runs.d_snapshot_path(first.out, 2)
    assert d_file.exists() and not runs.d_snapshot_path(first.out, 1).exists()   # the final D only
    saved = torch.load(d_file, map_location="cpu", weights_only=True)["params"]
    ckpt = torch.load(Path(first.out) / "checkpoint.pt", map_location="cpu", weights_only=True)["d"]
    assert saved.keys() == ckpt.keys() and all(torch.equal(saved[k], ckpt[k]) for k in saved)
    # snapshots are still the generator's alone
    assert [p.name for p in runs.snapshots(first.out)] == ["net_g_000001.pth", "net_g_000002.pth"]

    cfg = make_config("tiny", "finetune", out=str(tmp_path / "ft"), iters=1, threads=1, disc_feat=16,
                      init_d=str(d_file))
    assert Path(first.out) in cfg.starts_from()
    t = Trainer(cfg, progress=False)
    got = t.d.state_dict()
    assert all(torch.equal(got[k], saved[k]) for k in saved)
    assert "deviation" in t.sources["D"] and str(d_file) in t.sources["D"]
    fresh = Trainer(make_config("tiny", "finetune", out=str(tmp_path / "ft2"), iters=1, threads=1), progress=False)
    assert fresh.sources["D"].startswith("random init")


def test_a_d_file_of_another_d_or_no_d_file_is_a_named_error(tmp_path):
    from pdd.train import Trainer

    other = UNetDiscriminatorSN(3, 8).state_dict()
    torch.save({"params": other}, tmp_path / "d8.pth")
    cfg = make_config("tiny", "finetune", out=str(tmp_path / "ft"), iters=1, threads=1, disc_feat=16,
                      init_d=str(tmp_path / "d8.pth"))
    with pytest.raises(WeightsError, match="does not match the model.*wrong shape"):
        Trainer(cfg, progress=False)
    torch.save({"weights": other}, tmp_path / "nod.pth")
    cfg.init_d = str(tmp_path / "nod.pth")
    with pytest.raises(WeightsError, match="not a discriminator file"):
        Trainer(cfg, progress=False)
    cfg.init_d, cfg.gan = str(tmp_path / "d8.pth"), False
    with pytest.raises(ValueError, match="trains no discriminator"):
        Trainer(cfg, progress=False)


# ------------------------------------------------------------------ the set-up in the catalogue

def test_the_fair_setup_names_its_own_runs_and_changes_only_what_it_says(tmp_path):
    fair = C.fair_setup("scratch")
    assert (fair.gan_stage, fair.disc_feat, fair.warmup_d_iters) == (True, 32, 300)
    for row in ("finetune control", "static PDD", "EMA PDD", "specialist finetune control"):
        plain = C.row_run(row, "scratch", "Synth-ISO", 0, tmp_path)
        run = C.row_run(row, "scratch", "Synth-ISO", 0, tmp_path, setup=fair)
        assert run.dir.name == plain.dir.name.replace("_s0", "-fair_s0")
        a, b = plain.config.to_dict(), run.config.to_dict()
        changed = {k for k in a if a[k] != b[k]}
        assert changed <= {"out", "init_s", "init_g", "disc_feat", "warmup_d_iters", "init_d"}
        assert (b["disc_feat"], b["warmup_d_iters"]) == (32, 300) and (a["disc_feat"], a["warmup_d_iters"]) == (64, 50)
        for key in ("init_s", "init_g"):   # the GAN-staged starting model in place of the pixel-stage one
            assert b[key] == a[key].replace("_s0/weights/net_g_001000", "-gan600it_s0/weights/net_g_000600")
    # D from the generalist's GAN-stage D, where the set-up says so
    d_start = D.candidate_setup("scratch", True)
    run = C.row_run("EMA PDD", "scratch", "Synth-ISO", 0, tmp_path, setup=d_start)
    assert run.config.init_d == str(tmp_path / "scratch" / "Synth-ISO" / "pretrained-generalist-gan600it_s0" /
                                    "weights" / "net_d_000600.pth")
    assert str(tmp_path / "scratch" / "Synth-ISO" / "pretrained-generalist-gan600it_s0") in run.needs
    assert "deviation: the official configs start it from random init" in d_start.describe()
    with pytest.raises(ValueError, match="not to"):
        C.row_run("HR-aware fine-tuning", "scratch", "Synth-ISO", 0, tmp_path, setup=fair)
    with pytest.raises(ValueError, match="released file"):
        C.generalist_d_file("cpu", "Synth-Defocus", tmp_path)
    # the default set-up's runs are the comparison's, untouched
    assert C.row_run("EMA PDD", "scratch", "Synth-ISO", 0, tmp_path, setup=C.DEFAULT_SETUP).dir.name == "ema-pdd_s0"


def test_the_decision_plan_answers_r3_first_and_touches_nothing(tmp_path):
    p = D.decision_plan("scratch", "Synth-ISO", (0, 1), tmp_path)
    names = [r.dir.name for r in p.waves[0]]
    assert names == ["pretrained-generalist_s0", "pretrained-specialist_s0", "pretrained-generalist-gan600it_s0",
                     "pretrained-specialist-gan600it_s0", "finetune-control-fair-d-random_s0",
                     "finetune-control-fair-d-generalist_s0", "pretrained-generalist_s1", "pretrained-specialist_s1",
                     "pretrained-generalist-gan600it_s1", "pretrained-specialist-gan600it_s1"]
    a, b = p["d random init s0"].config, p["d generalist's GAN-stage D s0"].config
    assert (a.iters, a.warmup_d_iters, a.disc_feat, a.init_d) == (600, 300, 32, None)
    assert b.init_d.endswith("pretrained-generalist-gan600it_s0/weights/net_d_000600.pth")
    assert [r.dir.name for r in D.stage_runs(p)] == [n for n in names if "-gan" in n]
    assert not any(tmp_path.iterdir())
    with pytest.raises(ValueError, match="not 'cpu'"):
        D.decision_plan("cpu")


# ------------------------------------------------------------------ the rules on known answers

def _write_log(run_dir: Path, separation, iters) -> None:
    """log.csv with D's probabilities: p_real = 0.5 + sep/2, p_fake = 0.5 - sep/2 at each iteration."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / "log.csv", "w", newline="") as f:
        w = csv.DictWriter(f, ["iter", "p_real", "p_fake"])
        w.writeheader()
        for it in iters:
            s = separation(it)
            w.writerow({"iter": it, "p_real": 0.5 + s / 2, "p_fake": 0.5 - s / 2})


def test_the_gan_gate_of_a_run_as_it_stood_at_an_earlier_iteration(tmp_path):
    rng = np.random.default_rng(0)
    _write_log(tmp_path, lambda it: (0.0 if it <= 300 else 0.3) + rng.normal(0, 0.01), range(10, 601, 10))
    early, full = gan_gate(tmp_path, upto=300), gan_gate(tmp_path)
    assert not early["passed"] and early["from_iter"] == 155 and early["n"] == 15 and abs(early["mean"]) < 0.02
    assert full["passed"] and full["from_iter"] == 305 and full["n"] == 30 and abs(full["mean"] - 0.3) < 0.02


def _premise_scores(gap_source: float, gap_target: float, lengths=(300, 600), seeds=(0, 1), n=10) -> pd.DataFrame:
    """The specialist ``gap`` dB above the generalist on every image (premise: + on the source, - on the target)."""
    rng = np.random.default_rng(1)
    rows = []
    for it in lengths:
        for s in seeds:
            for i in range(n):
                for side, gap in (("source", gap_source), ("target", gap_target)):
                    base = 25 + rng.normal()
                    rows += [dict(method="generalist", seed=s, iteration=it, name=f"img{i}", psnr=base,
                                  **{"test set": side}),
                             dict(method="specialist", seed=s, iteration=it, name=f"img{i}", psnr=base + gap,
                                  **{"test set": side})]
    return pd.DataFrame(rows)


def _logs(plan, stage_sep, control_sep):
    rng = np.random.default_rng(2)
    for r in D.stage_runs(plan):
        _write_log(r.dir, lambda it, r=r: stage_sep(r, it) + rng.normal(0, 0.005), range(10, 601, 10))
    for label, r in plan.named.items():
        _write_log(r.dir, lambda it, r=r: control_sep(r, it) + rng.normal(0, 0.005), range(10, 601, 10))


def test_r1_takes_the_longest_length_where_both_gates_pass_and_r3_the_official_d_where_it_works(tmp_path):
    plan = D.decision_plan("scratch", "Synth-ISO", (0, 1), tmp_path)
    _logs(plan, lambda r, it: 0.2, lambda r, it: 0.2)
    d = D.decide(plan, _premise_scores(+1.0, -1.0), n_boot=200)
    assert d["stage_length"] == 600 and [r["gan_gates_pass"] for r in d["stage"]] == [True, True]
    assert all(r["premise_with_margin"] for r in d["stage"])
    assert d["d_from_generalist"] is False and "random init passes" in d["d_sentence"]

    # the specialist's D collapses after 300: only 300 passes R1; D from random init fails in the
    # control and the generalist's D passes: R3 takes the generalist's D (a deviation)
    _logs(plan, lambda r, it: 0.0 if "specialist" in r.dir.name and it > 300 else 0.2,
          lambda r, it: 0.2 if r.config.init_d else 0.01)
    d = D.decide(plan, _premise_scores(+1.0, -1.0), n_boot=200)
    assert d["stage_length"] == 300 and "300 iterations" in d["stage_sentence"]
    assert d["d_from_generalist"] is True and "deviation" in d["d_sentence"]

    # the premise without its margin fails R1 at every length; no D start works
    _logs(plan, lambda r, it: 0.2, lambda r, it: 0.0)
    d = D.decide(plan, _premise_scores(+0.2, -0.2), n_boot=200)
    assert d["stage_length"] is None and "no candidate length" in d["stage_sentence"]
    assert d["d_from_generalist"] is False and "neither D start" in d["d_sentence"]

    paths = D.write_decisions(d, tmp_path / "results", {"preset": "scratch", "git_commit": "abc"})
    text = paths[1].read_text()
    assert "no candidate length" in text and "neither D start" in text and "git_commit: abc" in text
    assert json.loads(paths[0].read_text())["record"]["git_commit"] == "abc"


def test_the_decisions_command_trains_the_plan_scores_the_stages_decides_and_writes(tmp_path, monkeypatch, capsys):
    from pdd import evaluate
    from pdd.experiments import plans

    plan = D.decision_plan("tiny", "Synth-ISO", (0,), tmp_path / "runs", pretrain_iters=2)
    trained = []
    monkeypatch.setattr(plans, "train_plan", lambda p, **kw: trained.append([r.dir for r in p.runs]) or 0.0)
    monkeypatch.setattr(evaluate, "create_metrics", lambda **kw: {})
    monkeypatch.setattr(D, "score_stages", lambda p, *a, **k: _premise_scores(+1.0, -1.0, lengths=(2, 4), seeds=(0,)))
    rng = np.random.default_rng(3)
    for r in plan.runs:   # every run's log: D clearly above chance
        _write_log(r.dir, lambda it: 0.2 + rng.normal(0, 0.005), range(1, 41))
    assert D.main(["--preset", "tiny", "--seeds", "0", "--pretrain-iters", "2", "--runs-dir", str(tmp_path / "runs"),
                   "--results-dir", str(tmp_path / "results"), "--n-boot", "100", "--no-progress"]) == 0
    assert trained == [[r.dir for r in plan.runs]]
    out = capsys.readouterr().out
    # at tiny size a stage of 2 or 4 iterations has too few logged points for the GAN gate to judge
    assert "R1: no candidate length passes" in out and "random init passes" in out
    written = tmp_path / "results" / "fair_setup"
    assert sorted(p.name for p in written.iterdir()) == ["decisions.json", "decisions.md", "decisions.png"]
    assert "![D's separation" in (written / "decisions.md").read_text()
    record = json.loads((written / "decisions.json").read_text())["record"]
    assert record["preset"] == "tiny" and record["seeds"] == [0] and "git_commit" in record


def test_r4s_candidate_stage_has_its_own_weight_runs_and_names(tmp_path):
    from pdd.config import SCRATCH_GAN_STAGE_WEIGHT, pretrain_config

    plan = D.decision_plan("scratch", "Synth-ISO", (0, 1), tmp_path, gan_weight=0.01)
    stages = D.stage_runs(plan)
    assert sorted(r.dir.name for r in stages) == [f"pretrained-{role}-gan600it-w0.01_s{s}" for role in
                                                   ("generalist", "specialist") for s in (0, 1)]
    assert {r.config.sup.gan for r in stages} == {0.01} and SCRATCH_GAN_STAGE_WEIGHT == 0.1
    # the pixel stages are R1's own (shared), the R3 controls are B's and start D from B's generalist
    assert {r.dir.name for r in plan.runs if not r.config.init_s} >= {"pretrained-generalist_s0"}
    assert sorted(plan.named) == ["d generalist's GAN-stage D s0", "d random init s0"]
    from_g = plan.named["d generalist's GAN-stage D s0"]
    assert from_g.dir.name == "finetune-control-fair-w0.01-d-generalist_s0"
    assert from_g.config.init_d.endswith("pretrained-generalist-gan600it-w0.01_s0/weights/net_d_000600.pth")
    assert from_g.config.init_g.endswith("pretrained-generalist-gan600it-w0.01_s0/weights/net_g_000600.pth")
    # R1's stage keeps its names
    assert {r.dir.name for r in D.stage_runs(D.decision_plan("scratch", "Synth-ISO", (0,), tmp_path))} == {
        "pretrained-generalist-gan600it_s0", "pretrained-specialist-gan600it_s0"}
    with pytest.raises(ValueError, match="GAN weight of the GAN stage"):
        pretrain_config("scratch", "generalist", "Synth-ISO", 0, str(tmp_path), gan_weight=0.01)
    with pytest.raises(ValueError, match="positive"):
        pretrain_config("scratch", "generalist", "Synth-ISO", 0, str(tmp_path), stage="gan", init_s="x", gan_weight=0)


def test_r4_takes_b_where_it_passes_else_where_its_premise_keeps_the_margin_else_keeps_r1(tmp_path):
    plan = D.decision_plan("scratch", "Synth-ISO", (0, 1), tmp_path, gan_weight=0.01)
    _logs(plan, lambda r, it: 0.2, lambda r, it: 0.2)
    c = D.r4_choice(D.decide(plan, _premise_scores(+1.0, -1.0), n_boot=200), 600)
    assert c == {"taken": True, "length": 600, "sentence": c["sentence"]} and "passes both" in c["sentence"]
    # D at chance in every stage, the premise with margin: B at 600, the failed gates named
    _logs(plan, lambda r, it: 0.0, lambda r, it: 0.2)
    c = D.r4_choice(D.decide(plan, _premise_scores(+1.0, -1.0), n_boot=200), 600)
    assert c["taken"] and c["length"] == 600 and "generalist s0" in c["sentence"] and "GAN gate fails" in c["sentence"]
    # the premise without its margin: R1's stage stays, whatever D did
    _logs(plan, lambda r, it: 0.2, lambda r, it: 0.2)
    d = D.decide(plan, _premise_scores(+1.0, -0.3), n_boot=200)
    c = D.r4_choice(d, 600)
    assert not c["taken"] and c["length"] is None and "R1's stage (GAN weight 0.1, 600 iterations) stays" in c["sentence"]
    d["r4"] = c
    paths = D.write_decisions(d, tmp_path / "results", {"preset": "scratch"}, gan_weight=0.01)
    assert [p.name for p in paths] == ["decisions-w0.01.json", "decisions-w0.01.md"]
    text = paths[1].read_text()
    assert text.startswith("# The fair set-up's decisions, R4: candidate B, the GAN stage at GAN weight 0.01")
    assert "**R4: candidate B (GAN weight 0.01) passes neither" in text and "R1's own fallback does not apply" in text
    assert "## R3 on candidate B's starting models, for the record" in text and "Not applied: B was not taken" in text


# ------------------------------------------------------------------ how fair the committed verdict is

def test_the_lead_says_under_which_length_and_starting_models_the_verdict_holds_and_where_the_fair_test_is(tmp_path):
    from pdd.experiments.reports import fair_test_lines

    folder = tmp_path / "Synth-ISO" / "scratch"
    assert fair_test_lines(folder) == []   # no comparison committed: nothing to qualify
    folder.mkdir(parents=True)
    record = {"preset": "scratch", "iters": str({"finetune control": 300, "static PDD": 300, "EMA PDD": 300})}
    verdict = ["GAN term inert in 3 of 4 runs", "naive distillation NIQE on target: +0.20 (worse)"]
    (folder / "methods_seeds0-1.json").write_text(json.dumps({"record": record, "verdict": verdict}))
    lines = fair_test_lines(folder)
    assert lines[0].startswith("Under which conditions the verdict above holds: PDD runs of 300 iterations (the paper "
                               "trains EMA PDD for 100,000), 50 of them D-only (the official warm-up is 300), "
                               "starting models pretrained here with pixel losses alone")
    assert "NIQE sentences above were written before the GAN gate" in lines[1]
    assert "has not been run; `make length-study`" in lines[2] and len(lines) == 3
    # a comparison written with the gate needs no NIQE caveat; the decisions and the study's verdict are read
    verdict.insert(0, "GAN gate (fixed before ...): passed 1 of 4 runs")
    (folder / "methods_seeds0-1.json").write_text(json.dumps({"record": record, "verdict": verdict}))
    D.write_decisions({"stage": [], "stage_length": 600, "stage_sentence": "R1: 600.", "controls": [],
                       "d_from_generalist": False, "d_sentence": "R3: random init."}, folder, {"preset": "scratch"})
    (folder / "length_study.md").write_text("# x\n\ntable\n\n## Verdict (computed from the numbers)\n\n- At 600 "
                                            "iterations: A.\n- Trend: B.\n\n![fig](length_study.png)\n")
    lines = fair_test_lines(folder, link_base="results/")
    assert not any("NIQE" in line for line in lines)
    assert lines[1] == ("The fair set-up's decisions, made on the starting models and the fine-tune control alone "
                        "([Synth-ISO/scratch/fair_setup/decisions.md](results/Synth-ISO/scratch/fair_setup/"
                        "decisions.md)): R1: 600. R3: random init.")
    assert lines[2] == ("The length study under the fair set-up (notebook 11, [Synth-ISO/scratch/length_study.md]"
                        "(results/Synth-ISO/scratch/length_study.md)): At 600 iterations: A. Trend: B.")
    # the landing page links the study's verdict instead of repeating numbers it does not source
    assert fair_test_lines(folder, study_verdict=False)[2].endswith("its verdict per length, computed from the numbers, "
                                                                    "is there.")
    # R4's candidate follows the decisions, its sentence as written
    D.write_decisions({"stage": [], "stage_length": None, "stage_sentence": "R1: none.", "controls": [],
                       "d_from_generalist": False, "d_sentence": "R3: random init.",
                       "r4": {"taken": False, "length": None, "sentence": "R4: R1's stage stays."}},
                      folder, {"preset": "scratch"}, gan_weight=0.01)
    lines = fair_test_lines(folder)
    assert lines[2] == ("A second candidate for the GAN stage, its rule written before its runs ([Synth-ISO/scratch/"
                        "fair_setup/decisions-w0.01.md](Synth-ISO/scratch/fair_setup/decisions-w0.01.md)): R4: R1's "
                        "stage stays.")
    assert fair_test_lines(folder, study_verdict=False)[2].endswith("it was not taken, so R1's stage stays (why: its "
                                                                    "decisions)")
    # R5's candidate follows R4's
    D.write_decisions({"stage": [], "stage_length": None, "stage_sentence": "R1: none.", "controls": [],
                       "d_from_generalist": None, "d_sentence": "R3 was not run.",
                       "r5": {"taken": True, "length": 900, "sentence": "R5: C at 900."}},
                      folder, {"preset": "scratch"}, gan_iters=1200)
    lines = fair_test_lines(folder)
    assert lines[2].endswith("R4: R1's stage stays.") and lines[3] == (
        "A third candidate for the GAN stage, its rule written before its runs ([Synth-ISO/scratch/fair_setup/"
        "decisions-gan1200it.md](Synth-ISO/scratch/fair_setup/decisions-gan1200it.md)): R5: C at 900.")
    assert fair_test_lines(folder, study_verdict=False)[3].endswith("([R5's decisions](Synth-ISO/scratch/fair_setup/"
                                                                    "decisions-gan1200it.md)): it was taken: the fair "
                                                                    "set-up's GAN stage is the candidate")


def test_a_checkpoint_is_not_resumed_under_another_starting_model_or_seed(tmp_path):
    """Same networks, another start: the checkpoint would load, and continue another run."""
    from pdd.train import CheckpointMismatchError, Trainer

    cfg = _tiny_gan_run(tmp_path)
    cfg.iters = 4
    stamp = (Path(cfg.out) / "checkpoint.pt").stat().st_mtime_ns
    elsewhere = tmp_path / "other" / "weights" / "net_g.pth"   # a network of the same shape, another file
    elsewhere.parent.mkdir(parents=True)
    elsewhere.write_bytes(runs.snapshot_path(cfg.out, 2).read_bytes())
    for field, value in (("seed", cfg.seed + 1), ("init_s", str(elsewhere)),
                         ("warmup_d_iters", 7)):
        other = copy.deepcopy(cfg)
        setattr(other, field, value)
        with pytest.raises(CheckpointMismatchError, match=f"another configuration of this run: {field} was"):
            Trainer(other, progress=False)
    assert (Path(cfg.out) / "checkpoint.pt").stat().st_mtime_ns == stamp
    # a longer run, other threads and snapshot rhythm: the same run, resumed
    longer = copy.deepcopy(cfg)
    longer.threads, longer.ckpt_every = 2, 2
    assert Trainer(longer, progress=False).resumed_from == 2


# ------------------------------------------------------------------ R5: a longer GAN stage

def test_r5s_candidate_is_r1s_stage_trained_on_under_names_of_its_own(tmp_path):
    plan = D.decision_plan("scratch", "Synth-ISO", (0, 1), tmp_path, control_seeds=(), gan_iters=1200)
    stages = D.stage_runs(plan)
    assert sorted(r.dir.name for r in stages) == [f"pretrained-{role}-gan1200it_s{s}" for role in
                                                   ("generalist", "specialist") for s in (0, 1)]
    assert {(r.config.iters, r.config.sup.gan) for r in stages} == {(1200, 0.1)}
    assert plan.named == {}   # R5 trains R3's controls only if its candidate is taken
    # apart from its length, each run is R1's: the same pixel stage, losses, D and seed
    r1 = {r.dir.name: r for r in D.stage_runs(D.decision_plan("scratch", "Synth-ISO", (0, 1), tmp_path))}
    for r in stages:
        mine, theirs = r.config.to_dict(), r1[r.dir.name.replace("gan1200it", "gan600it")].config.to_dict()
        assert {k for k in mine if mine[k] != theirs[k]} == {"iters", "out"}
    assert D.stage_lengths("scratch", 1200) == (900, 1200) and D.stage_lengths("scratch") == (300, 600)
    with_controls = D.decision_plan("scratch", "Synth-ISO", (0,), tmp_path, gan_iters=1200)
    from_g = with_controls.named["d generalist's GAN-stage D s0"]
    assert from_g.dir.name == "finetune-control-fair-gan1200it-d-generalist_s0"
    assert from_g.config.init_d.endswith("pretrained-generalist-gan1200it_s0/weights/net_d_001200.pth")
    assert "1,200 iterations" in D.stage_setup("scratch", None, 1200).describe()
    with pytest.raises(ValueError, match="R5's 1200 iterations, not 900"):
        D.decision_plan("scratch", "Synth-ISO", (0,), tmp_path, gan_iters=900)


def test_r5s_runs_start_as_copies_of_r1s_finished_runs_and_nothing_else_is_touched(tmp_path):
    plan = D.decision_plan("tiny", "Synth-ISO", (0, 1), tmp_path, control_seeds=(), gan_iters=8)
    stages = {r.dir.name: r for r in D.stage_runs(plan)}
    for name in stages:   # R1's runs: seed 0 finished, seed 1 stopped half-way
        r1 = tmp_path / "tiny" / "Synth-ISO" / name.replace("gan8it", "gan4it")
        (r1 / "weights").mkdir(parents=True)
        (r1 / "checkpoint.pt").write_bytes(b"checkpoint " + name.encode())
        (r1 / "eval").mkdir()
        (r1 / "eval" / "scores.csv").write_text("not copied")
        last = 4 if name.endswith("_s0") else 2
        runs.snapshot_path(r1, last).write_bytes(b"g")
    made = D.continue_r1_stages(plan)
    assert sorted(p.name for p in made) == ["pretrained-generalist-gan8it_s0", "pretrained-specialist-gan8it_s0"]
    for p in made:
        assert (p / "checkpoint.pt").read_bytes() == b"checkpoint " + p.name.encode()
        assert runs.snapshot_path(p, 4).exists() and not (p / "eval").exists()
        assert not p.with_name(p.name + ".copying").exists()
    assert not any(stages[n].dir.exists() for n in stages if n.endswith("_s1"))
    # a run that has begun is its own: a second call copies nothing over it
    (made[0] / "checkpoint.pt").write_bytes(b"trained on")
    assert D.continue_r1_stages(plan) == [] and (made[0] / "checkpoint.pt").read_bytes() == b"trained on"
    # R1's own runs and R4's candidate are never continued from anything
    assert D.continue_r1_stages(D.decision_plan("tiny", "Synth-ISO", (0,), tmp_path, control_seeds=())) == []


def test_a_run_resumed_from_a_copy_of_its_shorter_self_is_the_run_trained_straight(tmp_path):
    """R5's premise of continuing R1's runs: weights, optimisers, D and RNG come back exactly."""
    import shutil

    from pdd.train import Trainer

    short = _tiny_gan_run(tmp_path)
    straight = copy.deepcopy(short)
    straight.out, straight.iters = str(tmp_path / "straight"), 4
    Trainer(straight, progress=False).fit()
    shutil.copytree(short.out, tmp_path / "continued")
    continued = copy.deepcopy(straight)
    continued.out = str(tmp_path / "continued")
    trainer = Trainer(continued, progress=False)
    assert trainer.resumed_from == 2
    trainer.fit()
    a = torch.load(Path(straight.out) / "checkpoint.pt", map_location="cpu", weights_only=True)
    b = torch.load(Path(continued.out) / "checkpoint.pt", map_location="cpu", weights_only=True)
    for net in ("s", "ema", "d"):
        assert a[net].keys() == b[net].keys() and all(torch.equal(a[net][k], b[net][k]) for k in a[net]), net
    assert torch.equal(a["rng"], b["rng"])
    # its log goes on from the copy's: the training seconds add up across the parts, never restart
    sec = pd.read_csv(Path(continued.out) / "log.csv")["sec"]
    first = pd.read_csv(Path(short.out) / "log.csv")["sec"]
    assert list(sec[:2]) == list(first) and sec.is_monotonic_increasing and sec.iloc[2] > first.iloc[-1]


def _long_logs(plan, stage_sep):
    rng = np.random.default_rng(3)
    for r in D.stage_runs(plan):
        _write_log(r.dir, lambda it, r=r: stage_sep(r, it) + rng.normal(0, 0.005), range(10, 1201, 10))


def test_r5_takes_c_where_it_passes_else_where_its_premise_keeps_the_margin_else_keeps_r1(tmp_path):
    plan = D.decision_plan("scratch", "Synth-ISO", (0, 1), tmp_path, control_seeds=(), gan_iters=1200)
    both = _premise_scores(+1.0, -1.0, lengths=(900, 1200))
    _long_logs(plan, lambda r, it: 0.2)
    d = D.decide(plan, both, n_boot=200)
    assert d["d_from_generalist"] is None and "R3 was not run" in d["d_sentence"]
    c = D.r5_choice(d)
    assert c["taken"] and c["length"] == 1200 and "passes both" in c["sentence"]
    # D separates only after 900 in the generalist s1 stage: C is taken at 1200 still
    _long_logs(plan, lambda r, it: 0.2 if "generalist" not in r.dir.name or r.seed == 0 or it > 700 else 0.0)
    assert D.r5_choice(D.decide(plan, both, n_boot=200))["length"] == 1200
    # D at chance throughout; the margin at 900 only: C at 900, the failed gates named
    _long_logs(plan, lambda r, it: 0.0)
    mixed = pd.concat([_premise_scores(+1.0, -1.0, lengths=(900,)), _premise_scores(+1.0, -0.3, lengths=(1200,))])
    c = D.r5_choice(D.decide(plan, mixed, n_boot=200))
    assert c["taken"] and c["length"] == 900 and "GAN gate fails (generalist s0" in c["sentence"]
    # no margin at either length: R1's stage stays, whatever D did
    _long_logs(plan, lambda r, it: 0.2)
    d = D.decide(plan, _premise_scores(+1.0, -0.3, lengths=(900, 1200)), n_boot=200)
    d["r5"] = c = D.r5_choice(d)
    assert not c["taken"] and "R1's stage (GAN weight 0.1, 600 iterations) stays" in c["sentence"]
    assert "keeps the premise with its margin at none of its lengths" in c["sentence"]
    paths = D.write_decisions(d, tmp_path / "results", {"preset": "scratch"}, gan_iters=1200)
    assert [p.name for p in paths] == ["decisions-gan1200it.json", "decisions-gan1200it.md"]
    text = paths[1].read_text()
    assert text.startswith("# The fair set-up's decisions, R5: candidate C, R1's GAN stage trained on to 1,200")
    assert "(R1's own fallback does not apply to candidate C: R5 decides.)" in text
    assert ("R3 was not run on candidate C's starting models: R5 runs it only if C is taken, so the fair set-up keeps "
            "R3's decision on R1's stage (decisions.md).") in text


def test_the_lead_reads_an_interim_look_at_the_study_until_its_result_is_written(tmp_path):
    from pdd.experiments.reports import fair_test_lines

    folder = tmp_path / "Synth-ISO" / "scratch"
    folder.mkdir(parents=True)
    record = {"preset": "scratch", "iters": str({"static PDD": 300, "EMA PDD": 300})}
    (folder / "methods_seeds0-1.json").write_text(json.dumps({"record": record, "verdict": ["GAN gate (x): 1 of 4"]}))
    (folder / "length_study_interim.md").write_text("# x: an interim look\n\n**Interim** ...\n\n## Verdict (computed "
                                                    "from the numbers)\n\n- At 600 iterations: A.\n- GAN gate: B.\n")
    lines = fair_test_lines(folder)
    assert lines[-1] == ("The length study under the fair set-up is still training; an interim look at the lengths "
                         "every row has reached ([Synth-ISO/scratch/length_study_interim.md](Synth-ISO/scratch/"
                         "length_study_interim.md); notebook 11 gives the study's result when the runs finish): At 600 "
                         "iterations: A. GAN gate: B.")
    assert fair_test_lines(folder, study_verdict=False)[-1].endswith("its interim verdict, computed from the numbers, "
                                                                     "is there.")
    (folder / "length_study.md").write_text("# x\n\n## Verdict (computed from the numbers)\n\n- At 3300: C.\n")
    assert fair_test_lines(folder)[-1].endswith("(notebook 11, [Synth-ISO/scratch/length_study.md](Synth-ISO/scratch/"
                                                "length_study.md)): At 3300: C.")


def test_the_whole_run_gan_gate_line_judges_a_log_up_to_a_given_iteration(tmp_path):
    """An interim look scores the checkpoint every row has reached; its gate must not read past it."""
    from pdd.experiments.verdicts import gan_gate_line

    rows = list(D.decision_plan("scratch", "Synth-ISO", (0,), tmp_path).named.values())[:1]
    _write_log(rows[0].dir, lambda it: 0.0 if it <= 600 else 0.4, range(10, 1201, 10))   # D at chance up to 600
    assert "passed 1 of 1 runs with D" in gan_gate_line(rows)
    assert "lies above 0.05 up to iteration 600): passed 0 of 1 runs with D" in gan_gate_line(rows, upto=600)
