"""Zhang et al. 2017 corruptions: labels, pixel permutations, Gaussian images, as DataModule options."""

from __future__ import annotations

import math
import re

import pytest
import torch

from cifar_pl.data import CIFAR10DataModule
from cifar_pl.data.corrupt import (
    channel_stats_255,
    corrupt_labels,
    gaussian_images,
    gaussian_per_image,
    permute_pixels,
    pixel_permutation,
    random_pixels,
)


@pytest.mark.parametrize("p", [0.0, 0.2, 0.5, 0.8, 1.0])
def test_label_corruption_changes_the_expected_fraction(p):
    k, n = 10, 20000
    labels = torch.arange(n) % k
    out = corrupt_labels(labels, p, k, torch.Generator().manual_seed(0))
    changed = (out != labels).float().mean().item()
    expected = p * (k - 1) / k
    sigma = math.sqrt(max(expected * (1 - expected), 1e-12) / n)
    assert abs(changed - expected) <= 4 * sigma + 1e-9
    assert set(out.unique().tolist()) == set(range(k))
    assert torch.equal(out, corrupt_labels(labels, p, k, torch.Generator().manual_seed(0)))
    if p > 0:
        assert not torch.equal(out, corrupt_labels(labels, p, k, torch.Generator().manual_seed(1)))


def _images(n=6, seed=0):
    return torch.randint(
        0, 256, (n, 3, 32, 32), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8
    )


def _same_multiset(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Each image's pixels (as RGB triples) are the same multiset in ``a`` and ``b``."""

    def key(x):
        px = x.flatten(2).transpose(1, 2).long()  # N x HW x 3
        code = px[..., 0] * 65536 + px[..., 1] * 256 + px[..., 2]
        return code.sort(dim=1).values

    return torch.equal(key(a), key(b))


def test_pixel_permutations_keep_each_images_pixels():
    x = _images()
    perm = pixel_permutation(32, 32, torch.Generator().manual_seed(0))
    shuffled = permute_pixels(x, perm)
    assert _same_multiset(shuffled, x) and not torch.equal(shuffled, x)
    # one permutation for all: image i's pixel j comes from position perm[j] of image i
    assert torch.equal(shuffled.flatten(2), x.flatten(2)[:, :, perm])
    per_image = random_pixels(x, torch.Generator().manual_seed(0))
    assert _same_multiset(per_image, x)
    # the same image twice gets two different permutations
    twin = torch.cat([x[:1], x[:1]])
    out = random_pixels(twin, torch.Generator().manual_seed(0))
    assert not torch.equal(out[0], out[1]) and _same_multiset(out, twin)


def _classed_images(n: int = 200) -> tuple[torch.Tensor, torch.Tensor]:
    """Images whose class shows only in their brightness and contrast (class k: mean 60 + 15k, std 10 + 4k)."""
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(n) % 10
    mean = (60 + 15 * labels).view(n, 1, 1, 1).float()
    std = (10 + 4 * labels).view(n, 1, 1, 1).float()
    x = (torch.randn(n, 3, 32, 32, generator=gen) * std + mean).clamp(0, 255).to(torch.uint8)
    return x, labels


def _centroid_accuracy(images: torch.Tensor, labels: torch.Tensor) -> float:
    """Nearest-centroid accuracy on each image's (mean, std): how much class information those statistics keep."""
    feats = torch.stack([images.float().mean((1, 2, 3)), images.float().std((1, 2, 3))], 1)
    centroids = torch.stack([feats[labels == k].mean(0) for k in range(10)])
    return float((torch.cdist(feats, centroids).argmin(1) == labels).float().mean())


def test_gaussian_per_image_matches_each_images_mean_and_std():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(8, 3, 32, 32, generator=gen) * torch.linspace(10, 40, 8).view(8, 1, 1, 1) + 128
    x = x.clamp(0, 255).to(torch.uint8)
    g = gaussian_per_image(x, torch.Generator().manual_seed(1)).float()
    xf = x.float()
    torch.testing.assert_close(g.mean((2, 3)), xf.mean((2, 3)), atol=4.0, rtol=0)
    torch.testing.assert_close(g.std((2, 3)), xf.std((2, 3)), atol=3.0, rtol=0.1)
    assert not torch.equal(g, xf)


def test_gaussian_images_match_the_dataset_and_carry_no_class_information():
    x, labels = _classed_images()
    mean, std = channel_stats_255(x)
    torch.testing.assert_close(mean, x.double().mean((0, 2, 3)).float())
    torch.testing.assert_close(std, x.double().permute(1, 0, 2, 3).flatten(1).std(1, unbiased=False).float())
    g = gaussian_images(x, torch.Generator().manual_seed(1))
    gm, gs = channel_stats_255(g)
    torch.testing.assert_close(gm, mean, atol=0.5, rtol=0)
    torch.testing.assert_close(gs, std, atol=0.5, rtol=0.01)
    # every image is drawn from the same distribution: its own statistics no longer tell its class
    assert _centroid_accuracy(x, labels) > 0.9
    assert _centroid_accuracy(gaussian_per_image(x, torch.Generator().manual_seed(1)), labels) > 0.9
    assert _centroid_accuracy(g, labels) < 0.25


def test_datamodule_corruptions_train_val_test(cifar10_root):
    clean = CIFAR10DataModule(str(cifar10_root), val_size=24)
    clean.setup("fit")
    clean.setup("test")
    shuffled = CIFAR10DataModule(str(cifar10_root), val_size=24, corrupt="shuffled_pixels", corrupt_seed=3)
    shuffled.setup("fit")
    shuffled.setup("test")
    perm = pixel_permutation(32, 32, torch.Generator().manual_seed(3))
    for a, b in (
        (clean.train_set, shuffled.train_set),
        (clean.val_set, shuffled.val_set),
        (clean.test_set, shuffled.test_set),
    ):
        assert torch.equal(permute_pixels(a.images, perm), b.images) and torch.equal(a.labels, b.labels)
    assert shuffled.hparams.corrupt == "shuffled_pixels" and shuffled.hparams.corrupt_seed == 3
    # label noise: training and (by default) validation labels, never the test labels; fixed by the seed
    noisy = CIFAR10DataModule(str(cifar10_root), val_size=24, corrupt="labels", corrupt_prob=1.0)
    noisy.setup("fit")
    noisy.setup("test")
    assert torch.equal(noisy.train_set.images, clean.train_set.images)
    assert (noisy.train_set.labels != clean.train_set.labels).float().mean() > 0.6
    assert not torch.equal(noisy.val_set.labels, clean.val_set.labels)
    assert torch.equal(noisy.test_set.labels, clean.test_set.labels)
    again = CIFAR10DataModule(str(cifar10_root), val_size=24, corrupt="labels", corrupt_prob=1.0)
    again.setup("fit")
    assert torch.equal(again.train_set.labels, noisy.train_set.labels)
    # a clean validation split on request; random pixels and gaussian leave the test set alone
    for kind in ("random_pixels", "gaussian", "gaussian_per_image"):
        dm = CIFAR10DataModule(str(cifar10_root), val_size=24, corrupt=kind, corrupt_val=False, train_size=50)
        dm.setup("fit")
        dm.setup("test")
        assert len(dm.train_set) == 50 and not torch.equal(dm.train_set.images, clean.train_set.images[:50])
        assert torch.equal(dm.val_set.images, clean.val_set.images)
        assert torch.equal(dm.test_set.images, clean.test_set.images)
        if kind == "gaussian":  # noise with the statistics of the clean training subset it replaces
            clean50 = CIFAR10DataModule(str(cifar10_root), val_size=24, train_size=50)
            clean50.setup("fit")
            want_mean, want_std = channel_stats_255(clean50.train_set.images)
            torch.testing.assert_close(dm._gauss_stats, (want_mean, want_std))
            # (the fixture's uniform pixels clip at 0 and 255, so only the mean survives the draw unchanged)
            torch.testing.assert_close(channel_stats_255(dm.train_set.images)[0], want_mean, atol=1.5, rtol=0)
    with pytest.raises(
        ValueError, match=re.escape("corrupt: unknown value 'noise'. Did you mean 'none'? Choose one of")
    ):
        CIFAR10DataModule(str(cifar10_root), corrupt="noise")
