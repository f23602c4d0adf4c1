"""Scoring several models at once (experiments.evaluate_items): the same numbers as scoring each
alone through pdd.evaluate, every finished score cached, nothing lost when one model fails."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from pdd import evaluate, experiments

NUM = ["psnr", "ssim", "niqe", "psnr_cc"]


@pytest.fixture(scope="module")
def metrics():
    return evaluate.create_metrics(["psnr", "ssim", "niqe"])


def _pairs(first, n=2):
    from pdd.data import open_domain  # the built-in domain's photos (random noise has no NIQE)
    return open_domain("Synth-ISO").test_pairs[first:first + n]


def _model(seed):
    """Bicubic x4 then a 1x1 colour mix near the identity, different per seed (a random RRDBNet
    gives flat images, on which NIQE is undefined)."""
    g = torch.Generator().manual_seed(seed)  # not the global generator: loaders run in threads
    mix = torch.nn.Conv2d(3, 3, 1)
    with torch.no_grad():
        mix.weight.copy_(torch.eye(3)[:, :, None, None] + 0.05 * torch.randn(3, 3, 1, 1, generator=g))
        mix.bias.copy_(0.02 * torch.randn(3, generator=g))
    return torch.nn.Sequential(torch.nn.Upsample(scale_factor=4, mode="bicubic"), mix).eval()


def _items(tmp_path, n, fail_at=None):
    def load(k):
        if k == fail_at:
            raise RuntimeError(f"model {k} is broken")
        return _model(k)
    return [experiments.EvalItem(lambda k=k: load(k), Path(f"net_g_{k:06d}.pth"), tmp_path / f"run{k}" / "eval",
                                 {"method": f"m{k}", "seed": 0, "iteration": k}) for k in range(n)]


def test_models_scored_at_once_match_each_scored_alone(tmp_path, metrics):
    test_sets = {"target": _pairs(0), "source": _pairs(2)}
    threads = torch.get_num_threads()
    frames = experiments.evaluate_items(_items(tmp_path, 3), test_sets, metrics, workers=2, progress=False)
    assert torch.get_num_threads() == threads  # put back after the single-thread workers
    for k, df in enumerate(frames):
        assert set(df.method) == {f"m{k}"} and set(df.iteration) == {k}
        for set_name, pairs in test_sets.items():
            # the independent route, at the workers' one thread (fp32 inference at another thread
            # count may round a pixel the other way at the 8-bit step: 1e-6 dB)
            torch.set_num_threads(1)
            try:
                alone = evaluate.evaluate(_model(k), pairs, metrics, progress=False)
            finally:
                torch.set_num_threads(threads)
            got = df[df["test set"] == set_name].reset_index(drop=True)
            assert list(got.name) == list(alone.name)
            np.testing.assert_allclose(got[NUM].to_numpy(), alone[NUM].to_numpy(), rtol=0, atol=1e-12)
            assert (tmp_path / f"run{k}" / "eval" / f"net_g_{k:06d}__{set_name}.csv").exists()
    assert not list(tmp_path.glob("**/*.part"))


def test_a_failing_model_keeps_the_others_scores_and_a_rerun_reads_them(tmp_path, metrics):
    test_sets = {"target": _pairs(3, n=1)}
    with pytest.raises(RuntimeError, match="model 1 is broken"):
        experiments.evaluate_items(_items(tmp_path, 3, fail_at=1), test_sets, metrics, workers=2, progress=False)
    caches = {k: tmp_path / f"run{k}" / "eval" / f"net_g_{k:06d}__target.csv" for k in range(3)}
    assert caches[0].exists() and not caches[1].exists()  # model 2 is cached if it started before the failure
    for cache in caches.values():
        if cache.exists():  # a marker, to tell a score read back from one recomputed
            df = pd.read_csv(cache)
            df.loc[0, "psnr"] = -1.0
            df.to_csv(cache, index=False)
    items = _items(tmp_path, 3)
    for k, it in enumerate(items):
        if caches[k].exists():
            it.load = lambda: (_ for _ in ()).throw(AssertionError("a cached score was recomputed"))
    frames = experiments.evaluate_items(items, test_sets, metrics, workers=2, progress=False)
    assert frames[0].psnr.iloc[0] == -1.0 and frames[1].psnr.iloc[0] != -1.0
    assert all(c.exists() for c in caches.values())


def test_workers_one_per_core_and_one_for_a_single_model(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(experiments.pool.os, "sched_getaffinity", lambda _: {0, 1}, raising=False)
    assert experiments.eval_workers(5) == 2
    assert experiments.eval_workers(1) == 1
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert experiments.eval_workers(5) == 1
