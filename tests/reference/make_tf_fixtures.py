"""Writes tf_fixtures.json: what TensorFlow and TF Keras 2 (the library write-up 003's notebook ran) do with
fixed inputs, for the tests in test_tensorflow.py. TensorFlow is not a dependency of this project (it is 270 MB);
run this where it is installed, e.g.

    python -m venv /tmp/tf && /tmp/tf/bin/pip install tensorflow-cpu tf_keras numpy
    /tmp/tf/bin/python tests/reference/make_tf_fixtures.py

It records: TF Keras 2's RandomRotation(reflect, bilinear) at fixed angles, its RandomContrast((0.8, 1.2)) on a
batch (one factor per call), tf.image.adjust_saturation at several factors, and the write-up's own
RandomSaturation layer run through model.fit as the notebook runs it (which seeds its graph uses).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ["TF_USE_LEGACY_KERAS"] = "1"  # tf.keras is Keras 2, as in the write-up's Colab

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402
from tf_keras import layers  # noqa: E402

OUT = Path(__file__).with_name("tf_fixtures.json")


def arr(x) -> list:
    return np.round(np.asarray(x, dtype=np.float64), 6).tolist()


def main() -> None:
    rng = np.random.default_rng(0)
    fix: dict = {"tensorflow": tf.__version__, "tf_keras": keras.__version__}

    images = rng.random((2, 8, 8, 3)).astype("float32")
    rot = {"images": arr(images), "turns": [0.05, -0.03, 0.0123], "outputs": []}
    for a in rot["turns"]:
        layer = layers.RandomRotation((a, a), fill_mode="reflect", interpolation="bilinear")
        rot["outputs"].append(arr(layer(images, training=True)))
    fix["rotation"] = rot

    batch = rng.random((16, 4, 4, 3)).astype("float32")
    out = layers.RandomContrast((0.8, 1.2))(batch, training=True).numpy()
    fix["contrast"] = {"images": arr(batch), "outputs": arr(out)}

    pixels = np.concatenate(
        [
            rng.random((60, 3)),
            [[1, 0, 0], [0, 0, 0], [1, 1, 1], [0.5, 0.5, 0.5], [0.2, 0.6, 0.4], [0, 0.1, 0.05]],
        ]
    ).astype("float32")[None]
    factors = [0.3, 0.5, 1.0, 1.797, 2.0, 5.0]
    fix["saturation"] = {
        "pixels": arr(pixels[0]),
        "factors": factors,
        "outputs": [arr(tf.image.adjust_saturation(pixels, f)[0]) for f in factors],
    }

    # The write-up's layer, word for word, then the notebook's calls: five previews, then fit (graph mode).
    used: list[int] = []

    class RandomSaturation(layers.Layer):
        def __init__(self, lower, upper, seed=None, **kwargs):
            super().__init__(**kwargs)
            self.lower = lower
            self.upper = upper
            self.seed = seed or 0

        def call(self, x, training=True):
            if training:
                self.seed += 1
                tf.py_function(lambda s: used.append(int(s)), [tf.constant(self.seed)], [])
                return tf.image.stateless_random_saturation(x, self.lower, self.upper, (self.seed, self.seed))
            return x

    aug = RandomSaturation(0.5, 2)
    pre = layers.Rescaling(1 / 255.0)
    train = rng.integers(0, 256, (100, 32, 32, 3)).astype("uint8")
    labels = rng.integers(0, 10, (100, 1))
    for i in range(5):
        aug(pre(train[i]), training=True)
    previews = list(used)
    cnn = keras.Sequential([layers.Conv2D(4, 3, activation="relu", input_shape=(32, 32, 3)), layers.Flatten(),
                            layers.Dense(10), layers.Softmax()])  # fmt: skip
    model = keras.Sequential([pre, aug, keras.models.clone_model(cnn)])
    model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(train, labels, batch_size=32, epochs=2, validation_data=(train[:20], labels[:20]), verbose=0)
    fit_seeds = sorted(set(used[len(previews) :]))
    draw = {
        s: float(tf.random.stateless_uniform([], seed=(s, s), minval=0.5, maxval=2.0)) for s in range(1, 10)
    }
    probe = tf.constant(pixels)
    same = all(
        np.allclose(tf.image.stateless_random_saturation(probe, 0.5, 2, (s, s)), tf.image.adjust_saturation(probe, draw[s]),
                    atol=1e-6)
        for s in draw
    )  # fmt: skip
    fix["saturation_layer"] = {
        "preview_seeds": previews,
        "fit_steps": len(used) - len(previews),
        "fit_seeds": fit_seeds,
        "factor_of_seed": {str(s): round(f, 6) for s, f in draw.items()},
        "stateless_random_saturation_is_adjust_at_that_factor": bool(same),
        "optimizer": {k: (float(v) if isinstance(v, (np.floating, float)) else v)
                      for k, v in model.optimizer.get_config().items() if k in ("name", "learning_rate", "rho", "epsilon", "momentum", "centered")},
    }  # fmt: skip
    OUT.write_text(json.dumps(fix, separators=(",", ":")) + "\n")
    print(
        f"wrote {OUT} ({OUT.stat().st_size} bytes): fit used seeds {fit_seeds} for {fix['saturation_layer']['fit_steps']} steps"
    )


if __name__ == "__main__":
    main()
