"""Every command line answers a user's mistake with its message and exit status 2 — no Python
traceback — and shows the traceback with --debug."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(args, tmp_path):
    env = {**os.environ, "PDD_OFFLINE": "1", "PDD_DATA_ROOT": str(tmp_path / "data")}
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


MISTAKES = {
    "unknown domain": (["pdd.train", "--preset", "tiny", "--domain", "Nowhere", "--out", "{tmp}/run"], "unknown domain 'Nowhere'"),
    "unknown field": (["pdd.train", "--preset", "tiny", "--out", "{tmp}/run", "--set", "no_such_field=1"], "unknown config field"),
    "unknown preset": (["pdd.experiments", "--preset", "huge", "--domain", "Synth-ISO"], "unknown preset 'huge'"),
    "missing photos": (["pdd.adapt", "--lr-dir", "{tmp}/no-photos", "--out", "{tmp}/run", "--preset", "tiny"], "no-photos"),
    "missing model file": (["pdd.upscale", "-i", "{tmp}", "-o", "{tmp}/out", "-n", "{tmp}/missing.pth"], "missing.pth"),
    "unknown notebook": (["pdd.reproduce", "99"], "no notebook starts with '99'"),
}


@pytest.mark.parametrize("case", sorted(MISTAKES))
def test_a_mistake_is_one_message_and_exit_status_2(case, tmp_path):
    args, expected = MISTAKES[case]
    r = _run([a.replace("{tmp}", str(tmp_path)) for a in args], tmp_path)
    assert r.returncode == 2, r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    assert expected in r.stderr and ": error: " in r.stderr


def test_debug_shows_the_traceback(tmp_path):
    r = _run(["pdd.train", "--preset", "tiny", "--out", str(tmp_path / "run"), "--set", "no_such_field=1", "--debug"],
             tmp_path)
    assert r.returncode == 1 and "Traceback" in r.stderr and "unknown config field" in r.stderr


def test_train_takes_a_folder_of_photos_with_lr_dir(tmp_path):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    (tmp_path / "photos" / "day2").mkdir(parents=True)
    for k, sub in enumerate(["", "", "day2"]):
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(tmp_path / "photos" / sub / f"p{k}.png")
    (tmp_path / "photos" / ".DS_Store").write_bytes(b"junk")
    r = _run(["pdd.train", "--preset", "tiny", "--mode", "ema", "--lr-dir", str(tmp_path / "photos"),
              "--out", str(tmp_path / "run"), "--iters", "2", "--set", "warmup_d_iters=0", "--set", "ckpt_every=2",
              "--no-progress"], tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())["config"]
    assert cfg["domain"] == f"folder:{tmp_path / 'photos'}"
    assert (tmp_path / "run" / "weights" / "net_g_000002.pth").exists()
