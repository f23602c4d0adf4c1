"""Architectures: the official checkpoint layout is a public contract."""
import torch

from pdd.archs import VGG19_CONVS, RRDBNet, UNetDiscriminatorSN, VGG19Features, count_parameters


def test_rrdbnet_full_size_parameter_count_and_official_keys():
    net = RRDBNet()
    assert count_parameters(net) == 16_697_987  # RealESRGAN_x4plus / ESRGAN x4
    sd = net.state_dict()
    # 2 + 23 blocks * 3 RDBs * 5 convs * 2 + 5 trailing convs * 2 tensors
    assert len(sd) == 2 + 23 * 3 * 5 * 2 + 5 * 2
    assert sd["conv_first.weight"].shape == (64, 3, 3, 3)
    assert sd["body.0.rdb1.conv1.weight"].shape == (32, 64, 3, 3)
    assert sd["body.22.rdb3.conv5.weight"].shape == (64, 64 + 4 * 32, 3, 3)
    for k in ("conv_body", "conv_up1", "conv_up2", "conv_hr"):
        assert sd[f"{k}.weight"].shape == (64, 64, 3, 3)
    assert sd["conv_last.weight"].shape == (3, 64, 3, 3)


def test_rrdbnet_small_is_same_class_and_upsamples_x4():
    net = RRDBNet(num_feat=16, num_block=1, num_grow_ch=8)
    y = net(torch.rand(2, 3, 12, 10))
    assert y.shape == (2, 3, 48, 40)
    # unclamped: the official models are not clamped at the output
    assert set(RRDBNet().state_dict()) >= {"body.0.rdb1.conv1.weight"}


def test_rrdbnet_scale2_uses_pixel_unshuffle():
    net = RRDBNet(scale=2, num_feat=8, num_block=1, num_grow_ch=4)
    assert net.conv_first.in_channels == 12
    assert net(torch.rand(1, 3, 8, 8)).shape == (1, 3, 16, 16)


def test_unet_discriminator_layout_and_output():
    d = UNetDiscriminatorSN(3, num_feat=64, skip_connection=True)
    sd = d.state_dict()
    # spectral norm keeps weight_orig / weight_u / weight_v (released netD layout)
    assert "conv1.weight_orig" in sd and "conv1.weight_u" in sd and "conv1.weight_v" in sd
    assert "conv0.weight" in sd and "conv9.bias" in sd and "conv1.bias" not in sd
    assert sd["conv3.weight_orig"].shape == (512, 256, 4, 4)
    out = d(torch.rand(2, 3, 32, 32))
    assert out.shape == (2, 1, 32, 32)


def test_vgg_features_one_pass_named_pre_relu_and_truncated():
    vgg = VGG19Features(["conv1_2", "conv3_4", "conv2_1"])
    assert len(vgg.features) == 17  # truncated right after conv3_4 (index 16)
    x = torch.rand(2, 3, 32, 32)
    f = vgg(x)
    assert list(f) == ["conv1_2", "conv2_1", "conv3_4"]  # network order
    assert f["conv1_2"].shape == (2, 64, 32, 32) and f["conv2_1"].shape == (2, 128, 16, 16)
    assert f["conv3_4"].shape == (2, 256, 8, 8)
    assert (f["conv1_2"] < 0).any(), "pre-ReLU features must keep negative values"
    assert not any(p.requires_grad for p in vgg.parameters())


def test_vgg_feature_scale_divides_every_feature():
    torch.manual_seed(0)
    a = VGG19Features(["conv2_2", "conv5_4"])
    b = VGG19Features(["conv2_2", "conv5_4"], state_dict={"features." + k: v for k, v in a.features.state_dict().items()},
                      feature_scale=4.0)
    x = torch.rand(1, 3, 32, 32)
    fa, fb = a(x), b(x)
    for k in fa:
        torch.testing.assert_close(fb[k] * 4.0, fa[k])


def test_vgg_input_is_imagenet_normalised():
    vgg = VGG19Features(["conv1_1"])
    w, b = vgg.features[0].weight, vgg.features[0].bias
    x = torch.rand(1, 3, 8, 8)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    ref = torch.nn.functional.conv2d((x - mean) / std, w, b, padding=1)
    torch.testing.assert_close(vgg(x)["conv1_1"], ref)


def test_vgg_rejects_unknown_layer():
    try:
        VGG19Features(["conv6_1"])
    except ValueError as e:
        assert "conv6_1" in str(e) and "conv5_4" in str(e)
    else:
        raise AssertionError("unknown layer accepted")
    assert len(VGG19_CONVS) == 16


# ------------------------------------------------------------------ the discriminator's spectral norm
def _torch_sn_twin(d_fast: UNetDiscriminatorSN) -> UNetDiscriminatorSN:
    """The same discriminator (weights, u, v) computed by torch's own spectral-norm hook."""
    import copy

    from torch.nn.utils.spectral_norm import SpectralNorm
    d_ref = copy.deepcopy(d_fast)
    for m in d_ref.modules():
        for hook in m._forward_pre_hooks.values():
            if isinstance(hook, SpectralNorm):
                hook.__class__ = SpectralNorm
    return d_ref


def test_fast_spectral_norm_matches_torch_forward_bitwise_and_gradient_to_rounding():
    """The GAN pattern of BasicSR's D step (two forwards, one backward), three steps, fp32 and
    bf16 autocast: the outputs and the power iteration's u, v are torch's bit for bit; the
    gradient of every weight_orig equals torch's autograd route up to fp32 rounding."""
    from torch.nn.utils.spectral_norm import SpectralNorm

    from pdd.archs import _FastSpectralNorm
    torch.manual_seed(0)
    d = UNetDiscriminatorSN(3, num_feat=16)
    assert sum(isinstance(h, _FastSpectralNorm) for m in d.modules() for h in m._forward_pre_hooks.values()) == 8
    ref = _torch_sn_twin(d)
    assert not any(isinstance(h, _FastSpectralNorm) for m in ref.modules() for h in m._forward_pre_hooks.values())
    assert any(isinstance(h, SpectralNorm) for m in ref.modules() for h in m._forward_pre_hooks.values())
    for bf16 in (False, True):
        for _ in range(3):
            real, fake = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
            outs = []
            for net in (d, ref):
                net.zero_grad(set_to_none=True)
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    a, b = net(real), net(fake)
                (a.float().square().mean() - b.float().mean()).backward()
                outs.append((a, b))
            assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])
            for (name, x), (_, y) in zip(d.named_buffers(), ref.named_buffers()):
                assert torch.equal(x, y), name
            for (name, p), (_, q) in zip(d.named_parameters(), ref.named_parameters()):
                scale = q.grad.abs().max()
                assert (p.grad - q.grad).abs().max() <= 1e-5 * scale, name
            with torch.no_grad():  # one optimiser-like update, the same on both
                for p, q in zip(d.parameters(), ref.parameters()):
                    p -= 0.1 * q.grad
                    q -= 0.1 * q.grad


def test_fast_spectral_norm_gradient_by_hand():
    """W/σ with σ = uᵀWv: the gradient of Σ C⊙(W/σ) is C/σ − (Σ C⊙W/σ²) u vᵀ (worked out on paper),
    for a 2x2 convolution weight in eval mode (no power iteration: u, v as stored)."""
    from pdd.archs import fast_spectral_norm
    conv = fast_spectral_norm(torch.nn.Conv2d(2, 2, 1, bias=False)).eval()
    w = torch.tensor([[3.0, 1.0], [0.5, 2.0]])
    u, v = torch.tensor([0.6, 0.8]), torch.tensor([0.8, 0.6])
    with torch.no_grad():
        conv.weight_orig.copy_(w.view(2, 2, 1, 1))
        conv.weight_u.copy_(u)
        conv.weight_v.copy_(v)
    sigma = 0.6 * (3 * 0.8 + 1 * 0.6) + 0.8 * (0.5 * 0.8 + 2 * 0.6)  # uᵀWv = 3.08
    c = torch.tensor([[1.0, -2.0], [0.25, 4.0]])
    x = torch.zeros(1, 2, 1, 1)  # the forward pre-hook computes conv.weight
    conv(x)
    assert torch.allclose(conv.weight.view(2, 2), w / sigma)
    (c.view(2, 2, 1, 1) * conv.weight).sum().backward()
    cw = float((c * w).sum())  # 3 - 2 + 0.125 + 8 = 9.125
    expected = c / sigma - cw / sigma ** 2 * torch.outer(u, v)
    assert torch.allclose(conv.weight_orig.grad.view(2, 2), expected, atol=1e-6)


def test_discriminator_keeps_spectral_norm_weights_contiguous_and_loads_torch_layout():
    torch.manual_seed(0)
    d = UNetDiscriminatorSN(3, num_feat=8).to(memory_format=torch.channels_last)
    assert all(p.is_contiguous() for n, p in d.named_parameters() if n.endswith("weight_orig"))
    assert d.conv0.weight.is_contiguous(memory_format=torch.channels_last)  # no spectral norm there
    ref = _torch_sn_twin(UNetDiscriminatorSN(3, num_feat=8))
    d.load_state_dict(ref.state_dict(), strict=True)  # torch's spectral_norm layout, as released
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        for _ in range(5):  # training-mode forwards: u, v converge from their random start
            d(x), ref(x)
        d.eval(), ref.eval()
        assert torch.allclose(d(x), ref(x), rtol=1e-4, atol=1e-6)
    torch.nn.utils.remove_spectral_norm(d.conv1)  # torch's own removal still works
    assert "conv1.weight" in d.state_dict() and "conv1.weight_orig" not in d.state_dict()


def test_vgg_autocast_weights_give_the_same_bits_under_autocast():
    import copy
    torch.manual_seed(0)
    a = VGG19Features(["conv1_2", "conv3_4", "conv4_1"])
    b = copy.deepcopy(a).autocast_weights_(torch.bfloat16)
    assert all(p.dtype == torch.bfloat16 for p in b.parameters())
    assert b.mean.dtype == b.std.dtype == torch.float32  # the normalisation is untouched
    x = torch.rand(2, 3, 32, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        for inp in (x, x.to(torch.bfloat16)):
            fa, fb = a(inp), b(inp)
            assert all(torch.equal(fa[k], fb[k]) for k in fa)
    assert a.autocast_weights_(None) is a and all(p.dtype == torch.float32 for p in a.parameters())
