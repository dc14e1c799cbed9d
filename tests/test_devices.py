"""Every place where a tensor meets a module outside Lightning's own loop puts it on the module's device and dtype:
checked on this CPU with a model on a pretended CUDA device (tests/helpers/fake_cuda.py), where a mismatch raises the
same error a GPU would, and with bf16 weights for dtype."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from pytorch_lightning.loggers import TensorBoardLogger

from cifar_pl.callbacks import DataPreview, EndOfTestReport
from cifar_pl.data import CIFAR10DataModule
from cifar_pl.lit import ImageClassifier

from .helpers.fake_cuda import PretendCuda
from .helpers.hostile import write_checkpoint


class _Logger(TensorBoardLogger):
    """Records what would go to TensorBoard."""

    def __init__(self):
        self.figures: dict[str, object] = {}

    @property
    def experiment(self):
        return SimpleNamespace(add_figure=lambda tag, fig, global_step=0: self.figures.__setitem__(tag, fig))


def _trainer(dm, logger):
    return SimpleNamespace(datamodule=dm, loggers=[logger], sanity_checking=False, global_step=5)


@pytest.fixture()
def data(cifar10_root):
    dm = CIFAR10DataModule(str(cifar10_root), val_size=24, augment="standard")
    dm.setup("fit")
    dm.setup("test")
    return dm


def test_the_end_of_test_report_runs_on_the_models_device(data):
    # fit ends with test, and test ends with this report: the model is on the GPU, the test images in memory
    model = ImageClassifier(net="model_gap", num_classes=10, class_names=data.classes).eval()
    logger = _Logger()
    with PretendCuda():
        model.to("cuda")
        EndOfTestReport(n_cams=4, n_mistakes=4).on_test_end(_trainer(data, logger), model)
    assert {"test/confusion", "test/mistakes", "test/cams", "test/channels"} <= set(logger.figures)


def test_the_report_with_bf16_weights_computes_in_their_dtype_and_draws_in_float32(data):
    model = (
        ImageClassifier(net="model_gap", num_classes=10, class_names=data.classes).eval().to(torch.bfloat16)
    )
    logger = _Logger()
    EndOfTestReport(n_cams=2, n_mistakes=2).on_test_end(_trainer(data, logger), model)
    assert "test/cams" in logger.figures


def test_the_preview_and_the_batches_on_the_device(data):
    model = ImageClassifier(net="model_gap", num_classes=10)
    logger = _Logger()
    with PretendCuda():
        model.to("cuda")
        DataPreview(n_images=2, draws=2).on_fit_start(_trainer(data, logger), model)
        x, y = data.train_set.images[:8], data.train_set.labels[:8]
        data.trainer = SimpleNamespace(training=True, current_epoch=0)
        xb, yb = data.on_after_batch_transfer(
            (x.to("cuda"), y.to("cuda")), 0
        )  # batched crop + flip + normalise
        assert xb.device.type == "cuda" and xb.dtype == torch.float32 and model(xb).shape == (8, 10)
        data.trainer = SimpleNamespace(training=False)
        cpu = data.on_after_batch_transfer((x, y), 0)[0]  # the normalisation kept for cuda is not used here
        assert cpu.device.type == "cpu"
        torch.testing.assert_close(cpu, data.on_after_batch_transfer((x.to("cuda"), y), 0)[0].cpu())
    assert {"data/samples", "data/augmentations"} <= set(logger.figures)


def test_predict_and_every_viz_command_on_a_device(data, tmp_path, cifar10_root, monkeypatch):
    from PIL import Image

    from cifar_pl.predict import predict
    from cifar_pl.viz.__main__ import run as viz

    ckpt = write_checkpoint(tmp_path / "m.ckpt", num_classes=10, class_names=data.classes,
                            datamodule={"_class_path": "cifar_pl.data.CIFAR10DataModule", "data_dir": str(cifar10_root),
                                        "val_size": 24})  # fmt: skip
    img = tmp_path / "photo.png"
    Image.new("RGB", (40, 30), (200, 30, 30)).save(img)
    monkeypatch.setattr(
        torch.cuda, "is_available", lambda: True
    )  # --device cuda is checked against the machine
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with PretendCuda():
        rows = predict([str(img), "--ckpt", str(ckpt), "--device", "cuda", "--out", str(tmp_path / "p.csv")])
        assert len(rows[0]["top"]) == 3
        out = ["--ckpt", str(ckpt), "--device", "cuda", "--out", str(tmp_path / "viz")]
        split = [*out, "--data-dir", str(cifar10_root)]
        made = (
            viz(["cam", str(img), *out])
            + viz(["cam", *split, "--n", "2"])
            + viz(["channels", str(img), *out])
        )
        made += (
            viz(["mistakes", *split, "--n", "2"])
            + viz(["confusion", *split])
            + viz(["report", *split, "--n", "2"])
        )
    assert {p.name for p in made} >= {
        "cams.png",
        "channels.png",
        "mistakes.png",
        "confusion.png",
        "per_class.csv",
    }
