"""The package's structure: imports flow one way (basics -> domain -> entry points, scripts/import_graph.py), and
names that changed keep working in configs and checkpoints written before the change (cifar_pl.renames)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest
import torch
import yaml

from cifar_pl.callbacks import EndOfTestReport, EvaluateEachEpoch
from cifar_pl.renames import CLASS_PATHS, renamed

from .helpers import run_cli

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import import_graph  # noqa: E402


def test_imports_flow_one_way_with_no_cycle_and_no_undeclared_deferred_import():
    found = import_graph.problems(import_graph.read_graph())
    assert found == {"cycles": [], "cycles at load time": [], "upward imports": [],
                     "undeclared function-level imports": []}  # fmt: skip


def test_the_graph_check_sees_a_cycle_and_an_upward_import(tmp_path, monkeypatch):
    # the check itself can fail: a basics module importing the LightningModule is both
    graph = import_graph.read_graph()
    graph["cifar_pl.errors"] = [("cifar_pl.lit", 1, False, False)]
    graph["cifar_pl.lit"] = [*graph["cifar_pl.lit"], ("cifar_pl.errors", 1, False, False)]
    found = import_graph.problems(graph)
    assert found["cycles"] and any("cifar_pl.errors:1 -> cifar_pl.lit" in u for u in found["upward imports"])


def test_every_old_class_path_names_a_class_that_exists():
    import importlib

    for old, new in CLASS_PATHS.items():
        module, name = new.rsplit(".", 1) if "." in new else ("cifar_pl.callbacks", new)
        assert isinstance(getattr(importlib.import_module(module), name), type), old


def test_renamed_replaces_old_class_paths_only_and_logs_once(caplog):
    config = {"trainer": {"callbacks": [{"class_path": "cifar_pl.callbacks.test_each_epoch.TestEachEpoch",
                                         "init_args": {"every_n_epochs": 2}}]},
              "model": {"net": "cifar_pl.callbacks.TestReport"}}  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="cifar_pl"):
        new = renamed(config)
        renamed(config)
    assert new["trainer"]["callbacks"][0] == {
        "class_path": "cifar_pl.callbacks.EvaluateEachEpoch", "init_args": {"every_n_epochs": 2}
    }  # fmt: skip
    assert new["model"]["net"] == "cifar_pl.callbacks.TestReport"  # not a class path: left alone
    assert renamed("cifar_pl.callbacks.TestReport") == "cifar_pl.callbacks.EndOfTestReport"
    notes = [r.getMessage() for r in caplog.records if "TestEachEpoch" in r.getMessage()]
    assert len(notes) == 1 and "is now cifar_pl.callbacks.EvaluateEachEpoch" in notes[0]
    plain = {"model": {"net": "model_a"}}
    assert renamed(plain) is plain


@pytest.mark.parametrize("how", ["command line", "config file"])
def test_a_config_with_the_old_callback_names_still_runs(cifar10_root, tmp_path, how):
    if how == "command line":
        extra = ("--trainer.callbacks+=cifar_pl.callbacks.TestEachEpoch "
                 "--trainer.callbacks+=cifar_pl.callbacks.TestReport")  # fmt: skip
    else:
        old = tmp_path / "old.yaml"
        old.write_text(yaml.safe_dump({"trainer": {"callbacks": [
            {"class_path": "cifar_pl.callbacks.test_each_epoch.TestEachEpoch", "init_args": {"every_n_epochs": 1}},
            {"class_path": "cifar_pl.callbacks.test_report.TestReport"}]}}))  # fmt: skip
        extra = f"--config {old}"
    cli = run_cli("fit", "model_a", cifar10_root,
                  f"--experiment old --trainer.fast_dev_run 1 --data.batch_size 16 {extra}", cwd=tmp_path)  # fmt: skip
    kinds = [type(cb) for cb in cli.trainer.callbacks]
    assert EvaluateEachEpoch in kinds and kinds.count(EndOfTestReport) == 1


def test_a_checkpoint_recording_the_old_names_resumes_exactly(cifar10_root, tmp_path):
    from cifar_pl.checkpoints import read_checkpoint
    from cifar_pl.stages import plan_continuation

    extra = "--trainer.callbacks+=cifar_pl.callbacks.EvaluateEachEpoch"
    cli = run_cli("fit", "model_a", cifar10_root, f"--experiment old --trainer.max_epochs 1 --data.batch_size 64 "
                  f"--data.train_size 128 {extra}", cwd=tmp_path)  # fmt: skip
    last = tmp_path / cli.trainer.log_dir / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, weights_only=True)
    config = ckpt["callbacks"]["RunConfig"]["config"]
    (entry,) = [c for c in config["trainer"]["callbacks"] if "EvaluateEachEpoch" in c["class_path"]]
    entry["class_path"] = (
        "cifar_pl.callbacks.test_each_epoch.TestEachEpoch"  # as a run before the rename saved it
    )
    torch.save(ckpt, last)
    read = read_checkpoint(last)
    assert read.config["trainer"]["callbacks"] == cli._config_view["trainer"]["callbacks"]
    assert plan_continuation(read, cli._config_view, None).kind == "resume"


def test_a_stage_finds_its_parent_after_lightning_logs_moves_and_reads_old_absolute_links(tmp_path):
    import json
    import shutil

    from cifar_pl.runs import STAGE, stage_parent, write_stage

    exp = tmp_path / "a" / "lightning_logs" / "exp"
    (exp / "version_0" / "checkpoints").mkdir(parents=True)
    (exp / "version_0" / "checkpoints" / "last.ckpt").write_bytes(b"x")
    (exp / "version_1").mkdir()
    write_stage(
        exp / "version_1",
        exp / "version_0" / "checkpoints" / "last.ckpt",
        2,
        18,
        [("model.optim.lr", 0.1, 0.01)],
    )
    assert json.loads((exp / "version_1" / STAGE).read_text())["parent_run"] == "../version_0"
    moved = tmp_path / "b" / "logs"
    shutil.move(tmp_path / "a" / "lightning_logs", moved)
    assert stage_parent(moved / "exp" / "version_1") == (moved / "exp" / "version_0").resolve()
    # a stage.json written before the change holds the absolute path
    (moved / "exp" / "version_1" / STAGE).write_text(
        json.dumps({"parent_run": str(moved / "exp" / "version_0")})
    )
    assert stage_parent(moved / "exp" / "version_1") == (moved / "exp" / "version_0").resolve()
    (moved / "exp" / "version_1" / STAGE).write_text("{not json")
    assert stage_parent(moved / "exp" / "version_1") is None


def test_every_model_option_says_whether_an_exact_resume_may_change_it():
    """A new option must be put in its group's RESUME_NEUTRAL or TRAINING: an unclassified one fails here (and
    would otherwise silently make an exact resume a new stage, or the other way round)."""
    import dataclasses
    import inspect

    from cifar_pl.lit import ImageClassifier
    from cifar_pl.lit.options import GROUPS, TOP_LEVEL_LINKED, TOP_LEVEL_TRAINING
    from cifar_pl.renames import MODEL_KEYS
    from cifar_pl.stages import differences

    params = inspect.signature(ImageClassifier.__init__).parameters
    top = {n for n, p in params.items() if p.kind is not p.VAR_KEYWORD} - {"self"}  # **old_keys: renames
    assert top == TOP_LEVEL_TRAINING | TOP_LEVEL_LINKED | {g.KEY for g in GROUPS}
    for group in GROUPS:
        names = {f.name for f in dataclasses.fields(group)}
        assert group.RESUME_NEUTRAL | group.TRAINING == names, group.__name__
        assert not group.RESUME_NEUTRAL & group.TRAINING, group.__name__
        # and the resume check acts on it: a change of a neutral field is no change, of a training one a change
        for name in names:
            old = {"model": {group.KEY: {name: "a"}}}
            new = {"model": {group.KEY: {name: "b"}}}
            assert bool(differences(old, new)) == (name in group.TRAINING), f"{group.KEY}.{name}"
    fields_by_key = {f"{g.KEY}.{f.name}" for g in GROUPS for f in dataclasses.fields(g)}
    assert set(MODEL_KEYS.values()) <= fields_by_key  # every old key maps to a field that exists


def test_a_checkpoint_with_flat_option_keys_builds_the_same_model(tmp_path):
    """A checkpoint written before the grouping (flat hyper-parameters) is read into the groups."""
    from cifar_pl.checkpoints import read_checkpoint

    from .helpers.hostile import write_checkpoint

    path = write_checkpoint(tmp_path / "old.ckpt", num_classes=3, optimizer="adam", lr=0.003, tta="flip",
                            ema_decay=0.9, init_from="/etc/passwd", compile=True)  # fmt: skip
    model = read_checkpoint(path).build_model()
    assert model.optim.name == "adam" and model.optim.lr == 0.003 and model.evaluation.tta == "flip"
    assert model.average.decay == 0.9 and model.ema is not None
    assert model.init.weights is None and model.runtime.compile is False  # switched off by the reader


def test_old_flat_keyword_arguments_build_the_same_model(caplog):
    """A notebook of before the grouping (``ImageClassifier(lr=0.1, ...)``) builds the model the grouped options
    build, with a note naming the new keys; a name that never was an argument stays a TypeError."""
    import logging

    from cifar_pl.lit import ImageClassifier
    from cifar_pl.lit.options import Average, Optim, Schedule

    with caplog.at_level(logging.WARNING, logger="cifar_pl"):
        old = ImageClassifier(net="model_g", num_classes=3, optimizer="adam", lr=0.1, weight_decay=1e-4,
                              scheduler="cosine", warmup_epochs=2, ema_decay=0.9, tta="flip")  # fmt: skip
    new = ImageClassifier(
        net="model_g", num_classes=3, optim=Optim(name="adam", lr=0.1, weight_decay=1e-4),
        schedule=Schedule(name="cosine", warmup_epochs=2), average=Average(decay=0.9), evaluation={"tta": "flip"},
    )  # fmt: skip
    assert dict(old.hparams) == dict(new.hparams)
    assert old.optim.lr == 0.1 and old.average.decay == 0.9 and old.ema is not None
    assert "lr -> optim.lr" in caplog.text
    # a group given as well wins over the old key, and is said
    both = ImageClassifier(net="model_g", num_classes=3, lr=0.5, optim=Optim(lr=0.2, momentum=0.8))
    assert both.optim.lr == 0.2 and both.optim.momentum == 0.8
    with pytest.raises(TypeError, match="unexpected keyword argument.*learning_rate"):
        ImageClassifier(net="model_g", learning_rate=0.1)


def test_the_changelog_lists_every_rename():
    """CHANGELOG.md tells users every old -> new name of the rename tables."""
    from pathlib import Path

    from cifar_pl.renames import CLASS_PATHS, MODEL_KEYS

    text = (Path(__file__).parents[1] / "CHANGELOG.md").read_text()
    pairs = [(f"model.{o}", f"model.{n}") for o, n in MODEL_KEYS.items()] + list(CLASS_PATHS.items())
    missing = [f"{o} -> {n}" for o, n in pairs if f"| `{o}` | `{n}` |" not in text]
    assert not missing, f"CHANGELOG.md lacks {missing}"


def test_the_changelogs_module_moves_name_modules_and_names_that_exist():
    """Every `cifar_pl.<module>[.<name>]` the changelog's module table gives as new imports (and has the name); every
    old module it gives is gone, except the command's own `cifar_pl.sweep`."""
    import importlib
    import importlib.util
    import re
    from pathlib import Path

    text = (Path(__file__).parents[1] / "CHANGELOG.md").read_text()
    section = text.split("### The sweep engine is a package", 1)[1].split("\n### ", 1)[0]
    rows = [line.split("|")[1:3] for line in section.splitlines() if line.startswith("| `cifar_pl")]
    assert rows
    for old, new in rows:
        for dotted, names in re.findall(r"`(cifar_pl[\w.]*)`(?: \(([^)]*)\))?", new):
            try:
                module = importlib.import_module(dotted)
            except ModuleNotFoundError:  # a name in a module
                mod, _, name = dotted.rpartition(".")
                assert hasattr(importlib.import_module(mod), name), dotted
                continue
            for name in re.findall(r"`(\w+)`", names):
                assert hasattr(module, name), f"{dotted}.{name}"
        package = Path(__file__).parents[1] / "cifar_pl"
        for dotted in re.findall(r"`(cifar_pl[\w.]*)`", old):
            if dotted != "cifar_pl.sweep" and "." not in dotted.removeprefix("cifar_pl."):
                gone = dotted.removeprefix("cifar_pl.")
                assert not (package / f"{gone}.py").exists() and not (package / gone).is_dir(), (
                    f"{dotted} exists"
                )


def test_one_image_size_a_flatten_head_is_built_for_the_datas_size(photo_root, tmp_path):
    from cifar_pl.errors import BadValue
    from cifar_pl.lit import ImageClassifier
    from cifar_pl.models import create_model, get_cfg, list_models

    # the registry says which nets are built for one size, and the built nets agree
    for name in (n for n in list_models() if n not in ("timm_backbone", "xception")):
        if get_cfg(name).sized:
            assert create_model(name, input_size=48).fixed_input_size == (48, 48), name
        else:
            assert getattr(create_model(name), "fixed_input_size", None) is None, name
    model = ImageClassifier(net="model_g", num_classes=3, image_size=48)
    assert model.net.fixed_input_size == (48, 48) and model.net(torch.zeros(2, 3, 48, 48)).shape == (2, 3)
    with pytest.raises(BadValue, match="net_kwargs.input_size 32 is not the data's image size 48"):
        ImageClassifier(net="model_g", num_classes=3, image_size=48, net_kwargs={"input_size": 32})
    # through the CLI: data.image_size is linked into the model, and the checkpoint keeps it
    cli = run_cli("fit", "transfer/1_scratch", photo_root,
                  "--experiment sized --model.net model_g --data.image_size 24 --trainer.max_epochs 1 "
                  "--data.batch_size 16 --test_after_fit false", cwd=tmp_path)  # fmt: skip
    assert cli.model.hparams.image_size == 24 and cli.model.net.fixed_input_size == (24, 24)
    from cifar_pl.checkpoints import read_checkpoint

    saved = read_checkpoint(tmp_path / cli.trainer.log_dir / "checkpoints" / "last.ckpt")
    assert saved.model_args["image_size"] == 24 and saved.image_size() == 24
    assert saved.build_model().net.fixed_input_size == (24, 24)
    # scoring it at another size is one line, not a state-dict size mismatch
    with pytest.raises(ValueError, match=r"built for 24x24 images \(a flatten head\), the data gives 32x32: pass "
                                         r"--data.image_size 24"):  # fmt: skip
        run_cli("validate", "transfer/1_scratch", photo_root, "--experiment sized --ckpt_path last "
                "--data.image_size 32", cwd=tmp_path)  # fmt: skip


def test_old_keys_in_every_place_a_config_gives_them(tmp_path, caplog):
    """Dotted top-level keys after an include, a file with old and new keys for one option (the new one is used,
    and said), a group given as a word, the short callback names, and an old run whose flatten head was sized
    through net_kwargs.input_size resuming as the same configuration."""
    import logging

    from cifar_pl.errors import BadValue
    from cifar_pl.stages import differences

    with caplog.at_level(logging.WARNING, logger="cifar_pl"):
        out = renamed({"config": "base.yaml", "model.lr": 0.01, "model.ema_decay": 0.9})
        assert out == {"config": "base.yaml", "model.optim.lr": 0.01, "model.average.decay": 0.9}
        both = renamed({"model": {"lr": 0.2, "optim": {"lr": 0.3}}})
    assert both["model"]["optim"]["lr"] == 0.3
    assert (
        "ignored model.lr 0.2 (the file also gives model.optim.lr 0.3): the grouped key is used"
        in caplog.text
    )
    with pytest.raises(BadValue, match="model.optim is 'adam', not a mapping of its keys"):
        renamed({"model": {"optim": "adam", "lr": 0.1}})
    assert renamed("TestEachEpoch") == "TestEachEpoch"  # a bare word in a file is never taken for a class
    from cifar_pl.renames import command_line

    assert command_line(["--trainer.callbacks+=TestEachEpoch", "--trainer.callbacks+", "TestReport",
                         "--experiment", "TestReport"]) == [
        "--trainer.callbacks+=EvaluateEachEpoch", "--trainer.callbacks+", "EndOfTestReport", "--experiment", "TestReport"
    ]  # fmt: skip
    old = {
        "model": {"net": "model_g", "net_kwargs": {"input_size": 64}},
        "data": {"init_args": {"image_size": 64}},
    }
    new = {"model": {"net": "model_g", "net_kwargs": None}, "data": {"init_args": {"image_size": 64}}}
    assert differences(old, new) == []
    new["data"]["init_args"]["image_size"] = 48
    assert differences(old, new)  # another size is another net


@pytest.mark.parametrize("module, argv", [
    ("cifar_pl.predict", []), ("cifar_pl.scrape", []), ("cifar_pl.sweep", []), ("cifar_pl.viz.__main__", ["cam"]),
    ("cifar_pl.viz.__main__", ["curves"]), ("cifar_pl.viz.__main__", ["activations"]),
])  # fmt: skip
def test_every_option_of_the_commands_has_help_text(module, argv, capsys):
    """`--help` of each command documents every option (argparse leaves an option without help as a bare name)."""
    import importlib
    import re

    with pytest.raises(SystemExit):
        importlib.import_module(module).main([*argv, "--help"])
    text = capsys.readouterr().out
    lines = text[text.index("options:") :].splitlines()[1:]
    bare = []
    for i, line in enumerate(lines):
        if not line.startswith("  -") or line.lstrip().startswith("-h"):
            continue
        spec_only = re.fullmatch(r"  -\S.*?(?:\s{2,}\S.*)?", line) and not re.search(
            r"\s{2,}\S", line.strip()
        )
        follows = lines[i + 1] if i + 1 < len(lines) else ""
        if spec_only and not follows.startswith(
            " " * 8
        ):  # argparse puts a long option's help on the next line
            bare.append(line.strip())
    assert bare == [], f"{module}: options without help: {bare}"
