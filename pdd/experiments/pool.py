"""The training pool: trains what a plan lists, each run as a separate process.

A job is ``python -m <run.module> --config <run>/requested_config.json`` (``pdd.train``,
``pdd.hr_aware`` for an HR-aware stage, ``pdd.kdsr_train`` for a KDSR stage), by default two
at a time with one thread each (on a 2-core CPU two single-thread jobs beat one two-thread
job, DESIGN.md). A job starts once the runs it starts from (``Run.needs``) are finished.
Finished runs are skipped; a stopped run resumes from its last checkpoint.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from .. import ROOT
from ..procenv import job_env
from ..runs import Run


def cpu_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def dependencies_first(jobs: list[Run]) -> list[Run]:
    """Each run once (where it first appears), what other runs start from first (the starting
    models, the KDSR teacher, HR-aware stage A: the long chains start early), then the rest in
    their order, the tiny preset last (its short runs fill the pool's tail)."""
    by_dir: dict[str, Run] = {}
    for j in jobs:
        by_dir.setdefault(str(j.dir), j)
    unique = list(by_dir.values())
    needed = set().union(*(j.needs for j in unique)) if unique else set()
    return sorted(unique, key=lambda j: (j.preset == "tiny", str(j.dir) not in needed))


def train_runs(jobs: list[Run], parallel: int = 2, threads: int | None = None, progress: bool = True,
               job_timeout_s: float | None = None) -> float:
    """Train every unfinished run in subprocesses, ``parallel`` at a time; a job whose starting
    run (``Run.needs``) is among the unfinished ones waits for it. Returns the wall time in
    seconds. A failed job raises with its log.

    ``threads`` per job; None: the machine's cores shared among the jobs that can run now, so
    that a job started with nothing beside it (a single run, the last of a wave) uses them all.
    ``job_timeout_s``: a job running longer is stopped and raised as hung (None: no limit).
    Whatever stops the pool (a failure, a hang, Ctrl-C) stops its running jobs; their last
    checkpoints stay, so a rerun resumes them."""
    t0 = time.time()
    cores = cpu_cores()
    queue = [j for j in jobs if not j.finished]
    running: list[tuple[subprocess.Popen, Run, float]] = []
    try:
        while queue or running:
            pending = {str(j.dir) for j in queue} | {str(r.dir) for _, r, _ in running}
            ready = [j for j in queue if not (j.needs & pending)]
            if not ready and not running:
                raise RuntimeError(f"jobs wait on each other: {[str(j.dir) for j in queue]}")
            while ready and len(running) < parallel:
                job = ready.pop(0)
                queue.remove(job)
                cfg = job.config
                cfg.threads = threads or max(1, cores // min(parallel, len(ready) + len(running) + 1))
                job.dir.mkdir(parents=True, exist_ok=True)
                (job.dir / "requested_config.json").write_text(cfg.to_json())
                # appended to: a resumed job keeps the log of its earlier part
                with open(job.dir / "train.log", "a") as log:
                    log.write(f"== {time.strftime('%Y-%m-%d %H:%M:%S')} started ({cfg.iters} iterations, "
                              f"{cfg.threads} thread(s))\n")
                    log.flush()
                    p = subprocess.Popen([sys.executable, "-m", job.module, "--config",
                                          str(job.dir / "requested_config.json"), "--no-progress"],
                                         cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=job_env(cfg.threads))
                running.append((p, job, time.time()))
                if progress:
                    print(f"[{time.time() - t0:6.0f} s] started  {job.dir.name} ({cfg.mode}, {cfg.iters} iterations, "
                          f"{cfg.threads} thread{'s' if cfg.threads > 1 else ''})", flush=True)
            time.sleep(2)
            for item in list(running):
                p, job, started = item
                if p.poll() is None:
                    if job_timeout_s is not None and time.time() - started > job_timeout_s:
                        raise RuntimeError(f"training hung ({job.config.mode}, seed {job.seed}, {job.dir}): still "
                                           f"running after {job_timeout_s:.0f} s; stopped. Its log: "
                                           f"{job.dir / 'train.log'}")
                    continue
                running.remove(item)
                if p.returncode != 0:
                    tail = (job.dir / "train.log").read_text()[-3000:]
                    raise RuntimeError(f"training failed ({job.config.mode}, seed {job.seed}, {job.dir}):\n{tail}")
                if progress:
                    print(f"[{time.time() - t0:6.0f} s] finished {job.dir.name}", flush=True)
    finally:
        for p, *_ in running:
            p.terminate()
        for p, *_ in running:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
    return time.time() - t0


def train_here(jobs: list[Run], progress: bool = True) -> list[Path]:
    """Train the unfinished runs in this process, one after another in the given order (what
    they start from first: ``dependencies_first``), with the trainer's progress bar: what a
    notebook's loader does for the one or two runs it needs. Returns the run directories."""
    for job in jobs:
        if not job.finished:
            job.trainer(progress=progress).fit()
    return [job.dir for job in jobs]
