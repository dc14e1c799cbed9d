"""Tried as a hostile user would: every bad input gets one clear line and exit code 2 (tests/helpers/hostile.py has the
table); a crafted checkpoint runs nothing anywhere; a stopped run resumes exactly; images are bounded."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from .helpers import CONFIGS, child_env, largest_difference, training_command
from .helpers.hostile import CASES, build_sandbox, error_line, run_case, write_checkpoint, write_crafted


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    places = build_sandbox(root / "files")
    (root / "work").mkdir()
    return root / "work", places


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gets_one_clear_line_and_exit_2(case, sandbox):
    cwd, places = sandbox
    code, stderr = run_case(case, places, cwd)
    assert code == case.code, stderr[-3000:]
    assert "Traceback" not in stderr
    line = error_line(stderr)
    assert case.first_line in line, f"{line!r}\n---\n{stderr[-2000:]}"
    assert not (Path(places["crafted"]).parent / "PWNED").exists()


@pytest.mark.slow  # a training process (or several) of its own: the slow tier
def test_the_real_command_prints_one_line_and_no_traceback(sandbox, tmp_path):
    _, places = sandbox
    cmd = [sys.executable, "-m", "cifar_pl", "fit", "--config", str(CONFIGS / "model_gap.yaml"),
           "--data.data_dir", places["c10"], "--data.augment", "[{name: cutout, size: 100}]"]  # fmt: skip
    out = subprocess.run(cmd, cwd=tmp_path, env=child_env(), capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert error_line(out.stderr).startswith("error: augment step 'cutout': size must be in [1, 31], got 100")
    shown = subprocess.run(cmd, cwd=tmp_path, env=child_env(CIFAR_PL_TRACEBACK="1"), capture_output=True, text=True,
                           timeout=300)  # fmt: skip
    assert (
        shown.returncode == 2 and "Traceback" in shown.stderr
    )  # asked for: the traceback too, the same exit code
    assert error_line(shown.stderr).startswith("error: augment step 'cutout'")


@pytest.mark.slow  # a training process (or several) of its own: the slow tier
def test_a_crafted_checkpoint_is_refused_everywhere_and_runs_nothing(sandbox, tmp_path):
    _, places = sandbox
    marker = tmp_path / "PWNED"
    crafted = write_crafted(tmp_path / "crafted.ckpt", marker)
    loaded = torch.load(crafted, weights_only=True)  # it passes torch's own check...
    assert loaded["datamodule_hyper_parameters"]["_class_path"] == "os.system"  # ...and names os.system
    commands = {
        "predict": ["-m", "cifar_pl.predict", places["photos"], "--ckpt", str(crafted), "--out", "p.csv"],
        "viz": ["-m", "cifar_pl.viz", "confusion", "--ckpt", str(crafted)],
        "test": ["-m", "cifar_pl", "test", "--config", str(CONFIGS / "model_gap.yaml"), "--data.data_dir",
                 places["c10"], "--ckpt_path", str(crafted)],
        "fit": ["-m", "cifar_pl", "fit", "--config", str(CONFIGS / "model_gap.yaml"), "--data.data_dir",
                places["c10"], "--ckpt_path", str(crafted), "--trainer.max_epochs", "1"],
    }  # fmt: skip
    for name, args in commands.items():
        out = subprocess.run([sys.executable, *args], cwd=tmp_path, env=child_env(), capture_output=True, text=True,
                             timeout=300)  # fmt: skip
        assert out.returncode == 2, (name, out.stderr[-2000:])
        assert "Traceback" not in out.stderr and "os.system" in error_line(out.stderr), (
            name,
            out.stderr[-500:],
        )
    assert not marker.exists()  # the shell command never ran
    assert not (tmp_path / "p.csv").exists()


@pytest.mark.parametrize("key, value, message", [
    ("net", "os.system", "hyper_parameters.net is 'os.system', not a registered net"),
    ("_class_path", "subprocess.Popen", "_class_path is 'subprocess.Popen', not cifar_pl's ImageClassifier"),
    ("optimizer", torch.zeros(1), "hold values that are not plain numbers"),
    ("optimizer", {"_class_path": "os.system"}, "its model arguments are refused: model.optim.name: unknown value"),
    ("callback", "x", "hyper_parameters has ['callback'], which ImageClassifier does not take"),
])  # fmt: skip
def test_the_reader_looks_names_up_in_its_own_tables(tmp_path, key, value, message):
    from cifar_pl.checkpoints import read_checkpoint

    path = write_checkpoint(tmp_path / "x.ckpt", num_classes=3)
    ckpt = torch.load(path, weights_only=True)
    ckpt["hyper_parameters"][key] = value
    torch.save(ckpt, path)
    with pytest.raises(ValueError, match=re.escape(message)):
        read_checkpoint(path).build_model()


def test_the_reader_switches_off_what_would_fetch_other_weights(tmp_path):
    from cifar_pl.checkpoints import read_checkpoint

    path = write_checkpoint(tmp_path / "x.ckpt", num_classes=3, init_from="/etc/passwd")
    ckpt = torch.load(path, weights_only=True)
    ckpt["hyper_parameters"].update(net="timm_backbone", net_kwargs={"model_name": "test_resnet",
                                                                     "pretrained_path": "/etc/passwd"})  # fmt: skip
    ckpt["datamodule_hyper_parameters"] = {"_class_path": "cifar_pl.data.CIFAR10DataModule", "download": True}
    torch.save(ckpt, path)
    read = read_checkpoint(path)
    assert (
        read.model_args["init"]["weights"] is None
        and read.model_args["net_kwargs"]["pretrained_path"] is None
    )
    assert read.datamodule_args["download"] is False
    assert read.datamodule_class.__name__ == "CIFAR10DataModule"


# ---- stops ----
def _weights(run: Path) -> dict:
    return torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)


@pytest.mark.slow  # a training process (or several) of its own: the slow tier
def test_sigterm_mid_epoch_saves_exits_143_and_resumes_to_identical_weights(cifar10_root, tmp_path):
    # 130 training images in batches of 16: 9 steps per epoch, 27 in all. SIGTERM arrives at step 13, in the
    # middle of epoch 1; the run saves there, exits 143, and `--ckpt_path last` continues with batch 5 of epoch 1.
    subprocess.run(
        training_command(cifar10_root, "straight", pause=True),
        cwd=tmp_path,
        env=child_env(),
        check=True,
        capture_output=True,
    )
    marker = tmp_path / "paused"
    proc = subprocess.Popen(training_command(cifar10_root, "stopped", pause=True), cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=child_env(PAUSE_AT_STEP="13", PAUSE_MARKER=str(marker)))  # fmt: skip
    deadline = time.time() + 300
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    assert marker.exists(), "the run never reached step 13"
    os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signal.SIGTERM, err.decode()[-2000:]
    run = tmp_path / "lightning_logs" / "stopped" / "version_0"
    stopped = _weights(run)
    assert stopped["global_step"] == 13 and stopped["epoch"] == 1  # saved where it stopped, mid-epoch
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "interrupted" and record["exit_code"] == 143
    resumed = subprocess.run(training_command(cifar10_root, "stopped", "--ckpt_path", "last", pause=True), cwd=tmp_path, env=child_env(),
                             capture_output=True, text=True)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a, b = _weights(tmp_path / "lightning_logs" / "straight" / "version_0"), _weights(run)
    assert a["global_step"] == b["global_step"] == 27
    key, worst = largest_difference(a["state_dict"], b["state_dict"])
    print(f"max abs weight difference after SIGTERM at step 13 + resume: {worst} ({key})")
    assert worst == 0.0, key
    assert json.loads((run / "run.json").read_text())["status"] == "complete"
    assert not (tmp_path / "lightning_logs" / "stopped" / "version_1").exists()  # one run, one folder


# ---- images ----
def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims width x height (what a decompression bomb looks like before it inflates)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))  # fmt: skip
    return path


def test_predict_on_a_hostile_folder_writes_a_row_for_every_file(tmp_path):
    from cifar_pl.predict import predict

    ckpt = write_checkpoint(tmp_path / "m.ckpt", num_classes=2, class_names=["red", "green"])
    photos = tmp_path / "in"
    photos.mkdir()
    _png_header_only(photos / "bomb.png", 30_000, 30_000)  # 900 MP: Pillow's own limit
    _png_header_only(photos / "big.png", 8_000, 8_000)  # 64 MP: over ours
    Image.new("RGB", (1, 1), (200, 0, 0)).save(photos / "one_pixel.png")
    gradient = (np.linspace(0, 65535, 40 * 30).reshape(30, 40)).astype(np.uint16)
    Image.fromarray(gradient).save(photos / "sixteen_bit.png")
    for i, colour in enumerate(((220, 30, 30), (30, 200, 40))):
        Image.new("RGB", (300, 200), colour).save(photos / f"photo_{i}.jpg")
    rows = predict([str(photos), "--ckpt", str(ckpt), "--out", str(tmp_path / "p.csv"), "--size", "auto"])
    by = {Path(r["file"]).name: r for r in rows}
    assert sorted(by) == [
        "big.png",
        "bomb.png",
        "one_pixel.png",
        "photo_0.jpg",
        "photo_1.jpg",
        "sixteen_bit.png",
    ]
    assert "larger than Pillow will open" in by["bomb.png"]["error"]
    assert "64.0 MP, over the limit of 50 MP (max_pixels)" in by["big.png"]["error"]
    assert by["one_pixel.png"]["input"] == "1x1 resized to 16x16 (short side raised to 16)"
    for name in ("one_pixel.png", "sixteen_bit.png", "photo_0.jpg", "photo_1.jpg"):
        assert "error" not in by[name] and len(by[name]["top"]) == 2
    with open(tmp_path / "p.csv") as f:
        assert len(list(csv.DictReader(f))) == 6


def test_sixteen_bit_and_float_images_are_scaled_not_clipped(tmp_path):
    from cifar_pl.images import read_image

    Image.fromarray(np.array([[0, 32768, 65535]], dtype=np.uint16)).save(tmp_path / "g16.png")
    assert read_image(tmp_path / "g16.png")[0, :, 0].tolist() == [0, 128, 255]
    Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32)).save(tmp_path / "f.tiff")
    assert read_image(tmp_path / "f.tiff")[0, :, 0].tolist() == [0, 128, 255]


def test_own_size_prediction_holds_the_long_side(tmp_path):
    from cifar_pl.inference import Predictor

    ckpt = write_checkpoint(tmp_path / "m.ckpt", num_classes=2)
    Image.new("RGB", (4000, 1000), (10, 200, 10)).save(tmp_path / "wide.png")
    img, note = Predictor.from_checkpoint(ckpt).load_image(tmp_path / "wide.png", "auto", max_side=512)
    assert img.shape == (3, 128, 512) and note.startswith(
        "4000x1000 resized to 512x128 (long side bound 512)"
    )
    assert "32x the training size 16: --size train predicts at the scale the net learnt" in note


def test_the_prediction_table_gives_the_photos_own_size_and_the_input_apart(tmp_path):
    """A 96x64 photo is 96,64 in the table's width,height (not the net's 32x32 input), the input column says what
    the net took; a large JPEG decoded in draft mode still shows the size of the file."""
    from cifar_pl.predict import main as predict

    ckpt = write_checkpoint(tmp_path / "m.ckpt", num_classes=2)
    Image.new("RGB", (96, 64), (200, 30, 30)).save(tmp_path / "wide.png")
    Image.new("RGB", (1600, 1200), (30, 30, 200)).save(tmp_path / "big.jpg")
    out = tmp_path / "p.csv"
    assert (
        predict(
            [str(tmp_path / "wide.png"), str(tmp_path / "big.jpg"), "--ckpt", str(ckpt), "--out", str(out)]
        )
        == 0
    )
    rows = {Path(r["file"]).name: r for r in csv.DictReader(out.open())}
    assert (rows["wide.png"]["width"], rows["wide.png"]["height"]) == ("96", "64")
    assert (rows["big.jpg"]["width"], rows["big.jpg"]["height"]) == ("1600", "1200")
    side = rows["wide.png"]["input"].split("resized to ")[1]
    assert rows["wide.png"]["input"] == rows["big.jpg"]["input"] == f"resized to {side}"


def test_names_from_a_checkpoint_cannot_run_as_spreadsheet_formulas(tmp_path):
    from cifar_pl.predict import predict

    names = ['=HYPERLINK("http://x")', "+1", "-2", "@SUM(A1)"]
    ckpt = write_checkpoint(tmp_path / "m.ckpt", num_classes=4, class_names=names)
    Image.new("RGB", (20, 20), (200, 0, 0)).save(tmp_path / "=cmd.png")
    predict(
        [str(tmp_path / "=cmd.png"), "--ckpt", str(ckpt), "--out", str(tmp_path / "p.csv"), "--top-k", "4"]
    )
    with open(tmp_path / "p.csv") as f:
        row = next(csv.DictReader(f))
    cells = [row["file"]] + [row[f"top{i}"] for i in range(1, 5)]
    assert sorted(cells[1:]) == sorted("'" + n for n in names)  # each shown as text, not as a formula
    assert not any(c.startswith(("=", "+", "-", "@")) for c in cells)


def test_the_data_folder_viz_reads_comes_from_the_command_line_not_the_checkpoint(sandbox, tmp_path, capsys):
    """A checkpoint naming another folder (/usr, say) has nothing read there: without --data.data_dir viz says
    which folder the checkpoint names and stops; with it, the folder given is the one read."""
    from cifar_pl.viz.__main__ import main as viz

    _, places = sandbox
    decoy = tmp_path / "not_the_data"
    (decoy / "cat").mkdir(parents=True)
    (decoy / "dog").mkdir()
    ckpt = write_checkpoint(tmp_path / "m.ckpt", num_classes=3, class_names=["cat", "dog", "owl"], datamodule={
        "_class_path": "cifar_pl.data.ImageFolderDataModule", "data_dir": str(decoy), "image_size": 16,
    })  # fmt: skip
    opened = []
    real_listdir, real_scandir = os.listdir, os.scandir
    os.listdir = lambda p=".": (opened.append(str(p)), real_listdir(p))[1]
    os.scandir = lambda p=".": (opened.append(str(p)), real_scandir(p))[1]
    try:
        code = viz(["mistakes", "--ckpt", str(ckpt), "--out", str(tmp_path / "viz")])
    finally:
        os.listdir, os.scandir = real_listdir, real_scandir
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert (
        "name its folder with --data.data_dir (the checkpoint was trained on" in err[0]
        and str(decoy) in err[0]
    )
    assert not [p for p in opened if p.startswith(str(decoy))]
    assert viz(["confusion", "--ckpt", str(ckpt), "--data.data_dir", places["photos"], "--out",
                str(tmp_path / "viz")]) == 0  # fmt: skip


def test_where_a_rebuilt_datamodule_writes_comes_from_this_machine_not_the_checkpoint(sandbox, tmp_path):
    from cifar_pl.viz.__main__ import main as viz

    _, places = sandbox
    elsewhere = tmp_path / "chosen_by_the_file"
    ckpt = write_checkpoint(tmp_path / "m.ckpt", num_classes=2, datamodule={
        "_class_path": "cifar_pl.data.ImageFolderDataModule", "data_dir": places["photos"], "image_size": 16,
        "cache_dir": str(elsewhere),
    })  # fmt: skip
    assert (
        viz(
            ["confusion", "--ckpt", str(ckpt), "--data-dir", places["photos"], "--out", str(tmp_path / "viz")]
        )
        == 0
    )
    assert not elsewhere.exists()
    assert (tmp_path / "viz" / "per_class.csv").is_file()
