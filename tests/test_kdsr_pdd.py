"""PDD with KDSR as the generalist (issue 14): a KDSR student as the network EMA PDD adapts
(its fixed mean shifts never trained, its snapshots loading strictly as KDSR), a frozen KDSR
as static PDD's reference G, the comparison's KDSR rows (configs, names, dependencies), the
KDSR generalist's stages under the scratch preset, and the gain-difference statistic worked
out by hand."""
import json
import os

import numpy as np
import pandas as pd
import pytest
import torch

import pdd.kdsr as K
from pdd import experiments, kdsr_train, stats
from pdd.archs import RRDBNet
from pdd.config import make_config
from pdd.train import Trainer, load_run_model

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    os.environ["PDD_DATA_ROOT"] = str(root)  # built-in domains are written here on first use
    return root


@pytest.fixture(scope="module")
def kdsr_file(tmp_path_factory):
    """A tiny KDSR student in the BasicSR release layout (params_ema), random weights."""
    torch.manual_seed(3)
    f = tmp_path_factory.mktemp("kdsr") / "student.pth"
    torch.save({"params_ema": K.KDSRStudent("tiny").state_dict()}, f)
    return f


def test_arch_fields_are_checked():
    with pytest.raises(ValueError, match="unknown s_arch"):
        make_config("tiny", "ema", s_arch="swinir")
    with pytest.raises(ValueError, match="s_arch 'kdsr' needs init_s"):
        make_config("tiny", "ema", s_arch="kdsr")
    with pytest.raises(ValueError, match="g_arch 'kdsr' needs init_g"):
        make_config("tiny", "static", g_arch="kdsr")
    assert make_config("tiny", "ema").s_arch == "rrdbnet"  # the default: the paper's RRDBNet


def test_ema_pdd_adapts_a_kdsr_student_without_training_its_mean_shifts(data_root, kdsr_file, tmp_path):
    cfg = make_config("tiny", "ema", out=str(tmp_path / "ema"), iters=4, warmup_d_iters=1, distill_start_k=0,
                      s_arch="kdsr", init_s=str(kdsr_file))
    tr = Trainer(cfg, progress=False)
    assert isinstance(tr.s, K.KDSRStudent) and tr.g is tr.ema  # M_G = EMA(M_S), itself a KDSR
    shifts = {id(p) for m in tr.s.modules() if isinstance(m, K.MeanShift) for p in m.parameters()}
    optimised = {id(p) for grp in tr.opt_g.param_groups for p in grp["params"]}
    assert shifts and not shifts & optimised
    assert len(optimised) == sum(1 for p in tr.s.parameters()) - len(shifts)
    start = {k: v.clone() for k, v in tr.s.state_dict().items()}
    tr.fit()
    after = tr.s.state_dict()
    moved = [k for k in start if not torch.equal(start[k], after[k])]
    assert all(".sub_mean." not in k and ".add_mean." not in k for k in moved)
    assert any(k.startswith("E_st.") for k in moved) and any(k.startswith("G.") for k in moved)
    # a snapshot is a KDSR student in the official layout: it loads strictly, as KDSR
    snap = tmp_path / "ema" / "weights" / "net_g_000004.pth"
    net = load_run_model(cfg, snap)
    assert isinstance(net, K.KDSRStudent)
    assert all(torch.equal(v, tr.ema.state_dict()[k]) for k, v in net.state_dict().items())
    assert K.load_kdsr(snap).variant == "tiny"


def test_static_pdd_with_a_frozen_kdsr_reference(data_root, kdsr_file, tmp_path):
    cfg = make_config("tiny", "static", out=str(tmp_path / "static"), iters=3, warmup_d_iters=1,
                      g_arch="kdsr", init_g=str(kdsr_file))
    tr = Trainer(cfg, progress=False)
    assert isinstance(tr.s, RRDBNet) and isinstance(tr.g, K.KDSRStudent)
    assert not any(p.requires_grad for p in tr.g.parameters())
    g0 = {k: v.clone() for k, v in tr.g.state_dict().items()}
    s0 = {k: v.clone() for k, v in tr.s.state_dict().items()}
    tr.fit()
    assert all(torch.equal(v, tr.g.state_dict()[k]) for k, v in g0.items())  # the reference never moves
    assert any(not torch.equal(v, tr.s.state_dict()[k]) for k, v in s0.items())
    logged = pd.read_csv(tmp_path / "static" / "log.csv")
    assert {"r_intra", "r_inter"} <= set(logged.columns)  # distillation ran against the KDSR's outputs
    sources = json.loads((tmp_path / "static" / "config.json").read_text())["sources"]
    assert str(kdsr_file) in sources["G"]


def test_kdsr_rows_configs_names_and_dependencies(tmp_path):
    runs = tmp_path / "runs"
    # tiny: the companion-trained KDSR's student stage (20 iterations) is the rows' M_G
    fake = runs / "tiny" / "Synth-Defocus" / "kdsr-student_s1" / "weights" / "net_g_000020.pth"
    rows = {m: experiments.row_run(m, "tiny", "Synth-Defocus", 1, runs) for m in experiments.KDSR_ROWS}
    static, ema, control = (r.config for r in rows.values())
    specialist = runs / "tiny" / "Synth-Defocus" / "pretrained-specialist_s1" / "weights" / "net_g_000300.pth"
    assert (static.mode, static.g_arch, static.s_arch) == ("static", "kdsr", "rrdbnet")
    assert static.init_g == str(fake) and static.init_s == str(specialist)  # paper Fig. 3a
    assert (ema.mode, ema.s_arch, ema.init_s) == ("ema", "kdsr", str(fake))
    assert (control.mode, control.s_arch, control.init_s) == ("finetune", "kdsr", str(fake))
    for name, r in rows.items():
        assert r.row == name and r.dir.name == name.lower().replace(" ", "-").replace(",", "-") + "_s1"
        assert str(fake.parents[1]) in r.needs  # waits for the KDSR generalist's run
    assert not any(p.exists() for p in runs.parents[0].rglob("*") if p != runs.parents[0]) or not runs.exists()
    # the RRDBNet rows keep their names beside the KDSR ones
    assert experiments.row_run("static PDD", "tiny", "Synth-Defocus", 1, runs).dir.name == "static-pdd_s1"
    assert set(experiments.KDSR_ROWS) <= set(experiments.default_methods("scratch"))


def test_kdsr_generalist_stages_of_the_scratch_preset(tmp_path):
    stages = [r.config for r in experiments.kdsr_generalist_runs("scratch", "Synth-ISO", [0, 1], tmp_path)]
    assert [(c.stage, c.seed) for c in stages] == [("teacher", 0), ("student", 0), ("teacher", 1), ("student", 1)]
    t, s = stages[:2]
    # the scratch RRDBNet generalist's schedule (pdd.config.pretrain_config): batch 8, LR patch 32,
    # 1000 iterations, lr 5e-4 halved at 750; KDSR's own L1 (+ KD) loss on the second-order data
    for c in (t, s):
        assert (c.batch, c.patch, c.iters, c.lr, c.lr_milestones) == (8, 32, 1000, 5e-4, (750,))
        assert c.degradation == "second_order" and not c.usm_sharpen_source and c.variant == "tiny"
    assert s.teacher == t.out and experiments.kdsr_generalist_runs("scratch", "Synth-ISO", [0], tmp_path)[1].needs == {t.out}
    short = [r.config for r in experiments.kdsr_generalist_runs("scratch", "Synth-ISO", [0], tmp_path, pretrain_iters=12)]
    assert short[0].lr_milestones == (9,) and short[0].out.endswith("kdsr-teacher-12it_s0")
    # cpu: one companion KDSR (seed 0) for every seed, unless the released file is in the hub cache
    assert [r.seed for r in experiments.kdsr_generalist_runs("cpu", "Synth-Defocus", [0, 1], tmp_path)] == [0, 0]


def test_kdsr_train_cli_reads_a_config_file(tmp_path, capsys):
    hr = tmp_path / "hr"
    hr.mkdir()
    from skimage import data as skdata

    from pdd.data import write_png
    write_png(hr / "a.png", skdata.astronaut()[:96, :96])
    cfg = kdsr_train.make_kdsr_config("teacher", "tiny", out=str(tmp_path / "t"), hr_dir=str(hr), iters=2)
    (tmp_path / "c.json").write_text(cfg.to_json())
    assert kdsr_train.main(["--config", str(tmp_path / "c.json"), "--no-progress"]) == 0
    assert (tmp_path / "t" / "weights" / "net_g_000002.pth").exists()
    assert "NOT the released" in capsys.readouterr().out


def _frame(rows):
    return pd.DataFrame(rows, columns=["method", "seed", "iteration", "test set", "name", "psnr"])


def test_gain_difference_by_hand():
    # A's gain over its start per image: (21-20, 23-20, 26-24) = (1, 3, 2); B's over its own:
    # (11-10, 12-10, 14-14) = (1, 2, 0); the differences (0, 1, 2) average 1.0
    rows = []
    for name, a0, a, b0, b in (("x", 20, 21, 10, 11), ("y", 20, 23, 10, 12), ("z", 24, 26, 14, 14)):
        rows += [("A0", 0, 0, "target", name, a0), ("A", 0, 100, "target", name, a),
                 ("B0", 0, 0, "target", name, b0), ("B", 0, 100, "target", name, b)]
    r = stats.gain_difference(_frame(rows), ("A", "A0"), ("B", "B0"), n_boot=500)
    assert r["difference"] == pytest.approx(1.0)
    assert r["lo"] >= 0.0 - 1e-12 and r["hi"] <= 2.0 + 1e-12  # resampling 3 images of 0, 1, 2
    assert r["verdict"] == ("better" if r["lo"] > 0 else "no effect")  # higher PSNR is better
    with pytest.raises(ValueError, match="no \\(seed, checkpoint, image\\)"):
        stats.gain_difference(_frame(rows), ("A", "A0"), ("C", "B0"))


def test_kdsr_verdict_answers_the_question_from_the_numbers():
    rng = np.random.default_rng(0)
    rows = []
    for i in range(12):
        name, g = f"img{i}", 25 + rng.normal()
        for side in ("target", "source"):
            rows += [("generalist", 0, 0, side, name, g), ("KDSR generalist", 0, 0, side, name, g - 1),
                     ("EMA PDD", 0, 300, side, name, g + 0.1), ("EMA PDD, KDSR generalist", 0, 300, side, name, g - 0.2)]
    lines = experiments.kdsr_verdict(_frame(rows), n_boot=500)
    assert lines[0].startswith("KDSR generalist vs the generalist, PSNR: -1.00 dB")
    ema = next(ln for ln in lines if ln.startswith("EMA PDD, KDSR generalist"))
    # +0.8 over its own start against +0.1: the KDSR start gains 0.7 dB more, on every image
    assert "+0.80 dB" in ema and "+0.70 dB [+0.70, +0.70] (better)" in ema and "helps EMA PDD" in ema
    assert "no control run" in ema
    # a control that gains as much: the larger gain is supervised training, not distillation
    ctrl = [("finetune control, KDSR generalist", *r[1:5], r[5] + 0.1) for r in rows if r[0] == "EMA PDD, KDSR generalist"]
    ema = experiments.kdsr_verdict(_frame(rows + ctrl), n_boot=500)[-1]
    assert "-0.10 dB [-0.10, -0.10] (worse) vs its control" in ema and "not distillation" in ema
    ctrl = [(*r[:5], r[5] - 0.3) for r in ctrl]  # a control 0.2 dB below EMA PDD
    assert experiments.kdsr_verdict(_frame(rows + ctrl), n_boot=500)[-1].endswith("helps EMA PDD here.")
    assert experiments.kdsr_verdict(_frame([r for r in rows if "KDSR" not in r[0]])) == []


def test_resuming_a_checkpoint_of_another_configuration_is_a_named_error(data_root, kdsr_file, tmp_path):
    from pdd.train import CheckpointMismatchError

    out = tmp_path / "run"
    make = lambda arch, init: make_config("tiny", "ema", out=str(out), iters=2, warmup_d_iters=1,  # noqa: E731
                                          s_arch=arch, init_s=init)
    Trainer(make("rrdbnet", None), progress=False).fit()
    stamp = (out / "checkpoint.pt").stat().st_mtime_ns
    with pytest.raises(CheckpointMismatchError, match="another configuration"):
        Trainer(make("kdsr", str(kdsr_file)), progress=False)
    assert (out / "checkpoint.pt").stat().st_mtime_ns == stamp  # nothing written over


def test_kdsr_gains_are_taken_against_the_kdsr_generalist():
    rows = []
    for i in range(6):
        for side, shift in (("target", 0.5), ("source", 0.2)):
            rows += [("generalist", 0, 0, side, f"i{i}", 20.0 + i), ("KDSR generalist", 0, 0, side, f"i{i}", 21.0 + i),
                     ("EMA PDD, KDSR generalist", 0, 300, side, f"i{i}", 21.0 + i + shift)]
    g = experiments.kdsr_gains(_frame(rows), n_boot=200).set_index("method")
    # +0.5 on the target and +0.2 on the source over KDSR (not +1.5 / +1.2 over the RRDBNet generalist)
    r = g.loc["EMA PDD, KDSR generalist"]
    assert (r["target gain"], r["source gain"], r["adaptation gain"]) == pytest.approx((0.5, 0.2, 0.3))
    assert r["adaptation gain verdict"] == "better"
    assert experiments.kdsr_gains(_frame([x for x in rows if "KDSR" not in x[0]])).empty


def test_run_model_of_a_config_without_arch_fields_is_an_rrdbnet(tmp_path):
    from pdd import hr_aware

    cfg = hr_aware.make_hr_config("B", "tiny", {"init_m": "x", "rec_net": "x"})
    assert not hasattr(cfg, "s_arch")
    torch.manual_seed(0)
    net = RRDBNet(num_feat=cfg.num_feat, num_block=cfg.num_block, num_grow_ch=cfg.num_grow_ch, scale=cfg.scale)
    torch.save({"params_ema": net.state_dict()}, tmp_path / "net_g_000001.pth")
    loaded = load_run_model(cfg, tmp_path / "net_g_000001.pth")
    assert isinstance(loaded, RRDBNet)
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in net.state_dict().items())
