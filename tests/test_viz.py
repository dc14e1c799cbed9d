"""Pictures of what a net sees: CAM, channels, mistakes, confusion, curves; prediction on images of any size."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from PIL import Image

from cifar_pl.checkpoints import read_checkpoint
from cifar_pl.evaluation import Evaluation, class_activation_map, evaluate, per_class_table, upsample
from cifar_pl.inference import Predictor
from cifar_pl.models import ClassifierNet, GlobalAvgPoolHead, create_model
from cifar_pl.predict import predict as predict_main
from cifar_pl.viz.__main__ import run as viz_main
from cifar_pl.viz.curves import read_scalars

from .helpers import PHOTO_COLOURS, run_cli, write_photo


class _ColourNet(ClassifierNet):
    """Features = the image's colour planes; class k's evidence is colour channel k."""

    global_pool = True

    def __init__(self):
        super().__init__()
        self.features = nn.ReLU()
        self.head = GlobalAvgPoolHead()
        self.num_features = 3
        self.classifier = nn.Linear(3, 3)
        with torch.no_grad():
            self.classifier.weight.copy_(torch.eye(3))
            self.classifier.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))


def test_cam_peaks_where_the_class_evidence_is():
    net = _ColourNet().eval()
    x = torch.zeros(3, 32, 32)
    x[2, 24:30, 1:7] = 1.0  # blue (class 2) patch in the bottom-left corner
    x[0, 10:12, 10:12] = 0.3  # a little red elsewhere
    cam, logits, c = class_activation_map(net, x)
    assert c == 2
    big = upsample(cam, (64, 64))
    row, col = divmod(int(big.argmax()), 64)
    assert row >= 44 and col < 16  # bottom-left quarter
    cam_red, _, c_red = class_activation_map(net, x, class_idx=0)
    assert c_red == 0 and divmod(int(cam_red.argmax()), 32) == (10, 10)


def test_cam_mean_plus_bias_is_the_logit():
    torch.manual_seed(0)
    for name in ("model_gap", "resnet20"):
        net = create_model(name, num_classes=10).eval()
        x = torch.randn(3, 40, 28)  # any size a GAP net accepts
        cam, logits, c = class_activation_map(net, x)
        assert c == int(logits.argmax())
        bias = net.get_classifier().bias[c]
        torch.testing.assert_close(cam.mean() + bias, logits[c], atol=1e-4, rtol=1e-4)
        for k in (0, 7):
            cam_k, logits_k, _ = class_activation_map(net, x, k)
            torch.testing.assert_close(
                cam_k.mean() + net.get_classifier().bias[k], logits_k[k], atol=1e-4, rtol=1e-4
            )


def test_cam_refuses_a_flatten_head_clearly():
    with pytest.raises(ValueError, match="no global-average-pooling \\+ linear head.*use a GAP net"):
        class_activation_map(create_model("model_g").eval(), torch.zeros(3, 32, 32))


class _LookupNet(nn.Module):
    """Logits read from the image: pixel [0, 0, 0] says which class wins and pixel [1, 0, 0] by how much."""

    def forward(self, x):
        cls = x[:, 0, 0, 0].round().long()
        return nn.functional.one_hot(cls, 4).float() * x[:, 1, 0, 0, None]


def test_gallery_picks_exactly_the_mistakes_most_confident_first():
    preds = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    labels = torch.tensor([0, 1, 0, 3, 2, 1, 2, 0])  # wrong at 2, 4, 7
    margin = torch.tensor([1.0, 1.0, 2.0, 1.0, 6.0, 1.0, 1.0, 4.0])
    images = torch.zeros(8, 3, 2, 2)
    images[:, 0, 0, 0], images[:, 1, 0, 0] = preds.float(), margin
    ev = evaluate(_LookupNet(), lambda x: x, images, labels)
    assert ev.mistakes().tolist() == [4, 7, 2]  # highest loss (most confidently wrong) first
    assert sorted(ev.correct().tolist()) == [0, 1, 3, 5, 6]
    cm = ev.confusion(4)
    assert cm.sum() == 8 and cm.diag().sum() == 5 and cm[2, 0] == 1 and cm[0, 3] == 1 and cm[0, 2] == 1
    rows = per_class_table(cm, ["a", "b", "c", "d"])
    assert rows[0]["images"] == 3 and rows[0]["correct"] == 1 and rows[1]["accuracy"] == 1.0
    assert Evaluation(torch.eye(2), torch.zeros(2), torch.tensor([0, 1])).mistakes().tolist() == []


# ---- from a real (short) training run on the photo folder ----
@pytest.fixture(scope="module")
def trained(photo_root, tmp_path_factory):
    """model_gap trained 3 epochs on the 3-class photo folder at 16 px: (cwd, best.ckpt, run folder)."""
    cwd = tmp_path_factory.mktemp("viz")
    cli = run_cli(
        "fit", "transfer/1_scratch", photo_root,
        "--experiment vizrun --model.net model_gap --trainer.max_epochs 3 --data.image_size 16 --data.batch_size 16 "
        "--data.augment none",
        cwd=cwd,
    )  # fmt: skip
    return cwd, cwd / "lightning_logs" / "vizrun" / "best.ckpt", cwd / cli.trainer.log_dir


def test_predict_any_size_with_class_names_from_the_checkpoint(trained, tmp_path):
    _, ckpt, _ = trained
    small = write_photo(tmp_path / "in" / "small.png", PHOTO_COLOURS[1], size=(32, 20))
    big = write_photo(tmp_path / "in" / "big.jpg", PHOTO_COLOURS[0], size=(500, 300))
    (tmp_path / "in" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really")
    rows = predict_main([str(tmp_path / "in"), "--ckpt", str(ckpt), "--out", str(tmp_path / "p.csv"), "--top-k",
                         "2", "--size", "auto"])  # fmt: skip
    by_name = {Path(r["file"]).name: r for r in rows}
    assert by_name["small.png"]["input"] == "own size 32x20"  # 2x the training size: no warning
    assert by_name["big.jpg"]["input"] == (
        "own size 500x300; 31x the training size 16: --size train predicts at the scale the net learnt"
    )
    assert "unreadable image" in by_name["broken.jpg"]["error"]
    for name in ("small.png", "big.jpg"):
        top = by_name[name]["top"]
        assert len(top) == 2 and {t["class"] for t in top} <= {"cat", "dog", "owl"}
        assert top[0]["prob"] >= top[1]["prob"] and top[0]["prob"] + top[1]["prob"] <= 1 + 1e-6
    with open(tmp_path / "p.csv") as f:
        table = list(csv.DictReader(f))
    assert [Path(r["file"]).name for r in table] == ["big.jpg", "broken.jpg", "small.png"]
    assert table[0]["top1"] in {"cat", "dog", "owl"} and float(table[0]["prob1"]) > 0
    # a net with a fixed input size gets the image resized, and says so
    pred = Predictor.from_checkpoint(ckpt)
    assert pred.classes == ["cat", "dog", "owl"] and pred.train_size == 16
    assert pred.load_image(big, "train")[1] == "resized to 16x16"
    image, said = pred.load_image(big, "native")  # --size native: never resized
    assert image.shape[-2:] == (300, 500) and "own size 500x300" in said
    # by default every image is resized to the training size, the scale the net learnt
    predict_main([str(small), "--ckpt_path", str(ckpt), "--out", str(tmp_path / "p.json")])  # fit's spelling
    assert json.loads((tmp_path / "p.json").read_text())[0]["input"] == "resized to 16x16"


def test_predictor_resizes_for_fixed_input_nets(tmp_path):
    from cifar_pl.lit import ImageClassifier

    model = ImageClassifier(net="model_g", num_classes=2, class_names=["x", "y"])
    torch.save(
        {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}, tmp_path / "g.ckpt"
    )
    pred = Predictor.from_checkpoint(tmp_path / "g.ckpt")
    img = write_photo(tmp_path / "wide.png", PHOTO_COLOURS[2], size=(90, 40))
    row = pred.predict_files([img])[0]
    assert row["input"] == "resized to 32x32" and row["top"][0]["class"] in ("x", "y")


def _valid_png(path: Path) -> None:
    assert path.suffix == ".png" and path.stat().st_size > 1000
    with Image.open(path) as im:
        im.verify()


def test_every_viz_command_writes_valid_pngs(trained, tmp_path):
    _, ckpt, run = trained
    img = write_photo(tmp_path / "owl.jpg", PHOTO_COLOURS[2], size=(60, 45))
    out = tmp_path / "viz"
    made = []
    data_dir = str(read_checkpoint(ckpt).datamodule_args["data_dir"])
    made += viz_main(["cam", "--ckpt", str(ckpt), "--data-dir", data_dir, "--out", str(out / "split")])
    made += viz_main(["cam", str(img), "--ckpt", str(ckpt), "--class", "dog", "--out", str(out / "files")])
    made += viz_main(["channels", str(img), "--ckpt", str(ckpt), "--n", "8", "--out", str(out)])
    made += viz_main(
        ["mistakes", "--ckpt_path", str(ckpt), "--data-dir", data_dir, "--out", str(out)]
    )  # fit's spelling
    made += viz_main(
        ["confusion", "--ckpt", str(ckpt), "--data.data_dir", data_dir, "--out", str(out)]
    )  # here too
    made += viz_main(["report", "--ckpt", str(ckpt), "--split", "test", "--data-dir", data_dir, "--out",
                      str(out / "report")])  # fmt: skip
    made += viz_main(["curves", str(run), "--out", str(out)])
    names = {p.relative_to(out).as_posix() for p in made}
    for expected in ["split/cams.png", "files/cams.png", "channels.png", "mistakes.png", "confusion.png",
                     "per_class.csv", "report/confusion.png", "report/mistakes.png", "report/cams.png",
                     "report/channels.png", f"curves_{run.parent.name}.png", f"curves_{run.parent.name}.svg"]:  # fmt: skip
        assert expected in names, expected
    for p in made:
        if p.suffix == ".png":
            _valid_png(p)
    with open(out / "per_class.csv") as f:
        rows = list(csv.DictReader(f))
    dm = read_checkpoint(ckpt).build_datamodule()
    dm.setup("fit")  # every image of the checkpoint's validation split, once
    assert [r["class"] for r in rows] == ["cat", "dog", "owl"] and sum(int(r["images"]) for r in rows) == len(
        dm.val_set
    )


def test_curves_read_per_epoch_and_test_pictures_reach_tensorboard(trained):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, _, run = trained
    scalars = read_scalars(run)
    assert [e for e, _ in scalars["train/loss"]] == [0, 1, 2]
    assert [e for e, _ in scalars["val/acc"]] == [0, 1, 2] and "train/epoch_time" in scalars
    tags = set()
    for events in run.glob("events.out.tfevents.*"):
        acc = EventAccumulator(str(events), size_guidance={"images": 0})
        acc.Reload()
        tags |= set(acc.Tags()["images"])
    # the photo folder has no test split: its validation split is scored, and the pictures say so as the metrics do
    assert {
        "test_on_val/confusion",
        "test_on_val/mistakes",
        "test_on_val/cams",
        "test_on_val/channels",
    } <= tags


def test_the_report_ranks_mistakes_by_the_test_pass_own_logits(trained, tmp_path):
    """The test pass keeps its logits (with its TTA views), so the gallery needs no second pass over the test set:
    they equal a fresh evaluation, and the report forwards only its 8-image check. Logits of other images (a test
    on another loader with the same labels) fail the check and the report makes its own pass."""
    import pytorch_lightning as pl

    from cifar_pl.callbacks import EndOfTestReport

    _, ckpt, _ = trained
    saved = read_checkpoint(ckpt)
    model, dm = saved.build_model(), saved.build_datamodule()
    model.evaluation.tta = (
        "flip"  # two views: the kept logits must be the views' mean, as the test scored them
    )
    trainer = pl.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False,
                         default_root_dir=tmp_path)  # fmt: skip
    trainer.test(model, datamodule=dm, verbose=False)
    logits, labels = model.test_outputs
    n = len(dm.test_set)
    images = dm.test_set.take(slice(0, n))
    assert torch.equal(labels, dm.test_set.labels) and n > 8
    fresh = evaluate(model.eval(), dm.normalize, images, dm.test_set.labels)
    torch.testing.assert_close(logits.softmax(1), fresh.probs, atol=1e-5, rtol=1e-4)
    assert (logits.argmax(1) == labels).float().mean().item() == pytest.approx(
        trainer.callback_metrics["test_on_val/acc"].item()
    )

    figures, seen = {}, []

    class _Logger(pl.loggers.TensorBoardLogger):
        @property
        def experiment(self):
            return type(
                "W", (), {"add_figure": lambda _, tag, fig, global_step=0: figures.__setitem__(tag, fig)}
            )()

    forward = model.forward

    def counted(x, *args, **kwargs):
        seen.append(len(x))
        return forward(x, *args, **kwargs)

    model.forward = counted
    fake = type("T", (), {"datamodule": dm, "loggers": [_Logger(str(tmp_path))], "sanity_checking": False,
                          "global_step": 3})()  # fmt: skip
    EndOfTestReport(n_cams=2, n_mistakes=4).on_test_end(fake, model)
    assert {"test_on_val/confusion", "test_on_val/mistakes"} <= set(figures)
    assert sum(seen) == 8  # the check only, not a pass over the test set
    # logits of other images with the same labels: refused, the report runs its own pass
    model.test_outputs = (torch.randn_like(logits), labels)
    seen.clear()
    EndOfTestReport(n_cams=2, n_mistakes=4).on_test_end(fake, model)
    assert sum(seen) == 8 + n


def test_curves_draw_the_test_on_validation_score_and_the_test_curve():
    from cifar_pl.viz.curves import curves_figure

    scalars = {"train/acc": [(0, 0.5), (1, 0.6)], "val/acc": [(0, 0.4), (1, 0.5)],
               "clean_test/acc": [(0, 0.41), (1, 0.52)], "test_on_val/acc": [(1, 0.55)]}  # fmt: skip
    labels = [ln.get_label() for ax in curves_figure(scalars).axes for ln in ax.lines]
    assert "clean_test/acc" in labels and "test_on_val/acc 0.550" in labels
