"""python -m pdd.experiments: the method comparison from the command line."""
from __future__ import annotations

import sys

from .. import cli
from .catalogue import HR_AWARE_ROWS, METHODS
from .comparison import compare_methods


def main(argv=None) -> int:
    import argparse
    ap = argparse.ArgumentParser(prog="python -m pdd.experiments", description=compare_methods.__doc__)
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--domain", default="Synth-Defocus")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--methods", nargs="+", choices=list(METHODS) + list(HR_AWARE_ROWS),
                    metavar="METHOD", help="rows (quote names with spaces): " + "; ".join(list(METHODS) + list(HR_AWARE_ROWS)))
    ap.add_argument("--pretrain-iters", type=int)
    ap.add_argument("--iters", type=int)
    ap.add_argument("--last-k", type=int, default=2)
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--runs-dir")
    ap.add_argument("--out", help="output stem, e.g. results/Synth-Defocus/cpu/methods")
    cli.add_debug_flag(ap)
    a = ap.parse_args(argv)
    r = compare_methods(a.preset, a.domain, a.seeds, a.methods, a.iters, a.last_k, a.parallel, a.runs_dir,
                        out_stem=a.out, pretrain_iters=a.pretrain_iters)
    print(r["summary"].round(3).to_string(index=False))
    print("\n".join(r["verdict"]))
    print(f"train {r['train_s']:.0f} s, evaluate {r['eval_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main, "python -m pdd.experiments"))
