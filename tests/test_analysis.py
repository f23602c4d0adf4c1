"""pdd.analysis: patches, low-level features, PCA + t-SNE embedding, KL estimators."""
import math

import matplotlib
import numpy as np
import pytest
import torch

from pdd.analysis import (
    embed,
    extract_patches,
    feature_maps,
    fit_ggd,
    gaussian_kl,
    ggd_kl,
    kl_divergence,
    low_level_features,
    plot_embedding,
)
from pdd.archs import RRDBNet

matplotlib.use("Agg")


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    # The tiny convolutions here take ~0.03 s on one thread but over 1 s on two threads
    # of a 2-core machine busy with other work; restore the setting for other modules.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ------------------------------------------------------------------ patches
def _coded_image(h, w, c=3):
    """Every value says where it is: 1000*y + 10*x + channel."""
    y, x, ch = np.meshgrid(np.arange(h), np.arange(w), np.arange(c), indexing="ij")
    return (1000 * y + 10 * x + ch).astype(np.float32)


def test_extract_patches_counts_order_and_contents():
    img = _coded_image(100, 150)
    p = extract_patches(img, 50)
    assert p.shape == (6, 50 * 50 * 3) and p.dtype == np.float32
    # Row-major over the 2x3 patch grid: patch 4 is row 1, column 1.
    np.testing.assert_array_equal(p[4].reshape(50, 50, 3), img[50:100, 50:100])
    # Flattened in (y, x, channel) order: element 1 is channel 1 of the top-left pixel,
    # element 3 the next pixel to the right.
    assert p[4][0] == 1000 * 50 + 10 * 50 and p[4][1] == p[4][0] + 1 and p[4][3] == p[4][0] + 10
    np.testing.assert_array_equal(p[2].reshape(50, 50, 3), img[0:50, 100:150])


def test_extract_patches_drops_remainder_and_accepts_chw_tensors():
    img = _coded_image(120, 170)  # 20 and 20 pixels left over
    p = extract_patches(img, 50)
    assert p.shape[0] == 6
    np.testing.assert_array_equal(p[5].reshape(50, 50, 3), img[50:100, 100:150])
    t = torch.from_numpy(img).permute(2, 0, 1)  # torch is channels-first
    np.testing.assert_array_equal(extract_patches(t, 50), p)
    np.testing.assert_array_equal(extract_patches(t[None], 50), p)
    assert extract_patches(img, 25, stride=25).shape == (4 * 6, 25 * 25 * 3)
    assert extract_patches(img, 50, stride=10).shape == (8 * 13, 7500)  # overlapping
    assert extract_patches(img[:40], 50).shape == (0, 7500)
    gray = np.arange(100 * 100, dtype=np.uint8).reshape(100, 100)
    assert extract_patches(gray, 50).shape == (4, 2500)


# ------------------------------------------------------------------ low-level features
@pytest.fixture(scope="module")
def tiny_rrdb():
    torch.manual_seed(0)
    return RRDBNet(num_feat=8, num_block=1, num_grow_ch=4).eval()


def test_low_level_features_shapes(tiny_rrdb):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (100, 150, 3), dtype=np.uint8)
    f = low_level_features(tiny_rrdb, img)  # default conv_body: on the image's own grid
    assert f.shape == (6, 8 * 50 * 50) and f.dtype == np.float32
    # A list of images is concatenated in order; a float [0,1] tensor gives the same rows.
    t = torch.from_numpy(img).permute(2, 0, 1).float() / 255
    both = low_level_features(tiny_rrdb, [img, t])
    assert both.shape == (12, 20000)
    np.testing.assert_allclose(both[6:], f, rtol=1e-5, atol=1e-6)
    # Upsampling layers: 2x and 4x the grid, so 4x and 16x as many patches.
    assert low_level_features(tiny_rrdb, img, layer="conv_up1").shape == (4 * 6, 20000)
    assert low_level_features(tiny_rrdb, img, layer="conv_hr").shape == (8 * 12, 20000)
    assert low_level_features(tiny_rrdb, img, layer="body.0", patch=25).shape == (24, 8 * 625)
    with pytest.raises(ValueError, match="unknown RRDBNet layer"):
        low_level_features(tiny_rrdb, img, layer="conv_last")


def test_feature_maps_follow_the_forward_pass(tiny_rrdb):
    x = torch.rand(1, 3, 12, 16)
    with torch.no_grad():
        hr = feature_maps(tiny_rrdb, x, "conv_hr")
        torch.testing.assert_close(tiny_rrdb.conv_last(hr), tiny_rrdb(x))
        body = feature_maps(tiny_rrdb, x, "conv_body")
        first = tiny_rrdb.conv_first(x)
        torch.testing.assert_close(body, first + tiny_rrdb.conv_body(tiny_rrdb.body(first)))
    assert body.shape == (1, 8, 12, 16) and hr.shape == (1, 8, 48, 64)


def test_low_level_features_scale2_model_crops_to_unshuffle_multiple():
    torch.manual_seed(0)
    m = RRDBNet(num_feat=8, num_block=1, num_grow_ch=4, scale=2).eval()
    img = np.zeros((101, 151, 3), dtype=np.uint8)  # odd sizes: cropped to 100x150
    f = low_level_features(m, img, patch=25)  # trunk at half the grid: 50x75
    assert f.shape == (2 * 3, 8 * 625)


# ------------------------------------------------------------------ embedding
def _groups(rng, n=40, d=12):
    return {"labeled": rng.standard_normal((n, d)), "unlabeled": rng.standard_normal((n, d)) + 3.0}


@pytest.mark.parametrize("method", ["sklearn", "opentsne"])
def test_embed_shape_groups_determinism(method):
    feats = _groups(np.random.default_rng(0))
    df = embed(feats, pca_dims=5, perplexity=10, seed=0, method=method)
    assert list(df.columns) == ["x", "y", "group"] and len(df) == 80
    assert df["group"].tolist() == ["labeled"] * 40 + ["unlabeled"] * 40
    assert np.isfinite(df[["x", "y"]].to_numpy()).all()
    assert df.attrs["pca_dims"] == 5 and df.attrs["method"] == method
    again = embed(feats, pca_dims=5, perplexity=10, seed=0, method=method)
    np.testing.assert_array_equal(df[["x", "y"]].to_numpy(), again[["x", "y"]].to_numpy())
    # Well-separated groups stay separated: each point's nearest neighbour is in its group.
    xy = df[["x", "y"]].to_numpy()
    dist = np.linalg.norm(xy[:, None] - xy[None], axis=-1) + np.eye(len(xy)) * 1e9
    assert (df["group"].to_numpy()[dist.argmin(1)] == df["group"].to_numpy()).mean() > 0.95


def test_embed_caps_pca_dims_and_perplexity():
    rng = np.random.default_rng(1)
    df = embed({"a": rng.standard_normal((10, 8)), "b": rng.standard_normal((12, 8))}, pca_dims=50)
    assert df.attrs["pca_dims"] == 8  # capped by the number of features
    assert df.attrs["perplexity"] == pytest.approx(21 / 3)  # capped for 22 samples
    df = embed({"a": rng.standard_normal((6, 300)), "b": rng.standard_normal((6, 300))}, pca_dims=50)
    assert df.attrs["pca_dims"] == 12  # capped by the number of samples
    assert embed({"a": rng.standard_normal((9, 3))}, pca_dims=None).attrs["pca_dims"] == 0
    with pytest.raises(ValueError, match="same number of features"):
        embed({"a": np.zeros((5, 3)), "b": np.zeros((5, 4))})


def test_plot_embedding_one_colour_per_group():
    df = embed(_groups(np.random.default_rng(2), n=15, d=4), pca_dims=None, perplexity=5)
    ax = plot_embedding(df, title="t")
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["labeled", "unlabeled"]
    assert len(ax.collections) == 2 and ax.figure.dpi >= 100  # legible at 100 % zoom (issue 16)
    matplotlib.pyplot.close(ax.figure)


# ------------------------------------------------------------------ KL divergence
def _gaussian_pair(d):
    """N(mu, Sigma) with |mu| = 1.2 and Sigma's eigenvalues in [0.7, 1.6], a random rotation."""
    r = np.random.default_rng(10 + d)
    mu = r.uniform(-1, 1, d)
    mu *= 1.2 / np.linalg.norm(mu)
    rot, _ = np.linalg.qr(r.standard_normal((d, d)))
    return mu, rot @ np.diag(np.linspace(0.7, 1.6, d)) @ rot.T


def _closed_form(mu1, s1, mu2, s2):
    """0.5[tr(S2^-1 S1) + (mu2-mu1)^T S2^-1 (mu2-mu1) - d + ln(det S2 / det S1)]."""
    inv = np.linalg.inv(s2)
    diff = mu2 - mu1
    return 0.5 * (np.trace(inv @ s1) + diff @ inv @ diff - len(mu1)
                  + np.log(np.linalg.det(s2) / np.linalg.det(s1)))


def _draws(d, n=5000, reps=4):
    mu, sigma = _gaussian_pair(d)
    for seed in range(reps):
        rng = np.random.default_rng(seed)
        yield rng.standard_normal((n, d)), rng.multivariate_normal(mu, sigma, n)


def test_gaussian_kl_matches_closed_form():
    assert gaussian_kl([0.0], [[1.0]], [1.0], [[4.0]]) == pytest.approx(math.log(2) + 2 / 8 - 0.5)
    mu, sigma = _gaussian_pair(4)
    assert gaussian_kl(np.zeros(4), np.eye(4), mu, sigma) == pytest.approx(
        _closed_form(np.zeros(4), np.eye(4), mu, sigma))


@pytest.mark.parametrize("d", [2, 3, 4, 5])
def test_kl_estimators_on_gaussians_with_known_kl(d):
    mu, sigma = _gaussian_pair(d)
    true_pq = _closed_form(np.zeros(d), np.eye(d), mu, sigma)
    true_qp = _closed_form(mu, sigma, np.zeros(d), np.eye(d))
    est = np.array([[kl_divergence(x, y), kl_divergence(y, x),
                     kl_divergence(x, y, "knn"), kl_divergence(y, x, "knn")] for x, y in _draws(d)])
    rel = est / [true_pq, true_qp, true_pq, true_qp] - 1
    # Gaussian fit: unbiased, sampling sd ~2.5 % per 5,000-sample draw.
    assert np.abs(rel[:, :2]).max() < 0.1
    assert np.abs(rel[:, :2].mean(0)).max() < 0.05
    # k-NN (k = 1): biased low by ~4 % (d = 2) to ~10 % (d = 3-5) at 5,000 samples.
    assert np.abs(rel[:, 2:].mean(0)).max() < 0.15


def test_kl_of_a_distribution_with_itself_is_zero():
    rng = np.random.default_rng(3)
    for d in (2, 5):
        x, x2 = rng.standard_normal((2, 5000, d))
        assert abs(kl_divergence(x, x2)) < 0.01
        assert abs(kl_divergence(x, x2, bias_correction=False)) < 0.01
        assert abs(kl_divergence(x, x2, "knn")) < 0.08


def test_kl_is_asymmetric():
    d, rng = 3, np.random.default_rng(4)
    pq = 0.5 * d * (0.5 - 1 + math.log(2))  # KL(N(0,I) || N(0,2I)) = 0.29
    qp = 0.5 * d * (2 - 1 - math.log(2))  # KL(N(0,2I) || N(0,I)) = 0.46
    # k-NN converges slowly when P is wider than Q (P's tail points fall where Q has few
    # samples): at 5,000 samples it gives 0.35 / 0.36 here, so it gets 50,000.
    for method, n, tol in (("gaussian", 5000, 0.08), ("knn", 50000, 0.15)):
        x = rng.standard_normal((n, d))
        y = rng.standard_normal((n, d)) * math.sqrt(2.0)  # N(0, 2I)
        a, b = kl_divergence(x, y, method), kl_divergence(y, x, method)
        assert a == pytest.approx(pq, rel=tol) and b == pytest.approx(qp, rel=tol) and a < b


def test_kl_pca_reduction_and_plug_in_bias():
    # 60-d features whose difference lives in a 3-d subspace: PCA to 50 dims keeps it.
    rng = np.random.default_rng(5)
    basis = np.linalg.qr(rng.standard_normal((60, 60)))[0]
    x = rng.standard_normal((3000, 60)) @ basis.T
    shift = np.zeros(60)
    shift[:3] = 1.0
    y = (rng.standard_normal((3000, 60)) + shift) @ basis.T
    assert kl_divergence(x, y) == pytest.approx(1.5, rel=0.08)  # 0.5 |shift|^2
    # The plug-in is biased upward by about d(d+1)/4 (1/n + 1/m) = 0.425 at d = 50.
    plug_in = kl_divergence(x, y, bias_correction=False)
    assert plug_in == pytest.approx(1.5 + 0.425, abs=0.15)
    with pytest.warns(UserWarning, match="k-NN KL in 50 dimensions"):
        kl_divergence(x[:500], y[:500], "knn")
    with pytest.raises(ValueError, match="more samples than dimensions|more than d\\+2"):
        kl_divergence(x[:20], y[:20])
    with pytest.raises(ValueError, match="duplicate"):
        kl_divergence(np.zeros((10, 2)), rng.standard_normal((10, 2)), "knn")


def test_ggd_kl_closed_form_and_fit():
    from scipy import integrate, stats

    def gn(std, shape):  # scipy's gennorm from (std, shape)
        return stats.gennorm(shape, scale=std * math.sqrt(math.gamma(1 / shape) / math.gamma(3 / shape)))

    p, q = gn(1.0, 1.0), gn(1.5, 2.0)
    numeric = integrate.quad(lambda t: p.pdf(t) * (p.logpdf(t) - q.logpdf(t)), -40, 40, points=[0])[0]
    assert ggd_kl(1.0, 1.0, 1.5, 2.0) == pytest.approx(numeric, rel=1e-6)
    assert ggd_kl(1.3, 1.7, 1.3, 1.7) == pytest.approx(0.0, abs=1e-12)
    # Gaussian case: KL(N(0,1) || N(0,1.5^2)).
    assert ggd_kl(1.0, 2.0, 1.5, 2.0) == pytest.approx(math.log(1.5) + 1 / (2 * 1.5 ** 2) - 0.5)
    std, shape = fit_ggd(p.rvs(200_000, random_state=0))
    assert std == pytest.approx(1.0, rel=0.02) and shape == pytest.approx(1.0, rel=0.05)
    # SRGA-style pooled estimate on 1-D samples reduces to the fitted GGDs' KL.
    a, b = p.rvs((20000, 1), random_state=1), q.rvs((20000, 1), random_state=2)
    assert kl_divergence(a, b, "ggd") == pytest.approx(numeric, rel=0.1)


def test_paired_samples_break_the_bias_correction_and_the_floor_does_not():
    # Two degradations of the same patches are paired samples: the bias-corrected estimate
    # goes strongly negative (about -d(d+1)/(2n)), which is why notebook 06 splits images.
    from pdd.analysis import kl_by_model

    rng = np.random.default_rng(7)
    d, n = 10, 1000
    x = rng.standard_normal((n, d))
    paired = x + 0.05 * rng.standard_normal((n, d))
    assert kl_divergence(x, paired, pca_dims=None) < -0.5 * d * (d + 1) / (2 * n)
    feats = {("m", "X^L"): x, ("m", "X^U"): rng.standard_normal((n, d)) + 0.5,  # KL = d * 0.5**2 / 2
             ("m", "X^L, other"): rng.standard_normal((n, d))}
    kl = kl_by_model(feats, "X^L", "X^U", floor="X^L, other", pca_dims=None).iloc[0]
    assert kl["kl"] == pytest.approx(d * 0.25 / 2, abs=0.25)
    assert abs(kl["kl floor"]) < 0.1 and (kl.n_reference, kl.n_other) == (n, n)
