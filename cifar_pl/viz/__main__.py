"""One command per picture, from a checkpoint (and images, or the checkpoint's own data split).

    python -m cifar_pl.viz cam       --ckpt CKPT [IMAGE ...] [--class NAME] [--n 8]   class-activation maps
    python -m cifar_pl.viz channels  --ckpt CKPT [IMAGE] [--n 16]                      last feature map's channels
    python -m cifar_pl.viz mistakes  --ckpt CKPT [--n 16] [--no-cam]                   gallery of mistakes
    python -m cifar_pl.viz confusion --ckpt CKPT                                       confusion matrix + table
    python -m cifar_pl.viz report    --ckpt CKPT                                       all four at once
    python -m cifar_pl.viz curves    RUN [RUN ...]                                     training curves of runs
    python -m cifar_pl.viz activations RUN [RUN ...] [--layers 4]                      activation drift of runs
    python -m cifar_pl.viz augment   --config CONFIG [CLI overrides]                   augmentation previews

Without image files, pictures are made from the split ``--split`` (val or test) of the DataModule the checkpoint
was trained with, rebuilt from the checkpoint (``--data-dir`` if its data now lives elsewhere; only DataModules
of cifar_pl's registry are rebuilt). PNGs go to ``--out`` (default ``outputs/viz``); ``confusion`` also writes
``per_class.csv`` and prints the table. An image file that cannot be read is named and left out.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path

import torch

from ..checks import check_number
from ..cli import CifarCLI
from ..devices import parse_device
from ..errors import BadValue, UserError, run_main
from ..evaluation import cam_ready, class_activation_map, evaluate, feature_map, per_class_table
from ..figures.augment import preview_figures
from ..figures.report import cam_figure, channels_figure, confusion_figure, mistakes_figure, report_figures
from ..files import check_writable_folder, csv_cell, write_text_atomic
from ..images import READ_ERRORS
from ..inference import Predictor
from .activations import drift_figure, read_history
from .curves import curves_figure, read_scalars, save, stage_starts

MAX_SPLIT_BYTES = 2 << 30  # uint8 images a picture command holds at once


def _split(predictor: Predictor, args) -> tuple[torch.Tensor, torch.Tensor]:
    size = predictor.train_size
    need = args.max_images * 3 * size * size
    if need > MAX_SPLIT_BYTES:
        most = max(1, MAX_SPLIT_BYTES // (3 * size * size))
        raise BadValue(
            f"--max-images {args.max_images} of {size}x{size} images would hold {need / 2**30:.1f} GB; give "
            f"--max-images {most} or fewer"
        )
    ckpt = predictor.checkpoint
    named = ckpt.datamodule_args.get("data_dir") if ckpt.datamodule_class is not None else None
    if args.data_dir is None and named is not None:
        # a folder is read because the command line names it, never because a file does (one naming /usr would
        # have every file under it decoded)
        raise BadValue(
            f"{args.command} draws from the {args.split} split of the checkpoint's data: name its folder with "
            f"--data.data_dir (the checkpoint was trained on {str(named)!r}), or give image files"
        )
    dm = ckpt.build_datamodule(args.data_dir)
    dm.setup("fit" if args.split == "val" else "test")
    data = dm.val_set if args.split == "val" else dm.test_set
    if data is None or len(data) == 0:
        raise BadValue(
            f"the {args.split} split is empty; try --split {'test' if args.split == 'val' else 'val'}"
        )
    return data.take(slice(0, args.max_images)), data.labels[: args.max_images]


def _files(predictor: Predictor, paths: list[str], size: str = "train") -> list[tuple[str, torch.Tensor]]:
    """The readable image files as (name, uint8 image); each unreadable one is named on stderr and left out."""
    out = []
    for p in paths:
        try:
            img, _ = predictor.load_image(p, size)
        except (*READ_ERRORS, UserError) as e:
            print(f"skipped {p}: {type(e).__name__}: {e}", file=sys.stderr)
            continue
        out.append((Path(p).name, img))
    if not out:
        raise BadValue(f"none of {paths} is a readable image")
    return out


def _add_out(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--out", type=Path, default=Path("outputs/viz"), help="folder for the figures (default outputs/viz)"
    )


def cmd_cam(predictor: Predictor, args) -> list[Path]:
    net = predictor.net
    if args.cls is not None and args.cls not in predictor.classes:
        raise BadValue(
            f"--class {args.cls!r} is not a class of this checkpoint; the classes are {predictor.classes}"
        )
    cls = predictor.classes.index(args.cls) if args.cls is not None else None
    cams, titles = [], []
    if len(args.images) > args.n:
        raise BadValue(
            f"cam draws one panel per image and got {len(args.images)} files, more than --n {args.n}; pass at most "
            f"--n files (--n goes up to 256)"
        )
    if args.images:
        named = _files(predictor, args.images, args.size)
        images = [img for _, img in named]
        for name, img in named:
            cam, logits, c = class_activation_map(net, predictor.normalize(img), cls)
            cams.append(cam)
            titles.append(f"{name}: {predictor.classes[c]} ({float(logits.softmax(0)[c]):.2f})")
    else:
        images_t, labels = _split(predictor, args)
        ev = evaluate(predictor.model, predictor._normalize, images_t, labels)
        pick = ev.correct()[: args.n]
        images = list(images_t[pick])
        for i in pick:
            cam, logits, c = class_activation_map(net, predictor.normalize(images_t[i]), cls)
            cams.append(cam)
            titles.append(
                f"{predictor.classes[int(labels[i])]}: CAM {predictor.classes[c]} ({float(logits.softmax(0)[c]):.2f})"
            )
    return save(cam_figure(images, cams, titles), args.out / "cams")


def cmd_channels(predictor: Predictor, args) -> list[Path]:
    if args.images:
        name, img = _files(predictor, args.images[:1], args.size)[0]
    else:
        images, labels = _split(predictor, args)
        img, name = images[0], predictor.classes[int(labels[0])]
    feats = feature_map(predictor.net, predictor.normalize(img))
    fig = channels_figure(img, feats, args.n, f"{name}: {args.n} most active of {feats.shape[0]} channels "
                                              f"({feats.shape[1]}x{feats.shape[2]})")  # fmt: skip
    return save(fig, args.out / "channels")


def cmd_mistakes(predictor: Predictor, args) -> list[Path]:
    images, labels = _split(predictor, args)
    ev = evaluate(predictor.model, predictor._normalize, images, labels)
    wrong = ev.mistakes()[: args.n]
    cams = None
    if not args.no_cam and cam_ready(predictor.net):
        cams = [class_activation_map(predictor.net, predictor.normalize(images[i]))[0] for i in wrong]
    fig = mistakes_figure(images[wrong], labels[wrong].tolist(), ev.preds[wrong].tolist(),
                          ev.probs[wrong].max(1).values.tolist(), predictor.classes, cams,
                          ev.probs[wrong, labels[wrong]].tolist())  # fmt: skip
    print(f"{len(ev.mistakes())} of {len(labels)} {args.split} images misclassified; showing {len(wrong)}")
    return save(fig, args.out / "mistakes")


def _write_table(cm: torch.Tensor, classes: list[str], out: Path) -> Path:
    rows = per_class_table(cm, classes)
    path = out / "per_class.csv"
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(
        {k: csv_cell(v) for k, v in r.items()} for r in rows
    )  # class names come from the checkpoint
    write_text_atomic(path, text.getvalue())
    width = max(len(c) for c in classes)
    print(f"{'class':<{width}}  images  correct  accuracy  most confused with")
    for r in rows:
        print(
            f"{r['class']:<{width}}  {r['images']:>6}  {r['correct']:>7}  {r['accuracy']:>8.1%}  {r['most_confused_with']}"
        )
    return path


def cmd_confusion(predictor: Predictor, args) -> list[Path]:
    images, labels = _split(predictor, args)
    ev = evaluate(predictor.model, predictor._normalize, images, labels)
    cm = ev.confusion(len(predictor.classes))
    return save(confusion_figure(cm, predictor.classes), args.out / "confusion") + [
        _write_table(cm, predictor.classes, args.out)
    ]


def cmd_report(predictor: Predictor, args) -> list[Path]:
    images, labels = _split(predictor, args)
    figs, ev = report_figures(predictor.model, predictor.net, predictor._normalize, images, labels,
                              predictor.classes, args.n, 16)  # fmt: skip
    paths = [p for name, fig in figs.items() for p in save(fig, args.out / name)]
    return paths + [_write_table(ev.confusion(len(predictor.classes)), predictor.classes, args.out)]


def cmd_curves(args) -> list[Path]:
    paths = []
    for run in args.runs:
        name = (
            Path(run).resolve().name if not Path(run).name.startswith("version_") else Path(run).parent.name
        )
        paths += save(
            curves_figure(read_scalars(run), title=str(run), stages=stage_starts(run)),
            args.out / f"curves_{name}",
            ("png", "svg"),
        )
    return paths


def cmd_activations(args) -> list[Path]:
    check_number("--layers", args.layers, 1, 16, integer=True)
    runs = {}
    for run in args.runs:
        path = Path(run)
        name = path.parent.name if path.name.startswith("version_") else path.name
        runs[name if name not in runs else str(path)] = read_history(path)
    fig = drift_figure(runs, args.layers, "pre-activation percentiles (15/50/85) and mean over training")
    return save(
        fig, args.out / ("activations_" + "_vs_".join(Path(r).name for r in args.runs)[:120]), ("png", "svg")
    )


def cmd_augment(argv: list[str]) -> list[Path]:
    """samples.png and augmentations.png for a config (any CLI override allowed)."""
    ap = argparse.ArgumentParser(
        prog="python -m cifar_pl.viz augment", description="augmentation previews of a config"
    )
    ap.add_argument(
        "--out", type=Path, default=Path("previews"), help="folder for the PNGs (default: previews/)"
    )
    ap.add_argument("--images", type=int, default=8, help="images in the augmentation grid")
    ap.add_argument("--draws", type=int, default=6, help="augmented draws per image")
    args, rest = ap.parse_known_args(argv)
    check_number("--images", args.images, 1, 64, integer=True)
    check_number("--draws", args.draws, 1, 32, integer=True)
    cli = CifarCLI(args=rest, run=False)
    return [p for name, fig in preview_figures(cli.datamodule, args.images, args.draws).items()
            for p in save(fig, args.out / name)]  # fmt: skip


def run(argv: list[str] | None = None) -> list[Path]:
    """Parse ``argv`` and make the pictures; returns the files written (raises for bad input)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["augment"]:
        paths = cmd_augment(argv[1:])
    else:
        parser = argparse.ArgumentParser(prog="python -m cifar_pl.viz", description=__doc__.split("\n\n")[0],
                                         formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)  # fmt: skip
        sub = parser.add_subparsers(dest="command", required=True)
        for name in ("cam", "channels", "mistakes", "confusion", "report"):
            p = sub.add_parser(name)
            p.add_argument("images", nargs="*", help="image files (default: the checkpoint's --split)")
            p.add_argument("--ckpt", "--ckpt_path", dest="ckpt", required=True,
                           help="a checkpoint written by fit (either spelling, as fit's --ckpt_path)")  # fmt: skip
            p.add_argument("--split", choices=["val", "test"], default="val",
                           help="without image files: the checkpoint's split to draw from (default val)")  # fmt: skip
            p.add_argument(
                "--data-dir",
                "--data.data_dir",
                dest="data_dir",
                default=None,
                help="the folder of the checkpoint's data, needed to draw from its --split (either spelling, as "
                "fit's --data.data_dir); never taken from the checkpoint",
            )
            p.add_argument("--n", type=int, default={"cam": 8, "channels": 16}.get(name, 16),
                           help="images (cam), channels (channels) or mistakes shown")  # fmt: skip
            p.add_argument("--size", choices=["train", "auto", "native"], default="train",
                           help="image files: train resizes to the training size (default, as predict); auto "
                                "lets a GAP net take each at its own size")  # fmt: skip
            p.add_argument(
                "--class", dest="cls", default=None, help="CAM of this class instead of the predicted one"
            )
            p.add_argument("--no-cam", action="store_true", help="mistakes without their CAMs")
            p.add_argument(
                "--max-images", type=int, default=10000, help="at most this many images of the split"
            )
            p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, mps (default cpu)")
            _add_out(p)
        sub.add_parser("augment", help="augmentation previews of a config: viz augment --config X.yaml")
        p = sub.add_parser("curves")
        p.add_argument("runs", nargs="+", help="run folders (lightning_logs/<experiment>[/version_N])")
        _add_out(p)
        p = sub.add_parser("activations")
        p.add_argument("runs", nargs="+", help="run folders trained with the ActivationStats callback")
        p.add_argument("--layers", type=int, default=4, help="layers per run, spread over the depth")
        _add_out(p)
        args = parser.parse_args(argv)
        if args.command == "curves":
            paths = cmd_curves(args)
        elif args.command == "activations":
            paths = cmd_activations(args)
        else:
            check_number("--n", args.n, 1, 256, integer=True)
            check_number("--max-images", args.max_images, 1, integer=True)
            if args.command in ("mistakes", "confusion", "report") and args.images:
                parser.error(f"{args.command} works on a labelled split; drop the image files")
            device = parse_device(args.device)
            check_writable_folder(args.out, "--out")
            predictor = Predictor.from_checkpoint(args.ckpt, device)
            paths = {"cam": cmd_cam, "channels": cmd_channels, "mistakes": cmd_mistakes,
                     "confusion": cmd_confusion, "report": cmd_report}[args.command](predictor, args)  # fmt: skip
    for p in paths:
        print(f"wrote {p}")
    return paths


def main(argv: list[str] | None = None) -> int:
    return run_main(lambda: run(argv))


if __name__ == "__main__":
    sys.exit(main())
