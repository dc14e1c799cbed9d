"""Shake-Shake: alpha mixes the forward, an independent beta the backward; eval is deterministic at 0.5."""

from __future__ import annotations

import pytest
import torch

from cifar_pl.lit import ImageClassifier
from cifar_pl.models import create_model
from cifar_pl.models.shake_shake import ShakeShakeResNet, shake

from .helpers import run_cli


def _branches(n=6):
    g = torch.Generator().manual_seed(0)
    x1 = torch.randn(n, 3, 4, 4, generator=g, requires_grad=True)
    x2 = torch.randn(n, 3, 4, 4, generator=g, requires_grad=True)
    return x1, x2


def test_forward_mixes_with_alpha_backward_with_an_independent_beta():
    x1, x2 = _branches()
    torch.manual_seed(7)
    out = shake(x1, x2, "shake", "shake", "image")
    torch.manual_seed(7)  # the same draws, in the same order: alpha then beta, one per image
    alpha, beta = torch.rand(6, 1, 1, 1), torch.rand(6, 1, 1, 1)
    torch.testing.assert_close(out, alpha * x1 + (1 - alpha) * x2)
    out.backward(torch.ones_like(out))
    torch.testing.assert_close(x1.grad, beta.expand_as(x1))
    torch.testing.assert_close(x2.grad, (1 - beta).expand_as(x2))
    assert not torch.allclose(alpha, beta)
    assert len(torch.unique(alpha)) == 6  # image level: a coefficient per image


@pytest.mark.parametrize(
    "backward, expected", [("even", lambda a: torch.full_like(a, 0.5)), ("keep", lambda a: a)]
)
def test_even_and_keep_backward(backward, expected):
    x1, x2 = _branches()
    torch.manual_seed(3)
    out = shake(x1, x2, "shake", backward, "image")
    torch.manual_seed(3)
    alpha = torch.rand(6, 1, 1, 1)
    out.backward(torch.ones_like(out))
    torch.testing.assert_close(x1.grad, expected(alpha).expand_as(x1))
    torch.testing.assert_close(x2.grad, (1 - expected(alpha)).expand_as(x2))


def test_batch_level_and_even_forward():
    x1, x2 = _branches()
    torch.manual_seed(1)
    out = shake(x1, x2, "shake", "shake", "batch")
    torch.manual_seed(1)
    a = torch.rand(1).item()
    torch.testing.assert_close(out, a * x1 + (1 - a) * x2)
    torch.testing.assert_close(shake(x1, x2, "even", "even", "image"), 0.5 * (x1 + x2))


def test_eval_weighs_both_branches_half_and_is_deterministic():
    x1, x2 = _branches()
    torch.testing.assert_close(shake(x1, x2, training=False), 0.5 * (x1 + x2))
    net = create_model("shake_shake_26_2x32d", base_width=8).eval()
    x = torch.randn(3, 3, 32, 32)
    torch.testing.assert_close(net(x), net(x))
    net.train()
    assert not torch.allclose(net(x), net(x))


@pytest.mark.parametrize("width, params", [(32, 2_923_162), (64, 11_653_978), (96, 26_192_922)])
def test_parameter_counts_match_the_paper(width, params):
    # Gastaldi 2017, Table 1: 2.9M, 11.7M and 26.2M parameters.
    assert sum(p.numel() for p in create_model(f"shake_shake_26_2x{width}d").parameters()) == params


def test_bad_modes_are_refused():
    with pytest.raises(ValueError, match="backward must be one of shake, even, keep"):
        ShakeShakeResNet(backward="keepp")
    with pytest.raises(ValueError, match="6n\\+2"):
        ShakeShakeResNet(depth=27)


@pytest.mark.slow  # a training process (or several) of its own: the slow tier
def test_channels_last_and_compile_switches_run_on_cpu(cifar10_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli = run_cli(
        "fit",
        "quickstart",
        cifar10_root,
        "--model.net model_a --model.runtime.channels_last true "
        "--model.runtime.compile true --trainer.fast_dev_run true --data.batch_size 8",
    )
    net = cli.model.net
    assert net.features[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert cli.model._compiled and cli.trainer.global_step == 1
    # compiled in place: the state dict keeps the plain names, so checkpoints load into an uncompiled net
    assert all(not k.startswith("_orig_mod") for k in net.state_dict())
    plain = ImageClassifier(net="model_a")
    plain.load_state_dict(cli.model.state_dict())
