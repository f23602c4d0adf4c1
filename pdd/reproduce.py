"""`make reproduce`: run every numbered notebook with papermill on the embedded default.

Executed copies land in results/notebooks/, and results/README.md lists what ran, how
long each took, and what failed. Notebook parameters are not overridden here: each
notebook's parameters cell holds the embedded default.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def git_commit() -> str:
    """The same provenance string every result record carries (pdd.evaluate)."""
    from .evaluate import _git_commit
    return _git_commit()


def main(argv: list[str] | None = None) -> int:
    import papermill

    notebooks = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if argv:  # e.g. `python -m pdd.reproduce 02 03 04`: only these notebooks
        notebooks = [nb for nb in notebooks if any(nb.name.startswith(a) for a in argv)]
    out_dir = ROOT / "results" / "notebooks"
    out_dir.mkdir(parents=True, exist_ok=True)
    rows, t_all, failed = [], time.time(), 0
    if not notebooks:
        print("No notebooks yet: nothing to reproduce.")
    for nb in notebooks:
        t0 = time.time()
        print(f"== {nb.name}", flush=True)
        try:
            papermill.execute_notebook(str(nb), str(out_dir / nb.name), cwd=str(ROOT / "notebooks"),
                                       progress_bar=True)
            status = "ok"
        except Exception as e:  # report and go on: one notebook's failure should not hide the others
            status = f"FAILED: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            failed += 1
        rows.append((nb.name, status, time.time() - t0))
        print(f"   {status} ({rows[-1][2]:.0f} s)", flush=True)
    total = time.time() - t_all
    lines = ["# Results of `make reproduce`", "",
             f"Commit `{git_commit()}`, total wall time {total / 60:.1f} min.", "",
             "| notebook | status | wall time (s) |", "|---|---|---|"]
    lines += [f"| [{n}](notebooks/{n}) | {s} | {t:.0f} |" for n, s, t in rows]
    tables = sorted(p.relative_to(ROOT / "results") for p in (ROOT / "results").glob("*/*/*.md"))
    if tables:
        lines += ["", "## Tables", ""] + [f"- [{t}]({t})" for t in tables]
    (ROOT / "results" / "README.md").write_text("\n".join(lines) + "\n")
    print(f"Ran {len(rows)} notebook(s) in {total / 60:.1f} min; summary in results/README.md")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
