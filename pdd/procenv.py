"""The environment of the processes pdd starts (training jobs, notebook kernels, the test suite).

Light on purpose (no torch): the Makefile asks it for the test suite's environment.
"""
from __future__ import annotations

import os
import sys

# glibc's malloc, for the processes we start (training jobs, notebook kernels, `make test`).
# By default it hands every freed block over 128 KiB-32 MiB back to the kernel (mmap, heap
# trimming), so each training step takes its activations as fresh pages: about 30,000 page
# faults per `scratch` EMA step, each page zeroed by the kernel. Blocks up to 32 MiB from the
# heap, and a heap never trimmed below its peak, remove that (measured: benchmarks/README.md).
# 32 MiB is the classic ceiling of M_MMAP_THRESHOLD on 64-bit glibc: a larger value may be
# refused, and the trim threshold alone would turn every block over 128 KiB into an mmap.
# Other C libraries ignore the variable.
MALLOC_TUNABLES = {"glibc.malloc.mmap_threshold": "33554432", "glibc.malloc.trim_threshold": "17179869184"}


def job_env(threads: int | None = None, base: dict | None = None) -> dict:
    """The environment for a process we start: ``base`` (default os.environ) with
    `MALLOC_TUNABLES` added to ``GLIBC_TUNABLES`` (a setting already there wins) and
    ``OMP_NUM_THREADS`` when ``threads`` is given."""
    env = dict(os.environ if base is None else base)
    have = [kv for kv in env.get("GLIBC_TUNABLES", "").split(":") if kv]
    names = {kv.split("=", 1)[0] for kv in have}
    env["GLIBC_TUNABLES"] = ":".join(have + [f"{k}={v}" for k, v in MALLOC_TUNABLES.items() if k not in names])
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    if sys.platform == "darwin":  # PyTorch reads it once, when it loads: an op MPS lacks runs on the CPU
        env.setdefault("PYTORCH_ENABLE_MPS_FALLBACK", "1")
    return env


if __name__ == "__main__":  # `python -m pdd.procenv`: the GLIBC_TUNABLES value, for the Makefile
    print(job_env()["GLIBC_TUNABLES"])
