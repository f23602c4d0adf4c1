"""benchmarks/gpu_check.py end to end (--dry-run at its defaults: on the CPU here, on the GPU
where there is one), its weight carrier (benchmarks/gpu_prepare.py), its device choice, and the
CUDA path where a GPU is present. No timed assertions: the dry run's own deadline (90 s) is the
bound, and it must complete within it."""
import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pdd.devices import bf16_default

REPO = Path(__file__).resolve().parents[1]


def _module(name):
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def _gpu_check(*args, timeout=300):
    return subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), *args], cwd=REPO,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=timeout,
                          check=False)


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    """The dry run at its defaults (deadline 90 s, compile limit 45 s): sized to complete well
    inside them even on a 2-core AVX2-only CPU (about 55 s there with the other core busy)."""
    out = tmp_path_factory.mktemp("gpu_check")
    p = _gpu_check("--dry-run", "--out", str(out))
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return out, json.loads((out / "gpu_check.json").read_text()), (out / "gpu_check.md").read_text(), p.stdout


def test_dry_run_part_a_has_every_configuration_with_finite_figures(dry_run):
    _, d, _, _ = dry_run
    assert d["status"] == "complete" and d["dry_run"] is True and d["wall_s"] < d["budget_s"] == 90
    on_cuda = d["machine"]["device"].startswith("cuda")
    steps = d["a"]["steps"]
    assert set(steps) == {"fp32", "bf16", "bf16+CL", "bf16+CL+compile"}
    for name, r in steps.items():
        assert "error" not in r, (name, r)
        assert _finite(r["step_s"]) and r["step_s"] > 0 and _finite(r["data_s"])
        assert r["hours_per_100k"] == pytest.approx(r["step_s"] * 1e5 / 3600)
        assert (r["peak_gib"] is not None) == on_cuda  # CUDA only
    f, mm = d["a"]["flops"], d["a"]["matmul"]
    assert _finite(f["step_gflop"]) and f["step_gflop"] > 0 and _finite(mm["tflops"]) and mm["tflops"] > 0
    assert f["bound_s"] == pytest.approx(f["step_gflop"] / 1e3 / mm["tflops"])
    # the FLOPs of the dry step's own sizes: far below the 47 GFLOP of the unsized dry step
    assert f["step_gflop"] < 5 and d["a"]["sizes"]["patch"] == 8
    o = d["a"]["objective"]
    assert _finite(o["fused_s"]) and _finite(o["unfused_s"]) and "no fused/unfused switch" in o["note"]


def test_dry_run_part_b_is_the_07_protocol_with_iterations_stated(dry_run):
    out, d, _, _ = dry_run
    b = d["b"]
    assert b["iterations"] >= 1 and b["snapshots"] and max(b["snapshots"]) == b["iterations"]
    methods = {r["method"] for r in b["gains"]}
    assert {"EMA PDD", "finetune control"} <= methods
    for r in b["gains"]:
        for k in ("target gain", "source gain", "adaptation gain", "adaptation gain lo", "adaptation gain hi"):
            assert _finite(r[k]), (r["method"], r["metric"], k)
        assert r["adaptation gain lo"] <= r["adaptation gain"] <= r["adaptation gain hi"]
    assert any("EMA PDD" in line for line in b["conclusions"])
    per_image = (out / "evidence_per_image.csv").read_text().splitlines()
    assert per_image[0].startswith("method,seed,iteration,test set,name")
    # LPIPS/NRQM need downloads: without them they are named unavailable, never faked
    for name, info in b["metrics"].items():
        assert info["available"] or info["reason"]


def test_dry_run_names_machine_and_deviations(dry_run):
    _, d, md, stdout = dry_run
    assert "Xeon" in d["machine"]["cpu"] or d["machine"]["cpu"]
    assert d["machine"]["torch"] == torch.__version__
    assert any("DRY RUN" in x for x in d["deviations"]) and any("bf16" in x for x in d["deviations"])
    # labelled as no GPU measurement everywhere, with its sizes stated
    assert "not a GPU measurement" in md.splitlines()[0]
    assert all(line.startswith("gpu_check: DRY RUN") for line in stdout.splitlines() if line.startswith("gpu_check:"))
    sizing = d["deviations"][0]
    for stated in ("LR patch 8 (HR 32)", "batch 2+2", "VGG19 up to conv1_2", "4 iterations", "cropped to LR 32 px"):
        assert stated in sizing, stated
    assert d["b"]["sizes"]["patch"] == 8 and d["b"]["iterations"] == 4 and d["b"]["distill_from"] == 2
    for heading in ("## (a) One generator+discriminator step", "## (b) Evidence run", "## Deviations",
                    "Iterations reached:", "FLOP bound", "x official 14 h"):
        assert heading in md, heading
    assert d["machine"]["cpu"] in md


def test_dry_run_runs_where_auto_points(dry_run):
    """--device defaults to auto: the CUDA path runs whenever a GPU is present (MPS on a Mac)."""
    _, d, _, _ = dry_run
    mps = getattr(torch.backends, "mps", None)
    expected = "cuda" if torch.cuda.is_available() else "mps" if mps is not None and mps.is_available() else "cpu"
    assert d["machine"]["device"].split(":")[0] == expected
    assert ("bf16 autocast" in d["b"]["precision"]) == bf16_default(expected)  # bf16 only where native


def test_device_choice_errors_are_named(capsys):
    gc = _module("gpu_check")
    assert gc.main(["--dry-run", "--device", "gpu"]) == 2
    assert "unknown device 'gpu'; valid: auto, cpu, cuda, cuda:N, mps" in capsys.readouterr().err
    assert gc.main(["--device", "cpu"]) == 2  # the full check needs a GPU
    err = capsys.readouterr().err
    assert "no GPU here" in err and "--dry-run" in err
    if not torch.cuda.is_available():
        assert gc.main(["--device", "cuda"]) == 2
        assert "no CUDA GPU is available here" in capsys.readouterr().err


def test_deadline_keeps_what_was_measured(tmp_path):
    """A budget too short for anything: the files are still written, the status says why."""
    p = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--dry-run", "--out", str(tmp_path),
                        "--budget-min", "0.0001", "--parts", "b"], cwd=REPO, capture_output=True, text=True,
                       env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    d = json.loads((tmp_path / "gpu_check.json").read_text())
    assert p.returncode == 1 and d["status"].startswith("incomplete")
    assert (tmp_path / "gpu_check.md").read_text().startswith("# GPU check")


def test_carried_weights_round_trip(tmp_path):
    """.pddw: fp16 where exact (lossless), bf16 when asked, fp32 otherwise; unpacked as pdd cache files."""
    gp = _module("gpu_prepare")
    sd = {"w": torch.tensor([[0.5, -1.25], [3.0, 2.0**-14]]),   # exact in fp16
          "b": torch.tensor([0.1, 1e-9, -7.3]),                  # not exact in fp16
          "big": torch.randn(3, 4, 5)}
    counts = gp.pack_weights(sd, tmp_path / "x.pddw", "x.pth", {"detail": "test"}, None, {"key": "params_ema"})
    assert counts == {"float16": 1, "float32": 2}
    got = torch.load(gp.unpack_weights(tmp_path / "x.pddw", tmp_path / "cache"), weights_only=True)["params_ema"]
    assert all(torch.equal(got[k], v) for k, v in sd.items())
    assert json.loads((tmp_path / "cache" / "x.json").read_text()) == {"detail": "test"}
    gp.pack_weights(sd, tmp_path / "y.pddw", "y.pth", {}, "bfloat16", {"key": "state_dict", "feature_scale": 2.0})
    obj = torch.load(gp.unpack_weights(tmp_path / "y.pddw", tmp_path / "cache"), weights_only=True)
    assert obj["feature_scale"] == 2.0 and torch.equal(obj["state_dict"]["w"], sd["w"])
    assert torch.equal(obj["state_dict"]["b"], sd["b"].bfloat16().float())  # rounded to bf16, as documented


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_step_reports_peak_memory(tmp_path):
    gc = _module("gpu_check")
    args = gc.parse_args(["--dry-run", "--reps", "1"])
    cfg = gc.step_config(args, tmp_path, torch.device("cuda"), True, True)
    r = gc.time_steps(cfg, reps=1, warm=1)
    assert r["peak_gib"] > 0 and _finite(r["step_s"])
