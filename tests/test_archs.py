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
