"""Every registered net shows the same face; the registry finds them by name."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from cifar_pl.models import ClassifierNet, create_model, list_models, register_model
from cifar_pl.models.vgg import NoisyBatchNorm

ALL = list_models()


def test_registry_lists_every_family():
    for name in [
        "model_a",
        "model_g",
        "model_gap",
        "base_cnn",
        "base_cnn_deep",
        "base_cnn_k5",
        "base_cnn_wide",
        "stacked_pairs",
        "stacked_pairs_bn",
        "resnet20",
        "resnet32",
        "resnet44",
        "resnet56",
        "resnet110",
        "vgg_like",
        "vgg_like_bn",
        "vgg_like_bn_noise",
    ]:
        assert name in ALL


def test_unknown_net_names_the_valid_ones():
    with pytest.raises(ValueError) as e:
        create_model("resnet21")
    msg = str(e.value)
    assert "Unknown net 'resnet21'" in msg and "resnet20" in msg and "model_gap" in msg


def test_register_twice_is_refused():
    def model_a(num_classes=10):
        return None

    with pytest.raises(ValueError, match="already registered"):
        register_model(model_a)


@pytest.mark.parametrize("name", ALL)
def test_output_shape_and_gradients_reach_every_parameter(name):
    torch.manual_seed(0)
    net = create_model(name, num_classes=7).train()
    x = torch.randn(4, 3, 32, 32)
    out = net(x)
    assert out.shape == (4, 7)
    # Logits, not probabilities: rows do not sum to one.
    assert not torch.allclose(out.softmax(1).sum(1), out.sum(1))
    out.logsumexp(1).mean().backward()
    for pname, p in net.named_parameters():
        if not p.requires_grad:  # only the speed net freezes some: its whitening filters, its BN scales
            assert name == "speednet" and (
                pname == "features.0.weight" or pname.endswith(".weight") and p.ndim == 1
            )
            continue
        assert p.grad is not None, f"{name}: no gradient reaches {pname}"
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, f"{name}: zero gradient at {pname}"


@pytest.mark.parametrize("name", ALL)
def test_common_interface(name):
    net = create_model(name, num_classes=10).eval()
    assert isinstance(net, ClassifierNet)
    x = torch.randn(2, 3, 32, 32)
    feats = net.forward_features(x)
    assert feats.dim() == 4 and feats.shape[0] == 2
    torch.testing.assert_close(net.forward_head(feats), net(x))
    assert net.forward_head(feats, pre_logits=True).shape == (2, net.num_features)
    clf = net.get_classifier()
    assert isinstance(clf, nn.Linear) and clf.in_features == net.num_features and clf.out_features == 10
    net.reset_classifier(3)
    assert net(x).shape == (2, 3) and net.num_classes == 3
    net.reset_classifier(0)
    assert net(x).shape == (2, net.num_features)


# the speed net's head is a global max pool: any image size, though not average pooling for CAMs
@pytest.mark.parametrize("name", [n for n in ALL if create_model(n).global_pool or n == "speednet"])
def test_global_pool_nets_take_any_image_size(name):
    net = create_model(name, num_classes=10).eval()
    assert net.fixed_input_size is None
    for h, w in [(32, 20), (64, 48), (40, 40)]:
        assert net(torch.randn(1, 3, h, w)).shape == (1, 10)


@pytest.mark.parametrize("name", [n for n in ALL if not create_model(n).global_pool and n != "speednet"])
def test_flatten_nets_declare_their_input_size(name):
    assert create_model(name).fixed_input_size == (32, 32)


@pytest.mark.parametrize("name, params, num_features", [
    ("model_a", 1_180, 80),        # conv 3->5, conv 5->5, linear 80->10
    ("model_e", 464_750, 640),
    ("model_gap", 461_150, 160),
    ("base_cnn", 122_570, 64),     # the TensorFlow tutorial's count
    ("stacked_pairs", 307_498, 2048),
    ("resnet20", 269_722, 64),     # He et al.: 0.27M
    ("resnet56", 853_018, 64),     # 0.85M
    ("resnet110", 1_727_962, 64),  # 1.7M
])  # fmt: skip
def test_parameter_counts_match_the_reference_designs(name, params, num_features):
    net = create_model(name)
    assert sum(p.numel() for p in net.parameters()) == params
    assert net.num_features == num_features


def test_option_a_shortcut_has_no_parameters():
    net = create_model("resnet20")
    assert not any("shortcut" in n for n, _ in net.named_parameters())


def test_dropout_and_batchnorm_where_the_presets_say():
    def count(net, kind):
        return sum(isinstance(m, kind) for m in net.modules())

    assert count(create_model("model_e"), nn.BatchNorm2d) == 0
    assert (
        count(create_model("model_f"), nn.BatchNorm2d) == 8
        and count(create_model("model_f"), nn.Dropout) == 0
    )
    g = create_model("model_g")
    assert [m.p for m in g.modules() if isinstance(m, nn.Dropout)] == [0.1, 0.2, 0.3, 0.4]
    assert count(create_model("vgg_like"), nn.BatchNorm2d) == 0
    assert (
        count(create_model("vgg_like_bn"), nn.BatchNorm2d) == 8
        and count(create_model("vgg_like_bn"), nn.BatchNorm1d) == 2
    )
    assert all(
        isinstance(m, nn.Sigmoid)
        for m in create_model("model_c").features
        if not isinstance(m, (nn.Conv2d, nn.MaxPool2d))
    )


def test_noisy_batchnorm_changes_every_training_step_and_is_off_at_eval():
    torch.manual_seed(0)
    nbn = NoisyBatchNorm(nn.BatchNorm2d(4), noise_mean=0.5, noise_scale=2.0, noise_mode="channel")
    x = torch.randn(16, 4, 5, 5)
    a, b, plain = nbn(x), nbn(x), nbn.bn(x)
    assert not torch.allclose(a, b) and not torch.allclose(a, plain)
    # The noise is a per-channel shift and scale: within a channel, outputs stay an affine map of the clean ones.
    ratio = (a - a.mean((0, 2, 3), keepdim=True)) / (plain - plain.mean((0, 2, 3), keepdim=True))
    assert torch.allclose(ratio, ratio[:1, :, :1, :1].expand_as(ratio), atol=1e-3)
    assert ((ratio[0, :, 0, 0] >= 1) & (ratio[0, :, 0, 0] <= 2)).all()
    nbn.eval()
    torch.testing.assert_close(nbn(x), nbn.bn(x))


def test_santurkar_noise_is_per_activation_and_its_distribution_moves_each_step():
    torch.manual_seed(0)
    nbn = NoisyBatchNorm(nn.BatchNorm1d(8), noise_mean=0.5, noise_scale=2.0, noise_std=0.5)
    x = torch.randn(4096, 8)
    plain = nbn.bn(x)
    # one step: y = x * a + b with a, b drawn per activation and sample; regress y on x per column to read
    # the step's mu_a (slope) and mu_b (intercept); the residual spread shows the per-activation noise
    stats = []
    for _ in range(6):
        y = nbn(x)
        slope = ((y - y.mean(0)) * (plain - plain.mean(0))).mean(0) / plain.var(0, unbiased=False)
        intercept = y.mean(0) - slope * plain.mean(0)
        residual = y - (slope * plain + intercept)
        assert residual.std() > 0.01  # not an affine map of the clean output: noise per activation
        # one distribution per layer and step: every column of the step shares mu_a and mu_b
        assert (slope.max() - slope.min()) < 0.15 and (intercept.max() - intercept.min()) < 0.15
        assert 0.9 < float(slope.mean()) < 2.1 and abs(float(intercept.mean())) < 0.6
        stats.append((float(slope.mean()), float(intercept.mean())))
    assert len({round(a, 2) for a, _ in stats}) > 3 and len({round(b, 2) for _, b in stats}) > 3
    nbn.eval()
    torch.testing.assert_close(nbn(x), nbn.bn(x))
    with pytest.raises(ValueError, match="noise_mode"):
        NoisyBatchNorm(nn.BatchNorm1d(8), noise_mode="layer")


def test_vgg_width_scales_every_layer():
    full, quarter = create_model("vgg_like_bn"), create_model("vgg_like_bn", width=0.25)
    widths = [m.out_channels for m in full.modules() if isinstance(m, nn.Conv2d)]
    assert [m.out_channels for m in quarter.modules() if isinstance(m, nn.Conv2d)] == [w // 4 for w in widths]
    assert quarter.num_features == full.num_features // 4 == 128
    assert quarter(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_noisy_vgg_is_deterministic_at_eval():
    net = create_model("vgg_like_bn_noise").eval()
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(net(x), net(x))
