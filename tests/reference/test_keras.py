"""Write-up 003 ran Keras: its layers, optimiser and initialisation, run by Keras 3 itself (torch backend) on
the same inputs as cifar_pl's versions. ``python -m tests.reference.test_keras`` prints the base CNN's
20-step loss table."""

from __future__ import annotations

import math
import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from cifar_pl.data import CIFAR10DataModule  # noqa: E402
from cifar_pl.data.transforms import (  # noqa: E402
    PRESETS,
    batch_flip,
    keras_adjust_contrast,
    keras_angles,
    keras_contrast_range,
    keras_rotate,
)
from cifar_pl.lit import ImageClassifier  # noqa: E402
from cifar_pl.lit.optim import KerasRMSprop  # noqa: E402

assert keras.backend.backend() == "torch", "set KERAS_BACKEND=torch before keras is imported"


def nhwc(x: torch.Tensor) -> np.ndarray:
    return x.permute(0, 2, 3, 1).contiguous().numpy()


def nchw(y) -> torch.Tensor:
    return torch.as_tensor(keras.ops.convert_to_numpy(y)).permute(0, 3, 1, 2)


def deciles(values) -> np.ndarray:
    return np.quantile(np.asarray(values, dtype=np.float64).ravel(), np.linspace(0.1, 0.9, 9))


# ---- augmentation layers ---------------------------------------------------------------------------------


def test_random_flip_mirrors_half_the_images_each_as_keras_does():
    keras.utils.set_random_seed(0)
    torch.manual_seed(0)
    x = torch.rand(2000, 3, 4, 4)
    theirs = nchw(keras.layers.RandomFlip("horizontal")(nhwc(x), training=True))
    ours = batch_flip(x, 0.5, 3)
    for out in (theirs, ours):
        same = (out - x).abs().amax((1, 2, 3)) < 1e-6
        mirrored = (out - x.flip(3)).abs().amax((1, 2, 3)) < 1e-6
        assert bool((same | mirrored).all())  # each image whole, as it was or mirrored left-right
        assert abs(mirrored.float().mean().item() - 0.5) < 0.05
    assert PRESETS["keras_flip_rotate_contrast"][0] == {"name": "hflip"}


@pytest.mark.parametrize("fill_mode", ["reflect", "constant", "nearest", "wrap"])
@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
def test_random_rotation_at_a_fixed_angle_equals_keras(fill_mode, interpolation):
    # [a, a] makes Keras' draw a fixed angle: the deterministic core, compared pixel by pixel.
    torch.manual_seed(1)
    x = torch.rand(3, 3, 32, 32)
    for turn in (0.05, -0.03, 0.0123, 0.25):
        layer = keras.layers.RandomRotation((turn, turn), fill_mode=fill_mode, interpolation=interpolation,
                                            fill_value=0.3)  # fmt: skip
        theirs = nchw(layer(nhwc(x), training=True))
        ours = keras_rotate(x, torch.full((3,), turn * 360.0), fill_mode, interpolation, 0.3)
        assert (theirs - ours).abs().max().item() < 1e-5, (turn, fill_mode, interpolation)


def test_random_rotation_draws_its_angles_as_keras_does():
    keras.utils.set_random_seed(0)
    torch.manual_seed(0)
    images = np.zeros((4000, 8, 8, 3), "float32")
    theirs = keras.ops.convert_to_numpy(
        keras.layers.RandomRotation(0.05).get_random_transformation(images)["angle"]
    )
    ours = keras_angles(4000, 0.05, torch.device("cpu")).numpy()
    for a in (theirs, ours):
        assert -18 <= a.min() < -17.9 and 17.9 < a.max() <= 18  # 0.05 of a turn either way
    assert np.abs(deciles(theirs) - deciles(ours)).max() < 1.0  # both uniform: deciles within 1 degree


def test_random_contrast_factor_range_is_kerass():
    keras.utils.set_random_seed(0)
    torch.manual_seed(0)
    images = np.zeros((4000, 4, 4, 3), "float32")
    layer = keras.layers.RandomContrast((0.8, 1.2))
    theirs = keras.ops.convert_to_numpy(layer.get_random_transformation(images)["contrast_factor"]).ravel()
    assert theirs.shape == (4000,)  # Keras 3: one factor per image
    low, high = keras_contrast_range((0.8, 1.2))
    assert (low, high) == pytest.approx((0.2, 2.2))  # [1 - 0.8, 1 + 1.2], not +-20%
    assert 0.2 <= theirs.min() < 0.21 and 2.19 < theirs.max() <= 2.2
    ours = torch.empty(4000).uniform_(low, high).numpy()
    assert np.abs(deciles(theirs) - deciles(ours)).max() < 0.06
    step = {s["name"]: s for s in PRESETS["flip_rotate_contrast20"]}["keras_contrast"]
    assert keras_contrast_range(step["factor"]) == pytest.approx(
        (0.8, 1.2)
    )  # what the author's comment meant


@pytest.mark.parametrize("factor", [0.2, 0.7, 1.0, 1.6, 2.2])
def test_contrast_at_a_fixed_factor_equals_keras(factor):
    # Images in [0, 1], as after the write-up's Rescaling(1/255): Keras clips to its value_range (0, 255), so
    # values above 1 stay and only values below 0 are cut.
    torch.manual_seed(2)
    x = torch.rand(4, 3, 8, 8)
    layer = keras.layers.RandomContrast((0.8, 1.2))
    f = np.full((4, 1, 1, 1), factor, "float32")
    theirs = nchw(layer.transform_images(keras.ops.convert_to_tensor(nhwc(x)), {"contrast_factor": f}))
    ours = keras_adjust_contrast(x, torch.full((4,), factor))
    assert (theirs - ours).abs().max().item() < 1e-5
    if factor > 1.5:
        assert ours.max() > 1.05 and ours.min() == 0  # unclipped above, clipped below


def test_rescaling_is_the_rescale_stats():
    x = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    theirs = nchw(keras.layers.Rescaling(1 / 255.0)(nhwc(x.float())))
    ours = CIFAR10DataModule(stats="rescale").normalize(x)
    assert (theirs - ours).abs().max().item() < 1e-6


# ---- optimiser and initialisation ------------------------------------------------------------------------


def _keras_rmsprop_run(grads, start, **kwargs):
    var = keras.Variable(start.numpy())
    opt = keras.optimizers.RMSprop(**kwargs)
    out = []
    for g in grads:
        opt.apply_gradients([(keras.ops.convert_to_tensor(g.numpy()), var)])
        out.append(torch.as_tensor(keras.ops.convert_to_numpy(var)).clone())
    return out


def _torch_run(opt_cls, grads, start, **kwargs):
    p = torch.nn.Parameter(start.clone())
    opt = opt_cls([p], **kwargs)
    out = []
    for g in grads:
        p.grad = g.clone()
        opt.step()
        out.append(p.detach().clone())
    return out


@pytest.mark.parametrize(
    "keras_args, ours_args",
    [
        ({}, {}),  # what compile() without an optimiser runs: lr 0.001, rho 0.9, eps 1e-7
        ({"momentum": 0.9, "weight_decay": 0.01, "learning_rate": 0.01}, {"momentum": 0.9, "weight_decay": 0.01, "lr": 0.01}),
    ],
)  # fmt: skip
def test_rmsprop_keras_steps_as_keras(keras_args, ours_args):
    torch.manual_seed(0)
    start = torch.randn(500)
    # gradients of several sizes, the small ones where eps matters
    grads = [torch.randn(500) * 10.0 ** torch.randint(-6, 0, (500,)) for _ in range(20)]
    theirs = _keras_rmsprop_run(grads, start, **keras_args)
    ours = _torch_run(KerasRMSprop, grads, start, **ours_args)
    for t, o in zip(theirs, ours, strict=True):
        torch.testing.assert_close(o, t, rtol=1e-5, atol=1e-7)
    if not keras_args:  # torch's RMSprop (eps outside the root) is a different optimiser
        torchs = _torch_run(torch.optim.RMSprop, grads, start, lr=1e-3, alpha=0.9, eps=1e-7)
        moved_k, moved_t = theirs[-1] - start, torchs[-1] - start
        assert (moved_t - moved_k).norm() / moved_k.norm() > 0.2


def test_glorot_uniform_and_zero_biases_are_kerass_conv_and_dense_defaults():
    conv, dense = keras.layers.Conv2D(32, (3, 3)), keras.layers.Dense(64)
    for layer in (conv, dense):
        cfg = layer.get_config()
        assert cfg["kernel_initializer"]["class_name"] == "GlorotUniform"
        assert cfg["bias_initializer"]["class_name"] == "Zeros"
    keras.utils.set_random_seed(0)
    theirs = keras.ops.convert_to_numpy(keras.initializers.GlorotUniform()((3, 3, 3, 32)))
    torch.manual_seed(0)
    ours = ImageClassifier(net="base_cnn", init={"scheme": "keras"}).net.features[0].weight.detach().numpy()
    limit = math.sqrt(6 / (27 + 288))  # fans: 3x3x3 in, 3x3x32 out
    for w in (theirs, ours):
        assert np.abs(w).max() <= limit and np.abs(w).max() > 0.97 * limit
    assert np.abs(deciles(theirs) - deciles(ours)).max() < 0.05 * limit


# ---- the write-up-003 base CNN, trained by both --------------------------------------------------------


def keras_base_cnn():
    """The write-up's model, as its notebook builds it (Keras 3 syntax: an Input instead of input_shape)."""
    L = keras.layers
    cnn = keras.Sequential([
        keras.Input((32, 32, 3)),
        L.Conv2D(32, (3, 3), activation="relu"), L.MaxPooling2D((2, 2)),
        L.Conv2D(64, (3, 3), activation="relu"), L.MaxPooling2D((2, 2)),
        L.Conv2D(64, (3, 3), activation="relu"),
        L.Flatten(), L.Dense(64, activation="relu"), L.Dense(10), L.Softmax(),
    ])  # fmt: skip
    model = keras.Sequential([keras.Input((32, 32, 3)), L.Rescaling(1 / 255.0), cnn])
    model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])  # no optimiser: RMSprop
    return model


def copy_keras_weights(model, net: torch.nn.Module) -> None:
    """Keras' initial weights into cifar_pl's base_cnn: kernels to torch's layout, and the first dense layer's
    rows reordered, since Keras flattens H x W x C and torch C x H x W."""
    k = model.layers[1].get_weights()
    convs = [m for m in net.features if isinstance(m, torch.nn.Conv2d)]
    dense = [m for m in [*net.head, net.classifier] if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():
        for i, conv in enumerate(convs):
            conv.weight.copy_(torch.as_tensor(k[2 * i]).permute(3, 2, 0, 1))
            conv.bias.copy_(torch.as_tensor(k[2 * i + 1]))
        w0 = torch.as_tensor(k[6])  # (1024, 64), rows in (h, w, c) order of the 4 x 4 x 64 map
        dense[0].weight.copy_(w0.view(4, 4, 64, 64).permute(3, 2, 0, 1).reshape(64, 1024))
        dense[0].bias.copy_(torch.as_tensor(k[7]))
        dense[1].weight.copy_(torch.as_tensor(k[8]).T)
        dense[1].bias.copy_(torch.as_tensor(k[9]))


def training_batches(n_steps: int = 20, batch: int = 32):
    """Real CIFAR-10 training images where the shared data is, else seeded random ones."""
    from tests.helpers import REPO

    root = os.environ.get("CIFAR_PL_DATA", str(REPO.parent / "shared" / "data"))
    n = n_steps * batch
    try:
        dm = CIFAR10DataModule(data_dir=root, val_size=0.1, stats="rescale")
        dm.setup("fit")
        x, y = dm.train_set.take(slice(0, n)), dm.train_set.labels[:n]
    except Exception:  # no real data here: the comparison holds on any images
        g = torch.Generator().manual_seed(0)
        x, y = (
            torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g),
            torch.randint(0, 10, (n,), generator=g),
        )
    return [(x[i : i + batch], y[i : i + batch]) for i in range(0, n, batch)]


def base_cnn_losses(n_steps: int = 20, optimizer: str = "rmsprop_keras", dtype: str = "float64"):
    """Losses of the 20 steps through Keras' train_on_batch and through cifar_pl's training step, from the same
    initial weights (Keras' Glorot draw copied over), in ``dtype``."""
    floatx, policy = keras.config.floatx(), keras.config.dtype_policy()
    keras.config.set_floatx(dtype)
    keras.config.set_dtype_policy(dtype)  # the global policy, once read, no longer follows floatx
    try:
        keras.utils.set_random_seed(0)
        model = keras_base_cnn()
    finally:
        keras.config.set_floatx(floatx)
        keras.config.set_dtype_policy(policy)
    torch.manual_seed(0)
    lit = ImageClassifier(net="base_cnn", optim={"name": optimizer, "lr": 1e-3, "weight_decay": 0.0}, schedule={"name": "constant"}, init={"scheme": "keras"}).to(getattr(torch, dtype))  # fmt: skip
    copy_keras_weights(model, lit.net)
    from types import SimpleNamespace

    lit._trainer = SimpleNamespace(num_training_batches=float("inf"))  # the provisional plan: LR factor 1
    opt = lit.configure_optimizers()["optimizer"]
    lit._trainer = None  # the step's self.log() is then a no-op
    dm = CIFAR10DataModule(stats="rescale")
    theirs, ours = [], []
    for i, (x, y) in enumerate(training_batches(n_steps)):
        out = model.train_on_batch(nhwc(x.to(getattr(torch, dtype))), y.numpy())
        theirs.append(float(out[0] if isinstance(out, (list, tuple)) else out))
        lit.train()
        loss = lit.training_step((dm.normalize(x).to(getattr(torch, dtype)), y), i)
        opt.zero_grad()
        loss.backward()
        opt.step()
        ours.append(loss.item())
    return theirs, ours


def test_base_cnn_has_kerass_parameter_count():
    model = keras_base_cnn()
    assert model.count_params() == 122_570
    assert sum(p.numel() for p in ImageClassifier(net="base_cnn").net.parameters()) == 122_570


def test_base_cnn_trains_20_steps_as_keras_does():
    # In float64: in float32 both runs agree to 1e-7 for about ten steps, then a near-zero gradient whose
    # rounding differs is scaled up to a full step by RMSprop's normalisation, and the two drift apart
    # (``python -m tests.reference.test_keras`` prints both tables).
    # Keras reports each step's loss through a float32 metric: 3e-7 relative is that rounding, at every step.
    theirs, ours = base_cnn_losses()
    np.testing.assert_allclose(ours, theirs, rtol=3e-7)
    _, torchs = base_cnn_losses(optimizer="rmsprop")  # torch's RMSprop from the same start: another run
    assert max(abs(t - k) / k for t, k in zip(torchs, theirs, strict=True)) > 1e-4


if __name__ == "__main__":
    for dtype in ("float64", "float32"):
        keras_l, ours_l = base_cnn_losses(dtype=dtype)
        _, torch_l = base_cnn_losses(optimizer="rmsprop", dtype=dtype)
        print(f"\n{dtype}")
        print(
            "| step | Keras 3.15.1 train_on_batch | cifar_pl rmsprop_keras | rel. diff | cifar_pl rmsprop (torch) | rel. diff |"
        )
        print("| ---: | ---: | ---: | ---: | ---: | ---: |")
        for i, (k, o, t) in enumerate(zip(keras_l, ours_l, torch_l, strict=True), 1):
            print(f"| {i} | {k:.6f} | {o:.6f} | {abs(o - k) / k:.1e} | {t:.6f} | {abs(t - k) / k:.1e} |")
