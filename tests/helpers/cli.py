"""Running the CLI: in-process (``run_cli``, ``effective_config``) and as a child process (``child_env``); comparing
the weights runs end with."""

from __future__ import annotations

import contextlib
import io
import os
import sys
from pathlib import Path

import yaml

from .paths import CONFIGS, REPO


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a ``python -m cifar_pl ...`` child process: this checkout first on the path, one thread."""
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **extra}


def run_cli(
    subcommand: str,
    config: str | Path,
    data_dir: Path | None = None,
    extra: str = "",
    cwd: Path | None = None,
):
    """Run ``python -m cifar_pl <subcommand> --config configs/<config>.yaml`` in-process on the CPU without a
    progress bar; ``extra`` holds further command-line arguments, space-separated; ``cwd``: run from there (for
    module-scoped fixtures, which cannot use ``monkeypatch.chdir``)."""
    from cifar_pl.__main__ import cli_main

    path = config if isinstance(config, Path) else CONFIGS / f"{config}.yaml"
    args = [
        subcommand,
        "--config",
        str(path),
        "--trainer.accelerator",
        "cpu",
        "--trainer.enable_progress_bar",
        "false",
    ]
    if data_dir is not None:
        args += ["--data.data_dir", str(data_dir)]
    if cwd is None:
        return cli_main(args + extra.split())
    old = os.getcwd()
    os.chdir(cwd)
    try:
        return cli_main(args + extra.split())
    finally:
        os.chdir(old)


def effective_config(path: Path, *extra: str) -> dict:
    """What a config file (with the files it includes) amounts to, as ``--print_config`` shows it."""
    from cifar_pl.__main__ import cli_main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        cli_main(["fit", "--config", str(path), *extra, "--print_config"])
    return yaml.safe_load(out.getvalue())


def largest_difference(a: dict, b: dict) -> tuple[str, float]:
    """The floating tensor of two state dicts that differs most, and by how much (max absolute difference)."""
    diffs = [(k, (a[k].double() - b[k].double()).abs().max().item()) for k in a if a[k].is_floating_point()]
    return max(diffs, key=lambda kv: kv[1])


def training_command(
    data_dir: Path,
    experiment: str,
    *extra: str,
    subcommand: str = "fit",
    device: tuple[str, ...] = ("--trainer.accelerator", "cpu"),
    pause: bool = False,
) -> list[str]:
    """A child process's command line for a small deterministic run: ``python -m cifar_pl <subcommand>`` with
    model_gap, 3 epochs of batches of 16 with standard augmentation, no progress bar, no test after fit;
    ``pause``: with the PauseAt callback (the process waits at a step named by its environment)."""
    after = ["--test_after_fit", "false"] if subcommand == "fit" else []
    return [
        sys.executable, "-m", "cifar_pl", subcommand, "--config", str(CONFIGS / "model_gap.yaml"),
        "--data.data_dir", str(data_dir), "--experiment", experiment, *device,
        "--trainer.enable_progress_bar", "false", "--trainer.max_epochs", "3", "--trainer.deterministic", "true",
        "--data.batch_size", "16", "--data.augment", "standard", *after,
        *(["--trainer.callbacks+=tests.helpers.PauseAt"] if pause else []), *extra,
    ]  # fmt: skip
