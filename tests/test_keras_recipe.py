"""Write-up 003 as its author ran it in Keras: every training image trained on, the test set scored after every
epoch (Keras' validation_data), Keras' RMSprop and initialisation, the augmentation presets."""

from __future__ import annotations

from cifar_pl.viz.curves import read_scalars

from .helpers import run_cli


def test_with_nothing_validated_the_test_curve_comes_after_every_training_epoch(cifar10_root, tmp_path):
    cli = run_cli("fit", "model_a", cifar10_root,
                  "--experiment keras --trainer.max_epochs 2 --data.batch_size 32 --data.val_size 0 "
                  "--checkpoint.monitor null --trainer.callbacks+=cifar_pl.callbacks.EvaluateEachEpoch",
                  cwd=tmp_path)  # fmt: skip
    assert len(cli.datamodule.val_set) == 0 and len(cli.datamodule.train_set) == 144  # every image trains
    curve = read_scalars(tmp_path / "lightning_logs" / "keras")
    assert [e for e, _ in curve["clean_test/acc"]] == [0, 1]  # once per epoch, not twice
    assert "val/acc" not in curve
