"""Trainer semantics: EMA update, D-only warm-up and distillation start, exact resume,
NaN stop, bf16 agreement, DDP replicas, and the command line."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pdd import losses as L
from pdd.config import make_config
from pdd.train import NonFiniteLossError, Trainer, ema_update

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    os.environ["PDD_DATA_ROOT"] = str(root)  # also for subprocesses
    return root


def tiny(mode, out, **kw):
    return make_config("tiny", mode, out=str(out), **kw)


def test_ema_update_params_only_with_decay():
    ema, model = torch.nn.BatchNorm1d(2), torch.nn.BatchNorm1d(2)
    with torch.no_grad():
        ema.weight.fill_(0.0)
        model.weight.fill_(1.0)
        model.running_mean.fill_(5.0)
    ema_update(ema, model, decay=0.9)
    # 0.9 * 0 + 0.1 * 1 = 0.1 for parameters; buffers are copied, not averaged
    torch.testing.assert_close(ema.weight, torch.full((2,), 0.1))
    torch.testing.assert_close(ema.running_mean, torch.full((2,), 5.0))


def test_warmup_trains_only_d_and_distillation_starts_after_k(data_root, tmp_path):
    cfg = tiny("ema", tmp_path, iters=8, warmup_d_iters=3, distill_start_k=2, log_every=1)
    tr = Trainer(cfg, progress=False)
    s0 = {k: v.clone() for k, v in tr.s.state_dict().items()}
    d0 = {k: v.clone() for k, v in tr.d.state_dict().items()}
    logs = [tr.step(t) for t in range(1, 4)]
    assert all(torch.equal(s0[k], v) for k, v in tr.s.state_dict().items()), "G stepped during warm-up"
    assert any(not torch.equal(d0[k], v) for k, v in tr.d.state_dict().items()), "D did not train"
    assert all("total" not in log for log in logs)
    log4, log5, log6 = tr.step(4), tr.step(5), tr.step(6)
    assert "total" in log4 and "r_intra" not in log4 and "r_inter" not in log5   # t <= 3 + 2
    assert "r_intra" in log6 and "r_inter" in log6                                # t = 6 > 5
    assert any(not torch.equal(s0[k], v) for k, v in tr.s.state_dict().items())


def test_static_mode_defaults_follow_official_config():
    cfg = make_config("paper", "static")
    assert cfg.distill_start_k == 0 and cfg.pdd.detach_s_l and cfg.iters == 50_000
    ema = make_config("paper", "ema")
    assert ema.distill_start_k == 5 and not ema.pdd.detach_s_l and ema.iters == 100_000
    assert ema.warmup_d_iters == 300 and ema.ema_decay == 0.999 and ema.betas == (0.9, 0.99)
    ft = make_config("paper", "finetune")
    assert ft.pdd.lambda_intra == ft.pdd.lambda_inter == ft.pdd.lambda_gan == 0.0
    with pytest.raises(ValueError, match="valid"):
        make_config("paper", "bogus")
    with pytest.raises(ValueError, match="unknown config field"):
        make_config("paper", "ema", overrides={"pdd.lambda_nope": 1})


def test_resume_gives_the_same_losses_and_weights(data_root, tmp_path):
    full = Trainer(tiny("static", tmp_path / "full", iters=8, ckpt_every=4, log_every=1), progress=False)
    full.fit()
    part = Trainer(tiny("static", tmp_path / "part", iters=8, ckpt_every=4, log_every=1), progress=False)
    part.fit(iters=4)                      # "interrupted" after the checkpoint at 4
    resumed = Trainer(tiny("static", tmp_path / "part", iters=8, ckpt_every=4, log_every=1), progress=False)
    assert resumed.resumed_from == 4
    resumed.fit()
    a = (tmp_path / "full" / "log.csv").read_text().splitlines()
    b = (tmp_path / "part" / "log.csv").read_text().splitlines()
    strip = lambda rows: [",".join(c for i, c in enumerate(r.split(",")) if i != 2) for r in rows]  # noqa: E731 drop wall time
    assert strip(a) == strip(b)
    for k, v in full.ema.state_dict().items():
        assert torch.equal(v, resumed.ema.state_dict()[k]), k


def test_non_finite_loss_stops_with_iteration_and_term(data_root, tmp_path, monkeypatch):
    cfg = tiny("ema", tmp_path, iters=10, warmup_d_iters=0, distill_start_k=0, ckpt_every=2)
    tr = Trainer(cfg, progress=False)
    real = L.r_inter
    calls = {"n": 0}

    def bad_r_inter(*a, **k):
        calls["n"] += 1
        out = real(*a, **k)
        return out * float("nan") if calls["n"] == 5 else out

    monkeypatch.setattr(L, "r_inter", bad_r_inter)
    with pytest.raises(NonFiniteLossError, match=r"iteration 5: loss term 'r_inter'"):
        tr.fit()
    ck = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert ck["iteration"] == 4  # the last good checkpoint survives


def test_bf16_loss_terms_agree_with_fp32():
    """bf16 autocast changes the terms by less than 5 % (R terms are computed in fp32)."""
    torch.manual_seed(0)
    from pdd.archs import RRDBNet, VGG19Features
    sup, pdd = L.SupervisedWeights(), L.PDDWeights()
    vgg = VGG19Features(L.vgg_layers_needed(sup, pdd))
    s, g = RRDBNet(num_feat=16, num_block=1, num_grow_ch=8), RRDBNet(num_feat=16, num_block=1, num_grow_ch=8)
    x_l, x_u, y_l = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16), torch.rand(2, 3, 64, 64)
    out = {}
    for bf16 in (False, True):
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out[bf16] = L.generator_objective(vgg, s(x_l), s(x_u), y_l, g(x_l), g(x_u), None, sup, pdd)
    for k in out[False]:
        assert out[True][k].float().item() == pytest.approx(out[False][k].item(), rel=0.05), k


def test_cli_runs_and_records_config(data_root, tmp_path):
    out = tmp_path / "cli"
    r = subprocess.run([sys.executable, "-m", "pdd.train", "--preset", "tiny", "--mode", "naive", "--iters", "6",
                        "--out", str(out), "--seed", "3", "--set", "naive_lambda=0.5", "--no-progress"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    meta = json.loads((out / "config.json").read_text())
    assert meta["config"]["naive_lambda"] == 0.5 and meta["config"]["seed"] == 3
    assert meta["sources"]["G"] and "VGG19" in meta["sources"]
    assert (out / "weights" / "net_g_000006.pth").exists()


DDP_SCRIPT = """
import torch, torch.distributed as dist
from pdd.config import make_config
from pdd.train import Trainer, _bare
import sys
tr = Trainer(make_config("tiny", "ema", out=sys.argv[1], iters=5, warmup_d_iters=1, distill_start_k=0), progress=False)
tr.fit()
flat = torch.cat([p.detach().flatten() for p in _bare(tr.s).parameters()])
gathered = [torch.zeros_like(flat) for _ in range(dist.get_world_size())]
dist.all_gather(gathered, flat)
if dist.get_rank() == 0:
    assert torch.equal(gathered[0], gathered[1]), "replicas differ"
    moved = (flat - torch.cat([p.flatten() for p in tr.ema.parameters()])).abs().max().item()
    print("REPLICAS_EQUAL", moved, flush=True)
# as the CLI does: wait for every rank before tearing the group down (a rank that leaves
# while the other still works makes gloo abort at exit), and drop the DDP wrapper first
dist.barrier()
del tr
dist.destroy_process_group()
"""


def test_ddp_two_cpu_processes_keep_identical_replicas(data_root, tmp_path):
    script = tmp_path / "ddp_check.py"
    script.write_text(DDP_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29517",
                        str(script), str(tmp_path / "ddp")], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert "REPLICAS_EQUAL" in r.stdout


def test_pretrain_configs_of_the_scratch_preset():
    from pdd.config import SCRATCH_ARCH, pretrain_config
    g = pretrain_config("scratch", "generalist", "Synth-ISO", 1, "runs/x")
    s = pretrain_config("scratch", "specialist", "Synth-ISO", 1, "runs/y", iters=40)
    assert (g.down, s.down) == ("second_order", "bicubic")
    assert (g.num_feat, g.num_block, g.num_grow_ch) == SCRATCH_ARCH and g.init_s is None
    assert g.sup.perceptual_layers == {} and not g.gan and g.batch_l == 8 and g.mode == "supervised"
    assert s.iters == 40 and s.lr_milestones == (30,) and s.seed == 1
    with pytest.raises(ValueError, match="released weights"):
        pretrain_config("cpu", "generalist", "Synth-ISO", 0, "runs/z")
    with pytest.raises(ValueError, match="role"):
        pretrain_config("scratch", "teacher", "Synth-ISO", 0, "runs/z")


def test_pixel_only_objective_by_hand():
    # A prediction off by a constant c: the orthonormal Haar LL band differs by 2c, the
    # other bands by 0, so L = 0.5 * 1 * 2c = c, with no VGG and no GAN term at all.
    from pdd.config import pretrain_config
    cfg = pretrain_config("scratch", "specialist", "Synth-ISO", 0, "runs/y")
    y = torch.rand(2, 3, 16, 16)
    terms = L.generator_objective(None, y + 0.1, None, y, sup=cfg.sup, pdd=None, distill=False,
                                  gan_on_unlabeled=False)
    assert set(terms) == {"wavelet", "total"} and abs(terms["total"].item() - 0.1) < 1e-6
    with pytest.raises(ValueError, match="VGG features"):
        L.generator_objective(None, y, None, y)   # the default weights need perceptual features


def test_scratch_pretraining_runs_without_vgg_or_d(data_root, tmp_path):
    from pdd.config import pretrain_config
    cfg = pretrain_config("scratch", "generalist", "Synth-ISO", 0, str(tmp_path / "g"), iters=2)
    cfg.batch_l, cfg.patch = 2, 16
    tr = Trainer(cfg, progress=False)
    assert tr.vgg is None and tr.d is None and "VGG19" not in tr.sources
    tr.fit()
    assert (tmp_path / "g" / "weights" / "net_g_000002.pth").exists()


def test_train_runs_gives_a_lone_job_every_core_and_shares_them_between_two(tmp_path, monkeypatch):
    """The pool's thread rule: cores split among the jobs that can run at start time."""
    from pdd.experiments import pool
    from pdd.runs import Run

    started = []

    class FakeProcess:
        def __init__(self, args, env, **kw):
            started.append(int(env["OMP_NUM_THREADS"]))

        def poll(self):
            return 0

        returncode = 0

    monkeypatch.setattr(pool.subprocess, "Popen", FakeProcess)
    monkeypatch.setattr(pool.time, "sleep", lambda s: None)
    monkeypatch.setattr(pool.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    jobs = [Run(make_config("tiny", "finetune", out=str(tmp_path / f"run{i}"))) for i in range(3)]
    pool.train_runs(jobs[:1], parallel=2, progress=False)
    assert started == [4]
    started.clear()
    pool.train_runs(jobs, parallel=2, progress=False)
    # two start together (2 cores each); the third starts when both have finished: all 4
    assert started == [2, 2, 4]
    started.clear()
    pool.train_runs(jobs, parallel=2, threads=1, progress=False)
    assert started == [1, 1, 1]


def test_compiled_step_matches_the_eager_step_and_keeps_the_checkpoint_layout(data_root, tmp_path):
    """cfg.compile (torch.compile, inductor on the CPU here): the same loss terms as eager
    execution from the same state, and snapshots with the plain modules' keys."""
    logs = {}
    for compiled in (False, True):
        cfg = tiny("ema", tmp_path / str(compiled), iters=2, warmup_d_iters=0, distill_start_k=0, ckpt_every=2,
                   compile=compiled)
        torch.manual_seed(0)
        tr = Trainer(cfg, progress=False)
        logs[compiled] = [tr.step(t) for t in (1, 2)]
        tr.iteration = 2
        tr.save()
    for eager, comp in zip(logs[False], logs[True]):
        assert set(eager) == set(comp)
        for k in eager:
            assert comp[k] == pytest.approx(eager[k], rel=1e-3, abs=1e-5), k
    snap = lambda c: torch.load(tmp_path / str(c) / "weights" / "net_g_000002.pth", weights_only=True)  # noqa: E731
    assert list(snap(True)["params_ema"]) == list(snap(False)["params_ema"])
    assert not any("_orig_mod" in k for k in snap(True)["params"])


def test_job_env_adds_the_malloc_tunables_and_keeps_the_users():
    from pdd.procenv import MALLOC_TUNABLES, job_env
    env = job_env(1, base={"PATH": "/bin"})
    assert env["PATH"] == "/bin" and env["OMP_NUM_THREADS"] == "1"
    assert dict(kv.split("=") for kv in env["GLIBC_TUNABLES"].split(":")) == MALLOC_TUNABLES
    # the classic ceiling of M_MMAP_THRESHOLD on 64-bit glibc is 32 MiB: a larger value may be
    # refused, and a trim threshold set without it would make every block over 128 KiB an mmap
    assert int(MALLOC_TUNABLES["glibc.malloc.mmap_threshold"]) <= 32 * 2 ** 20
    mine = job_env(None, base={"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=1:glibc.cpu.x86_foo=1"})
    kv = dict(x.split("=") for x in mine["GLIBC_TUNABLES"].split(":"))
    assert kv["glibc.malloc.trim_threshold"] == "1" and kv["glibc.cpu.x86_foo"] == "1"  # a user's setting wins
    assert kv["glibc.malloc.mmap_threshold"] == MALLOC_TUNABLES["glibc.malloc.mmap_threshold"]
    assert "OMP_NUM_THREADS" not in mine
