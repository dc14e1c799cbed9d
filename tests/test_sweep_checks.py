"""A sweep checks everything before its first run: the file (aliases bounded), names it owns, run-name collisions,
every run's configuration, and every finished run's recorded configuration against the file as it is now."""

from __future__ import annotations

import json
import tracemalloc

import pytest
import yaml

from cifar_pl.safe_yaml import AliasBomb
from cifar_pl.sweep import load_sweep
from cifar_pl.sweep import main as sweep_main

from .conftest import CONFIGS


def _write(tmp_path, name: str = "s.yaml", **spec) -> str:
    spec = {"sweep": "checked", "config": str(CONFIGS / "model_gap.yaml"), **spec}
    (tmp_path / name).write_text(yaml.safe_dump(spec))
    return str(tmp_path / name)


def test_a_sweep_that_sets_experiment_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"`args:` sets experiment, which the sweep sets for each run"):
        load_sweep(_write(tmp_path, args={"experiment": "elsewhere"}, runs={"a": {}}))
    with pytest.raises(ValueError, match=r"`runs.a:` sets ckpt_path"):
        load_sweep(_write(tmp_path, runs={"a": {"ckpt_path": "x.ckpt"}}))


@pytest.mark.parametrize(
    "key, value, message",
    [
        (
            "experiment",
            "hijacked",
            "a config it includes sets experiment to 'hijacked', which the sweep sets",
        ),
        ("ckpt_path", "x.ckpt", "Option 'ckpt_path' is not accepted"),  # refused by the parser already
    ],
)
def test_a_config_that_a_sweep_includes_may_not_set_what_the_sweep_owns(
    tmp_path, monkeypatch, capsys, cifar10_root, key, value, message
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "evil.yaml").write_text(f"{key}: {value}\n")
    path = _write(tmp_path, runs={"a": {"config": str(tmp_path / "evil.yaml")}},
                  args={"data.data_dir": str(cifar10_root)})  # fmt: skip
    assert sweep_main([path, "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert f"run 'a': {message}" in err
    assert not (tmp_path / "lightning_logs").exists()


def test_two_grid_values_that_make_one_run_name_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"the grid values \{'model.lr': '0.1'\} make the run name 'lr=0.1', which "
                                         r"another grid combination has too"):  # fmt: skip
        load_sweep(_write(tmp_path, grid={"model.lr": [0.1, "0.1"]}))


def test_a_sweep_file_of_nested_aliases_is_refused_at_once_with_bounded_memory(tmp_path):
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]  # 9**10 values
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\nsweep: x\nconfig: a.yaml\nruns: {a: {model.lr: *a9}}\n")
    assert path.stat().st_size < 1024
    tracemalloc.start()
    try:
        with pytest.raises(AliasBomb, match="aliases .* expand it to more than 100,000 values"):
            load_sweep(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    print(
        f"a {path.stat().st_size}-byte sweep of nested aliases refused; peak Python memory {peak / 1e6:.2f} MB"
    )
    assert peak < 20e6


def test_a_typo_in_one_run_is_refused_before_any_run_starts(tmp_path, monkeypatch, capsys, cifar10_root):
    monkeypatch.chdir(tmp_path)
    path = _write(
        tmp_path, runs={"good": {}, "typo": {"model.lrr": 0.1}}, args={"data.data_dir": str(cifar10_root)}
    )
    assert sweep_main([path]) == 2
    err = capsys.readouterr().err
    assert "error: " in err and "run 'typo': unrecognized arguments: --model.lrr 0.1" in err
    assert not (tmp_path / "lightning_logs").exists()  # nothing ran, nothing was written


def test_a_finished_run_is_skipped_only_with_the_configuration_it_ran(
    tmp_path, monkeypatch, capsys, cifar10_root
):
    monkeypatch.chdir(tmp_path)
    args = {"data.data_dir": str(cifar10_root), "trainer.max_epochs": 1, "data.batch_size": 32,
            "trainer.enable_progress_bar": False, "trainer.accelerator": "cpu", "test_after_fit": False}  # fmt: skip
    path = _write(tmp_path, args=args, runs={"a": {"model.lr": 0.05}})
    assert sweep_main([path]) == 0
    record = json.loads((tmp_path / "lightning_logs/checked/a/version_0/run.json").read_text())
    assert record["status"] == "complete" and record["config"]["model"]["lr"] == 0.05
    capsys.readouterr()
    assert sweep_main([path]) == 0  # the configuration the run recorded is the file's: skipped
    assert "a: finished before, skipped" in capsys.readouterr().out
    path = _write(tmp_path, args=args, runs={"a": {"model.lr": 0.1}})  # the file edited after the run
    assert sweep_main([path]) == 2
    err = capsys.readouterr().err
    assert (
        "1 run(s) ran with another configuration than the file gives now, so their results are not this "
        "file's: a (changed model.lr 0.05 -> 0.1). Run them again from scratch with --rerun-changed" in err
    )
    assert sweep_main([path, "--rerun-changed", "--dry-run"]) == 0
    assert "a: changed since it ran: starting again in a new version folder" in capsys.readouterr().out
