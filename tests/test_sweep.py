"""Sweeps (cifar_pl.sweep): a sweep runs, resumes, skips what finished and plots; every sweep file of the repository
parses; and a sweep checks everything before its first run: the file (aliases bounded), names it owns, run-name
collisions, every run's configuration, and every finished run's recorded configuration against the file as it is
now."""

from __future__ import annotations

import json
import os
import re
import signal
import time
import tracemalloc
from pathlib import Path

import pytest
import yaml
from PIL import Image

from cifar_pl.errors import BadValue
from cifar_pl.safe_yaml import AliasBomb
from cifar_pl.sweeps.cli import main as sweep_main
from cifar_pl.sweeps.report import group_finals, overlap_lines, summary_lines
from cifar_pl.sweeps.spec import load_sweep
from cifar_pl.viz.curves import compare_figure, final_bars_figure

from .helpers import CONFIGS, REPO

SEQ = [
    "--engine",
    "sequential",
]  # these tests are of the sequential engine (the Ray engine's: tests/test_scale.py)


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
    with pytest.raises(ValueError, match=r"the grid values \{'model.optim.lr': '0.1'\} make the run name 'lr=0.1', which "
                                         r"another grid combination has too"):  # fmt: skip
        load_sweep(_write(tmp_path, grid={"model.optim.lr": [0.1, "0.1"]}))


def test_a_sweep_file_of_nested_aliases_is_refused_at_once_with_bounded_memory(tmp_path):
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]  # 9**10 values
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\nsweep: x\nconfig: a.yaml\nruns: {a: {model.optim.lr: *a9}}\n")
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
    assert sweep_main([path, *SEQ]) == 2
    err = capsys.readouterr().err
    assert "error: " in err and "run 'typo': unrecognized arguments: --model.lrr 0.1" in err
    assert not (tmp_path / "lightning_logs").exists()  # nothing ran, nothing was written


@pytest.mark.slow  # a training process (or several) of its own: the slow tier
def test_a_finished_run_is_skipped_only_with_the_configuration_it_ran(
    tmp_path, monkeypatch, capsys, cifar10_root
):
    monkeypatch.chdir(tmp_path)
    args = {"data.data_dir": str(cifar10_root), "trainer.max_epochs": 1, "data.batch_size": 32,
            "trainer.enable_progress_bar": False, "trainer.accelerator": "cpu", "test_after_fit": False}  # fmt: skip
    path = _write(tmp_path, args=args, runs={"a": {"model.optim.lr": 0.05}})
    assert sweep_main([path, *SEQ]) == 0
    record = json.loads((tmp_path / "lightning_logs/checked/a/version_0/run.json").read_text())
    assert record["status"] == "complete" and record["config"]["model"]["optim"]["lr"] == 0.05
    capsys.readouterr()
    assert sweep_main([path, *SEQ]) == 0  # the configuration the run recorded is the file's: skipped
    assert "a: finished before, skipped" in capsys.readouterr().out
    path = _write(tmp_path, args=args, runs={"a": {"model.optim.lr": 0.1}})  # the file edited after the run
    assert sweep_main([path, *SEQ]) == 2
    err = capsys.readouterr().err
    assert (
        "1 run(s) ran with another configuration than the file gives now, so their results are not this "
        "file's: a (changed model.optim.lr 0.05 -> 0.1). Run them again from scratch with --rerun-changed"
        in err
    )
    assert sweep_main([path, "--rerun-changed", "--dry-run"]) == 0
    assert "a: changed since it ran: starting again in a new version folder" in capsys.readouterr().out


@pytest.mark.slow  # a training process (or several) of its own: the slow tier
def test_sweep_runs_resumes_skips_and_plots(cifar10_root, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    sweep = tmp_path / "tiny.yaml"
    sweep.write_text(yaml.safe_dump({
        "sweep": "tiny", "config": str(CONFIGS / "corrupt" / "labels.yaml"),
        "args": {"trainer.max_epochs": 2, "trainer.limit_train_batches": 2, "data.batch_size": 16},
        "grid": {"data.corrupt": ["none", "random_pixels"]},
    }))  # fmt: skip
    spec = load_sweep(sweep)
    assert list(spec["runs"]) == ["corrupt=none", "corrupt=random_pixels"]
    extra = [
        "--data.data_dir",
        str(cifar10_root),
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.accelerator",
        "cpu",
    ]
    assert sweep_main([str(sweep), *extra, "--dry-run"]) == 0
    said = capsys.readouterr().out
    assert "[sweep] dry run: 2 of 2 runs would run; nothing is started" in said
    assert (
        "[sweep 1/2] corrupt=none: starting (dry run: not started)" in said
        and not (tmp_path / "lightning_logs").exists()
    )
    assert sweep_main([str(sweep), *extra, *SEQ]) == 0
    said = capsys.readouterr().out
    root = tmp_path / "lightning_logs" / "tiny"
    # progress: run k of N, where its output goes, its result, the time so far and an estimate of the rest
    assert (
        f"[sweep 1/2] corrupt=none: starting (output: {Path('lightning_logs/tiny/corrupt=none/sweep.log')})"
        in said
    )
    assert re.search(r"\[sweep 1/2\] corrupt=none: done in [0-9.]+ s, test/acc [0-9.]+; elapsed \d+ s, about \d+ s left "
                     r"\(1 runs\)", said)  # fmt: skip
    assert re.search(
        r"\[sweep 2/2\] corrupt=random_pixels: done in [0-9.]+ s, test/acc [0-9.]+; elapsed \d+ s\n", said
    )
    assert "Epoch" not in said and "┏" not in said  # the children's own output is in their logs, not here
    for name in spec["runs"]:
        result = json.loads((root / name / "result.json").read_text())
        assert result["epochs"] == 2 and "test/acc" in result and "train/acc" in result
        assert "test/acc" in (root / name / "sweep.log").read_text()  # the child's printed test table
    # the charts of the comparison: one per metric, PNG and SVG, and the final-value bars
    for stem in ("train_loss", "train_acc", "val_acc", "train_epoch_time", "final"):
        with Image.open(root / "plots" / f"{stem}.png") as im:
            im.verify()
        assert (root / "plots" / f"{stem}.svg").read_text().lstrip().startswith("<?xml")
    summary = (root / "plots" / "summary.md").read_text()
    assert "| corrupt=none | 2 |" in summary and "corrupt=random_pixels" in summary
    # run again: a run whose own record says complete, with the configuration the file gives, is not redone, even
    # without result.json; asked for more epochs, it trains on; a run whose record says it was interrupted resumes
    # from its last checkpoint, in its own folder
    capsys.readouterr()
    assert sweep_main([str(sweep), *extra, *SEQ]) == 0
    assert capsys.readouterr().out.count("finished before, skipped") == 2
    (root / "corrupt=random_pixels" / "result.json").unlink()
    record_path = root / "corrupt=none" / "version_0" / "run.json"
    record = json.loads(record_path.read_text())
    assert record["status"] == "complete" and record["tested"] and "test/acc" in record["test"]
    record_path.write_text(json.dumps({**record, "status": "interrupted"}))  # as a SIGTERM mid-run leaves it
    assert sweep_main([str(sweep), *extra, *SEQ, "--trainer.max_epochs", "3"]) == 0
    out = capsys.readouterr().out
    assert "corrupt=random_pixels: resuming (complete) from" in out
    assert "corrupt=none: resuming (interrupted) from" in out and "version_0/checkpoints/last.ckpt" in out
    assert not (root / "corrupt=random_pixels" / "version_1").exists()
    assert not (root / "corrupt=none" / "version_1").exists()
    for name in spec["runs"]:
        assert json.loads((root / name / "result.json").read_text())["epochs"] == 3


@pytest.mark.slow  # a training process (or several) of its own: the slow tier
def test_a_run_stopped_by_a_signal_is_reported_and_not_marked_done(
    cifar10_root, tmp_path, monkeypatch, capsys
):
    from cifar_pl.runs import run_status

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("PAUSE_AT_STEP", "2")
    monkeypatch.setenv("PAUSE_MARKER", str(tmp_path / "paused"))
    sweep = tmp_path / "stop.yaml"
    sweep.write_text(yaml.safe_dump({
        "sweep": "stop", "config": str(CONFIGS / "corrupt" / "labels.yaml"),
        "args": {"trainer.max_epochs": 2, "data.batch_size": 16, "trainer.callbacks+": "tests.helpers.PauseAt"},
        "runs": {"a": {}},
    }))  # fmt: skip

    import threading

    def stop_when_paused():  # what a scheduler does: SIGTERM to the sweep while its run is mid-epoch
        while not (tmp_path / "paused").exists():
            time.sleep(0.1)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=stop_when_paused, daemon=True).start()
    extra = ["--data.data_dir", str(cifar10_root), "--trainer.enable_progress_bar", "false"]
    assert sweep_main([str(sweep), *extra, *SEQ]) == 128 + signal.SIGTERM
    assert "a: interrupted (exit 143" in capsys.readouterr().out
    assert run_status(tmp_path / "lightning_logs" / "stop" / "a") == "interrupted"
    assert not (tmp_path / "lightning_logs" / "stop" / "a" / "result.json").exists()


SWEEPS = sorted((CONFIGS / "sweeps").glob("*.yaml")) + sorted(
    (CONFIGS / "writeups" / "sweeps").glob("*.yaml")
)


@pytest.mark.parametrize("path", SWEEPS, ids=[p.relative_to(CONFIGS).as_posix() for p in SWEEPS])
def test_every_sweep_names_valid_configs_and_keys(path, capsys):
    from cifar_pl.__main__ import cli_main
    from cifar_pl.sweeps.spec import _as_args

    spec = load_sweep(path)
    runs = spec["runs"]
    if spec["search"] is not None:  # a search: each end of each searched range (each choice) as a run
        runs = {
            f"{k}={v}": {k: v}
            for k, dist in spec["search"]["space"].items()
            for v in next(iter(dist.values()))
        }
    assert runs and all(name and "/" not in name for name in runs)
    for overrides in runs.values():  # every run's arguments parse (a misspelt key would exit 2)
        args = ["fit"]
        for config in spec["configs"]:
            args += ["--config", str(CONFIGS.parent / config)]
        with pytest.raises(SystemExit) as e:
            cli_main(args + _as_args(spec["args"]) + _as_args(overrides) + ["--print_config"])
        assert e.value.code == 0
        printed = yaml.safe_load(capsys.readouterr().out)
        for key, value in {**spec["args"], **overrides}.items():
            node = printed
            parts = key.split(".")
            for part in parts[:-1]:
                node = node[part]
            if parts[0] == "data" and parts[-1] not in node and "init_args" in node:
                node = node["init_args"]  # data.batch_size means data.init_args.batch_size
            assert node[parts[-1]] == value, (key, node[parts[-1]], value)


# ---- repeats: seeds make groups, summaries with mean ± std, bands and error bars ----
def _sweep(tmp_path, **spec):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"sweep": "s", "config": "a.yaml", **spec}))
    return load_sweep(path)


def test_seeds_make_groups_of_runs_that_differ_only_in_the_seed(tmp_path):
    spec = _sweep(tmp_path, grid={"model.optim.lr": [0.1, 0.2]}, seeds=[7, 8])
    assert list(spec["groups"]) == ["lr=0.1", "lr=0.2"]
    assert spec["groups"]["lr=0.1"] == ["lr=0.1,seed=7", "lr=0.1,seed=8"]
    assert spec["runs"]["lr=0.2,seed=8"] == {"model.optim.lr": 0.2, "seed_everything": 8}
    assert len(spec["runs"]) == 4
    assert _sweep(tmp_path, runs={"a": {}}, repeats=3)["groups"]["a"] == ["a,seed=0", "a,seed=1", "a,seed=2"]
    plain = _sweep(tmp_path, runs={"a": {}})
    assert plain["groups"] == {"a": ["a"]} and plain["seeds"] == [] and plain["runs"] == {"a": {}}
    for bad, says in (
        ({"seeds": [1, 1]}, "distinct"),
        ({"seeds": [0.5]}, "distinct whole numbers"),
        ({"seeds": []}, "distinct whole numbers"),
        ({"repeats": 0}, "1 to 100"),
        ({"repeats": True}, "1 to 100"),
        ({"seeds": [0], "repeats": 2}, "not both"),
        ({"seeds": [0], "args": {"seed_everything": 1}}, "`args:` sets seed_everything"),
        ({"seeds": [0], "runs": {"b": {"seed_everything": 1}}}, "run 'b' sets seed_everything"),
        ({"runs": {"b,seed=1": {}}}, "names the repeats"),
    ):
        spec = {"runs": {"a": {}}, **bad}
        with pytest.raises(BadValue, match=says):
            _sweep(tmp_path, **spec)


def _group(finals: list[float], metric: str = "test/acc") -> list[dict]:
    return [{metric: [(0, v - 0.1), (1, v)], "train/loss": [(0, 2.0), (1, 1.0)]} for v in finals]


def test_summary_gives_mean_and_std_and_says_which_intervals_overlap():
    groups = {
        "a": _group([0.50, 0.52, 0.54]),
        "b": _group([0.51, 0.53, 0.55]),
        "c": _group([0.70, 0.71, 0.72]),
    }
    finals = group_finals(groups, "test/acc")
    mean, std, n = finals["a"]
    assert (round(mean, 6), round(std, 6), n) == (0.52, 0.02, 3)  # sample std (n - 1)
    said = overlap_lines(finals, "test/acc")
    assert len(said) == 3
    assert said[0].startswith("- a and b: test/acc intervals overlap")
    assert said[1].startswith("- c above a on test/acc by 0.1900") and "do not overlap" in said[1]
    text = "\n".join(summary_lines(groups, repeated=True))
    assert "| a | 3 | 2 | 1.0000 ± 0.0000 | 0.5200 ± 0.0200 |" in text
    assert "Overlap of mean ± std intervals, test/acc:" in text
    # one run per group: plain values, no overlap statements
    single = "\n".join(summary_lines({"a": _group([0.5])}, repeated=False))
    assert "| a | 2 | 1.0000 | 0.5000 |" in single and "overlap" not in single


def test_repeated_runs_are_drawn_as_a_band_and_error_bars():
    groups = {"a": _group([0.50, 0.52, 0.54]), "b": _group([0.6])}
    ax = compare_figure(groups, "test/acc").axes[0]
    assert len(ax.collections) == 1  # one ±std band, for the repeated group only
    band = ax.collections[0].get_paths()[0].vertices
    assert band[:, 1].max() == pytest.approx(0.54) and band[:, 1].min() == pytest.approx(0.40)
    assert "a (mean ± std, n=3)" in [t.get_text() for t in ax.get_legend().get_texts()]
    bars = final_bars_figure(groups, ("test/acc",)).axes[0]
    heights = [round(p.get_height(), 4) for p in bars.patches]
    assert heights == [0.52, 0.6]
    errorbars = [c for c in bars.containers if type(c).__name__ == "ErrorbarContainer"]
    assert len(errorbars) == 1  # the std as error bars
    assert bars.get_ylabel() == "test/acc, last epoch (mean ± 1 std)"


@pytest.mark.slow  # a training process (or several) of its own: the slow tier
def test_a_seeded_sweep_runs_each_seed_and_summarises_groups(cifar10_root, tmp_path, monkeypatch, capsys):
    from cifar_pl.sweeps.cli import main as sweep_main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.yaml").write_text(yaml.safe_dump({
        "sweep": "rep", "config": str(CONFIGS / "model_a.yaml"), "runs": {"a": {}, "b": {}}, "seeds": [3, 4],
        "args": {"trainer.max_epochs": 1, "trainer.limit_train_batches": 2, "data.batch_size": 16},
    }))  # fmt: skip
    extra = ["--data.data_dir", str(cifar10_root), "--trainer.enable_progress_bar", "false"]
    assert sweep_main([str(tmp_path / "s.yaml"), "--only", "a", *extra, *SEQ]) == 0
    runs = tmp_path / "lightning_logs" / "rep"
    seeds = [yaml.safe_load((runs / f"a,seed={s}" / "version_0" / "config.yaml").read_text())["seed_everything"]
             for s in (3, 4)]  # fmt: skip
    assert seeds == [3, 4]
    summary = (runs / "plots" / "summary.md").read_text()
    assert "| a | 2 | 1 |" in summary and " ± " in summary
    assert "| b |" not in summary  # a group with no run yet is left out, not drawn empty
    # --only takes a group name for all its seeds: both are done, so both are skipped
    assert sweep_main([str(tmp_path / "s.yaml"), "--only", "a", *extra, *SEQ]) == 0
    assert capsys.readouterr().out.count("finished before, skipped") == 2


# ---- fast_dev_run, the sweep's lock, its own folders, records left by a killed process ----
def test_a_run_named_after_the_sweeps_own_folders_is_refused(tmp_path):
    for name in ("plots", "search"):
        with pytest.raises(BadValue, match=f"run name '{name}' is the name of the sweep's own folder"):
            load_sweep(_write(tmp_path, runs={name: {}}))


def test_a_second_copy_of_a_running_sweep_is_one_line_and_starts_nothing(tmp_path, monkeypatch, capsys):
    import fcntl

    monkeypatch.chdir(tmp_path)
    path = _write(tmp_path, args={"trainer.max_epochs": 1}, runs={"a": {}})
    folder = tmp_path / "lightning_logs" / "checked"
    folder.mkdir(parents=True)
    held = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT)  # the first copy, as sweep_lock holds it
    fcntl.flock(held, fcntl.LOCK_EX)
    os.write(held, b"4242")
    try:
        assert sweep_main([path, *SEQ, "--data.data_dir", str(tmp_path)]) == 2
    finally:
        os.close(held)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "this sweep is running in another process (pid 4242)" in err[0], err
    assert sorted(p.name for p in folder.iterdir()) == [".lock"]  # no run started


def test_a_record_left_running_by_a_process_that_is_gone_reads_as_interrupted(tmp_path):
    import socket
    import subprocess
    import sys

    from cifar_pl.runs import run_status, wait_while_running

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    run = tmp_path / "run"
    (run / "version_0").mkdir(parents=True)
    record = {"status": "running", "pid": gone.pid, "host": socket.gethostname()}
    (run / "version_0" / "run.json").write_text(json.dumps(record))
    assert run_status(run) == "interrupted" and wait_while_running(run, timeout=1)
    (run / "version_0" / "run.json").write_text(json.dumps({**record, "pid": os.getppid()}))  # alive
    assert run_status(run) == "running" and not wait_while_running(run, timeout=0.2, poll=0.05)
    (run / "version_0" / "run.json").write_text(json.dumps({**record, "host": "another-machine"}))
    assert run_status(run) == "running"  # another machine's process cannot be told dead from here
    # trained, its test under way: waited for while its process lives, interrupted when it is gone
    (run / "version_0" / "run.json").write_text(
        json.dumps({**record, "status": "fitted", "pid": os.getppid()})
    )
    assert run_status(run) == "fitted" and not wait_while_running(run, timeout=0.2, poll=0.05)
    (run / "version_0" / "run.json").write_text(json.dumps({**record, "status": "fitted"}))
    assert run_status(run) == "interrupted" and wait_while_running(run, timeout=1)


def test_a_command_line_value_that_the_sweep_sets_per_run_is_one_line(tmp_path, monkeypatch, capsys):
    from cifar_pl.sweeps.spec import check_extra

    monkeypatch.chdir(tmp_path)
    seeded = _write(tmp_path, args={"trainer.max_epochs": 1}, runs={"a": {}}, seeds=[0, 1])
    assert sweep_main([seeded, *SEQ, "--seed_everything", "7"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        len(err) == 1
        and "--seed_everything on the command line is an option the sweep sets per run" in err[0]
    )
    grid = _write(
        tmp_path, "g.yaml", grid={"model.optim.lr": [0.1, 0.2]}, runs={"d": {"data.init_args.data_dir": "x"}}
    )
    for given in (["--model.optim.lr", "0.5"], ["--model.optim.lr=0.5"], ["--data.data_dir", "y"]):
        with pytest.raises(BadValue, match="on the command line is an option the sweep sets per run"):
            check_extra(load_sweep(grid), given)
    # what a run's mapping does not set is merged with it, and an append adds: neither is refused
    merged = _write(tmp_path, "m.yaml", runs={"a": {"model.net_kwargs": {"noise_mode": "channel"}}})
    check_extra(load_sweep(merged), ["--model.net_kwargs.width", "0.25", "--trainer.callbacks+=X"])
    assert not (tmp_path / "lightning_logs").exists()


@pytest.mark.slow  # training processes of their own (a few batches each)
def test_a_fast_dev_run_sweep_reports_tries_and_keeps_nothing(cifar10_root, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    path = _write(tmp_path, args={"trainer.max_epochs": 1, "data.batch_size": 16,
                                  "trainer.enable_progress_bar": False}, grid={"model.optim.lr": [0.02, 0.1]})  # fmt: skip
    argv = [path, *SEQ, "--data.data_dir", str(cifar10_root), "--trainer.fast_dev_run", "true"]
    assert sweep_main(argv) == 0
    out = capsys.readouterr().out
    for name in ("lr=0.02", "lr=0.1"):
        assert f"[sweep] {name}: tried (fast_dev_run: its batches ran; nothing kept)" in out
    assert "failed" not in out and "stopped by" not in out and "not started" not in out
    assert "no charts: the runs were tries" in out
    kept = sorted(
        p.relative_to(tmp_path).as_posix() for p in (tmp_path / "lightning_logs").rglob("*") if p.is_file()
    )
    assert kept == ["lightning_logs/checked/.lock", "lightning_logs/checked/lr=0.02/sweep.log",
                    "lightning_logs/checked/lr=0.1/sweep.log"]  # fmt: skip
    # a try that fails says so, with its exit code and its log's last lines, and the sweep exits 1
    (tmp_path / "empty").mkdir()
    assert sweep_main([*argv, "--data.data_dir", str(tmp_path / "empty"), "--only", "lr=0.1"]) == 1
    out = capsys.readouterr().out
    assert (
        "lr=0.1: the try failed (exit 2)" in out
        and "    | " in out
        and "[sweep] lr=0.1: failed (exit 2)" in out
    )
