"""The loop contract: every trainer is a pdd.train.LoopTrainer built through its __init__ and
has what the loop reads; the loop's module special-cases no method; every training config is
a pdd.config.RunConfig whose to_dict/from_dict round-trip; the --set items' parsing."""
import argparse
import ast
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pdd import cli
from pdd import hr_aware as H
from pdd import train as T
from pdd.config import RunConfig, make_config, pretrain_config
from pdd.kdsr_train import KDSRTrainConfig, KDSRTrainer, make_kdsr_config

ROOT = Path(__file__).resolve().parents[1]
METHOD_MODULES = ("pdd.kdsr", "pdd.hr_aware", "pdd.kdsr_train")
# what LoopTrainer's docstring says a trainer has once built (g, d, vgg: None when absent)
CONTRACT = ("cfg", "progress", "world", "rank", "device", "out", "channels_last", "s", "ema", "sources",
            "g", "d", "vgg", "opt_g", "sched_g", "opt_d", "sched_d", "iteration", "resumed_from")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    os.environ["PDD_DATA_ROOT"] = str(root)
    return root


def _hr_nets(cfg):
    """Random frozen networks (no CLIP/LPIPS files needed): the loop does not depend on them."""
    from pdd.archs import VGG19Features

    with torch.random.fork_rng():
        torch.manual_seed(123)
        vgg = VGG19Features(sorted({cfg.vgg_layer, *cfg.hqi_vgg_layers}))
    return H.FrozenNets(H.VGGAlignedEncoder(vgg, cfg.vgg_layer), H.VGGCosineDistance(vgg, cfg.hqi_vgg_layers),
                        {"test": "random VGG19"}, ["test: random VGG19"])


def _pdd(tmp_path):
    return T.Trainer(make_config("tiny", "ema", out=str(tmp_path / "pdd"), iters=2), progress=False)


def _kdsr(tmp_path):
    return KDSRTrainer(make_kdsr_config("teacher", "tiny", out=str(tmp_path / "kdsr"), iters=2), progress=False)


def _hr_aware(tmp_path):
    cfg = H.make_hr_config("A", "tiny", out=str(tmp_path / "hr"), device="cpu", iters=2, batch=1)
    return H.HRAwareTrainer(cfg, progress=False, nets=_hr_nets(cfg))


@pytest.mark.parametrize("build", [_pdd, _kdsr, _hr_aware], ids=["pdd", "kdsr", "hr_aware"])
def test_every_trainer_is_built_through_the_loop_base(build, data_root, tmp_path, monkeypatch):
    calls = []
    base_init = T.LoopTrainer.__init__

    def recording_init(self, *args, **kw):
        calls.append(type(self))
        base_init(self, *args, **kw)

    monkeypatch.setattr(T.LoopTrainer, "__init__", recording_init)
    tr = build(tmp_path)
    assert isinstance(tr, T.LoopTrainer) and calls == [type(tr)]
    missing = [name for name in CONTRACT if not hasattr(tr, name)]
    assert not missing, f"{type(tr).__name__} lacks {missing}"
    assert (tr.d is not None) == tr.cfg.has_discriminator == (tr.opt_d is not None)
    assert tr.ema is not tr.s and not any(p.requires_grad for p in tr.ema.parameters())
    assert (tr.iteration, tr.resumed_from) == (0, None)
    # the module the config names trains it
    assert importlib.import_module(tr.cfg.trainer_module).TRAINER is type(tr)
    log = tr.step(1)
    assert log and all(isinstance(v, float) for v in log.values())


def test_the_loop_module_special_cases_no_method():
    """pdd.train imports none of the methods' modules at load time, and LoopTrainer's code names
    none of them (a frozen constant is a class's ``frozen = True``, honoured by pdd.train.trainable)."""
    tree = ast.parse((ROOT / "pdd" / "train.py").read_text())
    top = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            top.add(("." * node.level) + (node.module or ""))
        elif isinstance(node, ast.Import):
            top.update(a.name for a in node.names)
    assert not top & {*METHOD_MODULES, ".kdsr", ".hr_aware", ".kdsr_train"}, top
    loop = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "LoopTrainer")
    names = {n.id for n in ast.walk(loop) if isinstance(n, ast.Name)} | \
            {n.module for n in ast.walk(loop) if isinstance(n, ast.ImportFrom)}
    assert not names & {"MeanShift", "kdsr", "hr_aware", "kdsr_train", "KDSRTrainer", "HRAwareTrainer"}, names
    code = "import sys, pdd.train; print(sorted(m for m in sys.modules if m in %r))" % (METHOD_MODULES,)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert out.strip() == "[]"


def test_trainable_honours_the_frozen_marker():
    from pdd.kdsr import KDSRStudent, MeanShift

    net = T.trainable(KDSRStudent("tiny", 4).requires_grad_(False))
    assert net.training and MeanShift.frozen is True
    frozen = {name for name, p in net.named_parameters() if not p.requires_grad}
    # the KDSR trainer's former rule: the sub_mean / add_mean shifts, nothing else
    assert frozen and frozen == {name for name, _ in net.named_parameters()
                                 if ".sub_mean." in f".{name}" or ".add_mean." in f".{name}"}


def test_batch_seed_is_the_one_formula():
    assert T.batch_seed(3, 5) == 3 * 1_000_003 + 5
    assert T.batch_seed(0, 7_777_777 + 2) == 7_777_779  # the HR-aware controller's noise stream


# ------------------------------------------------------------------ configs
def _configs():
    tweaked = make_config("tiny", "static", overrides={"sup.band_weights": (1.0, 0.5, 0.25),
                                                       "pdd.intra_layers": {"conv3_4": 1.0}, "betas": (0.8, 0.9)})
    return [make_config("tiny", "ema"), make_config("paper", "naive"), tweaked,
            pretrain_config("scratch", "generalist", "Synth-ISO", 1, "runs/x"),
            make_kdsr_config("teacher", "tiny"), make_kdsr_config("gan", "tiny", teacher="t", init="i"),
            H.make_hr_config("A", "tiny"), H.make_hr_config("B", "cpu", rec_net="runs/a", transductive=True)]


@pytest.mark.parametrize("cfg", _configs(), ids=lambda c: f"{type(c).__name__}-{c.preset}-{c.mode}")
def test_configs_round_trip_through_json(cfg):
    assert isinstance(cfg, RunConfig)
    back = type(cfg).from_dict(json.loads(cfg.to_json()))
    assert back == cfg and back.to_json() == cfg.to_json()
    assert isinstance(back.betas, tuple)
    assert type(cfg).from_dict(cfg.to_dict()) == cfg
    assert type(cfg.timing_copy("tmp", {})) is type(cfg)


def test_hr_aware_config_json_keeps_its_recorded_keys():
    d = H.make_hr_config("A", "tiny").to_dict()
    assert list(d)[-2:] == ["channels_last", "mode"] and d["channels_last"] is False and d["mode"] == "hr_pretrain"
    assert H.HRAwareConfig.from_dict(d).mode == "hr_pretrain"


def test_from_dict_refuses_an_unknown_key():
    with pytest.raises(TypeError):
        KDSRTrainConfig.from_dict({**make_kdsr_config("teacher", "tiny").to_dict(), "no_such_field": 1})


def test_pdd_phases_and_a_timing_copy():
    cfg = make_config("tiny", "ema", init_s="runs/a/weights/net_g_000300.pth", s_arch="kdsr")
    assert cfg.phases() == [("tiny D-only warm-up", 4, 1), ("tiny PDD (static/EMA, naive)", 16, 6)]
    c = cfg.timing_copy("/tmp/t", {})
    assert (c.out, c.threads, c.init_s, c.s_arch) == ("/tmp/t", 1, None, "rrdbnet")
    assert cfg.init_s and cfg.out != "/tmp/t"  # the original is left as it was


def test_kdsr_and_hr_aware_timing_copies_use_the_stand_ins():
    k = make_kdsr_config("gan", "tiny", teacher="runs/kt", init="runs/ks")
    c = k.timing_copy("/tmp/t", {"runs/kt": "/tmp/S/kt"})
    assert (c.teacher, c.init, k.phases()) == ("/tmp/S/kt", "runs/ks", [("tiny KDSR gan", 20, 1)])
    b = H.make_hr_config("B", "tiny", rec_net="runs/ha", init_m="runs/g/weights/net_g_000300.pth")
    c = b.timing_copy("/tmp/t", {"runs/ha": "/tmp/S/ha", "runs/g": "/tmp/S/g"})
    assert (c.rec_net, c.init_m) == ("/tmp/S/ha", "/tmp/S/g/weights/net_g_000000.pth")
    assert not b.has_discriminator and k.has_discriminator


# ------------------------------------------------------------------ --set
def test_set_items_parses_in_order_and_refuses_a_bare_word(capsys):
    ap = argparse.ArgumentParser(prog="prog")
    assert cli.set_items(ap, ["iters=3", " pdd.lambda_inter = 0.5 ", "out=a=b"]) == \
        [("iters", "3"), ("pdd.lambda_inter", "0.5"), ("out", "a=b")]
    with pytest.raises(SystemExit) as e:
        cli.set_items(ap, ["iters=3", "oops"])
    assert e.value.code == 2
    assert "prog: error: --set expects KEY=VALUE, got 'oops'" in capsys.readouterr().err
