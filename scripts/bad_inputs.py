"""Try every bad input the reliability guarantees cover and print a table of the first line of each error.

    .venv/bin/python scripts/bad_inputs.py [--data ../shared/data]

Runs in a scratch folder; each case is a real CLI call (or the API a user would call) expected to fail.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import pickle
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def first_line(fn) -> str:
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            fn()
    except SystemExit as e:
        lines = err.getvalue().splitlines()
        at = [i for i, ln in enumerate(lines) if ln.lower().startswith("error:")]
        if not at:
            return f"exit {e.code}"
        msg = lines[at[-1]].strip()
        if msg.endswith(":") and at[-1] + 1 < len(lines):  # jsonargparse puts the reason on the next line
            msg += " " + lines[at[-1] + 1].strip()
        return msg[:300]
    except Exception as e:  # noqa: BLE001 (we want whatever the user would see)
        return f"{type(e).__name__}: {str(e).splitlines()[0]}"[:300]
    return "NO ERROR"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--data", default=os.environ.get("CIFAR_PL_DATA", str(REPO.parent / "shared" / "data"))
    )
    args = parser.parse_args()
    data = Path(args.data).resolve()
    os.chdir(tempfile.mkdtemp(prefix="bad_inputs_"))
    import torch

    from cifar_pl.__main__ import cli_main
    from cifar_pl.data import CIFAR10DataModule, ImageFolderDataModule
    from cifar_pl.lit import ImageClassifier

    cfg = str(REPO / "configs" / "model_gap.yaml")

    def fit(*extra):
        return lambda: cli_main(["fit", "--config", cfg, "--trainer.fast_dev_run", "true",
                                 "--trainer.enable_progress_bar", "false", *extra])  # fmt: skip

    Path("wrong_layout/some_folder").mkdir(parents=True)
    Path("corrupt/cifar-10-batches-py").mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        src = data / "cifar-10-batches-py" / name
        Path("corrupt/cifar-10-batches-py", name).write_bytes(
            src.read_bytes()[:5000] if name == "data_batch_3" else src.read_bytes()
        )
    Path("photos/cat").mkdir(parents=True)
    Path("photos/cat/broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    Path("photos/cat/notes.txt").write_text("hello")
    Path("noclasses").mkdir()
    Path("noclasses/a.jpg").write_bytes(b"")
    torch.save(ImageClassifier(net="model_gap", num_classes=5).state_dict(), "five_classes.pt")
    torch.save(ImageClassifier(net="resnet20", num_classes=10).state_dict(), "resnet20.pt")
    Path("not_a_checkpoint.ckpt").write_text("this is a text file")
    with open("pickle_bomb.ckpt", "wb") as f:
        pickle.dump({"state_dict": os.system}, f)

    cases = [
        ("missing data folder", fit("--data.data_dir", "nowhere")),
        ("folder with the wrong layout", fit("--data.data_dir", "wrong_layout")),
        ("truncated CIFAR batch file", fit("--data.data_dir", "corrupt")),
        ("image folder: unreadable files only", lambda: ImageFolderDataModule("photos").setup("fit")),
        ("image folder without class folders", lambda: ImageFolderDataModule("noclasses").setup("fit")),
        ("unknown net", fit("--data.data_dir", str(data), "--model.net", "resnet21")),
        ("unknown augmentation", fit("--data.data_dir", str(data), "--data.augment", "standart")),
        ("unknown optimiser", fit("--data.data_dir", str(data), "--model.optimizer", "adamm")),
        ("unknown scheduler", fit("--data.data_dir", str(data), "--model.scheduler", "cosin")),
        ("config key that does not exist", fit("--data.data_dir", str(data), "--model.learning_rate", "0.1")),
        (
            "checkpoint whose head does not fit",
            fit("--data.data_dir", str(data), "--model.init_from", "five_classes.pt"),
        ),
        ("checkpoint of another net", fit("--data.data_dir", str(data), "--model.init_from", "resnet20.pt")),
        (
            "file that is not a checkpoint",
            fit("--data.data_dir", str(data), "--model.init_from", "not_a_checkpoint.ckpt"),
        ),
        (
            "pickle that would run code",
            fit("--data.data_dir", str(data), "--model.init_from", "pickle_bomb.ckpt"),
        ),
        (
            "fit --ckpt_path last with nothing to resume",
            fit("--data.data_dir", str(data), "--ckpt_path", "last"),
        ),
        ("bad corruption name", lambda: CIFAR10DataModule(str(data), corrupt="noise")),
    ]
    print("| bad input | first line of the error |\n| --- | --- |")
    for what, fn in cases:
        print(f"| {what} | `{first_line(fn).replace('|', '/')}` |", flush=True)


if __name__ == "__main__":
    main()
