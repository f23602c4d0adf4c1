"""The CPU benchmark scripts run end to end and print their figures (no timing is asserted)."""
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_train_step_ab_prints_each_before_after_pair():
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "train_step.py"), "--preset", "tiny", "--ab", "1",
                          "--kinds", "ema"],
                         capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout
    for name in ("D step", "VGG (no-grad + grad pass)"):
        line = next(ln for ln in text.splitlines() if ln.startswith(name))
        before, after, ratio = map(float, re.findall(r"([\d.]+) s, after ([\d.]+) s: ([\d.]+)x", line)[0])
        assert before > 0 and after > 0 and abs(before / after - ratio) < 0.01 + 0.01 * ratio
    rows = [ln for ln in text.splitlines() if "s/step" in ln]
    assert [r.split(",")[1].split()[0:2] for r in rows] == [["malloc", "defaults"], ["job_env", "tunables"]]
    assert "the EMA PDD step" in text
    assert all(float(re.search(r"([\d.]+) s/step", r).group(1)) > 0 for r in rows)


def test_fp32_floor_counts_multiply_accumulates_by_hand():
    """benchmarks/fp32_floor.py's GFLOP/s rest on its MAC count: checked against counts worked out
    by hand (out pixels x out channels x in channels/groups x kh x kw per convolution)."""
    import torch

    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import fp32_floor
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.Conv2d(8, 4, 4, stride=2, padding=1), torch.nn.Conv2d(4, 4, 3, padding=1, groups=2))
    x = torch.rand(2, 3, 10, 10)
    # 2x8x10x10 outputs x 3x3x3; 2x4x5x5 outputs x 8x4x4; 2x4x5x5 outputs x (4/2)x3x3
    assert fp32_floor.forward_macs(net, x) == 2 * 8 * 100 * 27 + 2 * 4 * 25 * 128 + 2 * 4 * 25 * 18
    assert not any(m._forward_hooks for m in net.modules())  # the counter removes its hooks
    peak, how = fp32_floor.theoretical_peak_gflops()
    assert peak != peak or (peak > 0 and "MHz" in how)  # NaN where /proc/cpuinfo has no clock


def test_disc_width_prints_seconds_per_step_and_the_ratio_for_each_kind():
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "disc_width.py"), "--preset", "tiny", "--rounds", "1",
                          "--steps", "1", "--widths", "16", "8"], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [ln for ln in out.stdout.splitlines() if ln.startswith("| ") and "step kind" not in ln]
    assert [r.split(" | ")[0][2:] for r in rows] == ["EMA PDD", "static PDD", "fine-tune control", "D-only warm-up"]
    for r in rows:
        a, b, ratio = map(float, r.strip(" |").split(" | ")[1:])
        # the ratio of the unrounded medians, within the printed figures' rounding (3 and 2 decimals)
        assert a > 0 and b > 0 and (b - 5e-4) / (a + 5e-4) - 5e-3 <= ratio <= (b + 5e-4) / (a - 5e-4) + 5e-3
    assert out.stdout.startswith("CPU: ")
