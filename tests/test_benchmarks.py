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
