"""docs/results.md says only what the records under results/ give: the page is generated from results/page.md and
the records (``python -m cifar_pl.results page``); a number edited by hand on the page, or a record that changed,
fails here. Its prose types no measured number (every one is a directive the records fill in), every row has a
known verdict, and every chart it shows exists."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from cifar_pl import results as R

from .helpers import REPO

NUMBER = re.compile(
    r"(?<![\w.])(?:0\.\d{3,}|\d+\.\d+\s?%)"
)  # 0.585, 68.67 %: figures a run measures (settings such as LR 0.02 have fewer digits)


def test_the_page_is_what_the_records_give():
    assert R.page(check=True) == 0, "run python -m cifar_pl.results page"


def test_a_number_edited_by_hand_on_the_page_fails_the_check(tmp_path, monkeypatch, capsys):
    text = R.render()
    page = tmp_path / "results.md"
    page.write_text(text)
    monkeypatch.setattr(R, "PAGE", page)
    assert R.page(check=True) == 0
    start = text.index("## Verdicts")
    m = re.compile(r"\b0\.(\d{3})\b").search(text, start)
    assert m, "the page shows no measured number"
    last = m.end() - 1  # one digit of one figure, changed by hand
    page.write_text(text[:last] + str((int(text[last]) + 1) % 10) + text[last + 1 :])
    assert R.page(check=True) == 1
    assert "is not what results/ gives" in capsys.readouterr().out


def test_a_changed_record_fails_the_check(tmp_path, monkeypatch):
    copy = tmp_path / "results"
    shutil.copytree(R.RESULTS, copy)
    csvs = sorted(copy.rglob("scalars.csv"))
    assert csvs
    for path in csvs:  # every record's last train/acc moved by 0.05: some figure on the page must change
        lines = path.read_text().splitlines()
        head = lines[0].split(",")
        if "train/acc" not in head:
            continue
        col = head.index("train/acc")
        cells = lines[-2 if lines[-1].split(",")[col] == "" else -1].split(",")
        row = lines.index(",".join(cells))
        cells[col] = f"{float(cells[col]) - 0.05:.6g}"
        lines[row] = ",".join(cells)
        path.write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(R, "RESULTS", copy)
    monkeypatch.setattr(R, "PAGE_SOURCE", copy / "page.md")
    assert R.page(check=True) == 1


def test_the_page_source_types_no_measured_number():
    """Every figure measured here is a directive; a literal number may only be the write-up's own, in a row's
    ``claim:`` or a ``> `` quote of the write-up."""
    bad = []
    for i, line in enumerate(R.PAGE_SOURCE.read_text().splitlines(), 1):
        if line.lstrip().startswith(("claim:", "> ", "was:")):
            continue
        outside = re.sub(r"\{\{.*?\}\}", "", line)
        if NUMBER.search(outside):
            bad.append(f"results/page.md:{i}: {line.strip()[:100]}")
    assert not bad, "measured numbers typed by hand:\n" + "\n".join(bad)


def test_every_row_has_a_known_verdict_and_says_n():
    rows = R.rows(R.PAGE.read_text())
    assert rows
    for row in rows:
        assert row["verdict"] in R.VERDICTS
        assert row["why"].strip()
        if row["verdict"] != "not run here":
            assert re.search(r"\bn = \d", row["measured"]), f"row {row['id']} does not say how many runs"


def test_every_chart_on_the_page_exists():
    for name in re.findall(r"\]\((img/results/[^)]+)\)", R.PAGE.read_text()):
        assert (REPO / "docs" / name).is_file(), name


def test_every_catalogue_sweep_is_a_sweep_file_with_a_budget():
    from cifar_pl.sweeps.spec import load_sweep

    for entry in R.catalogue().values():
        load_sweep(REPO / entry["sweep"])
        assert entry["budget"]["images"] > 0 and entry["write_up"]["images"] > 0


def test_a_record_holds_config_run_and_scalars_and_stays_small():
    runs = [p.parent for p in R.RESULTS.rglob("run.json")]
    assert runs
    for run in runs:
        assert (run / "config.yaml").is_file() and (run / "scalars.csv").is_file()
        assert sum(f.stat().st_size for f in run.iterdir()) < 100_000, run
    assert sum(f.stat().st_size for f in R.RESULTS.rglob("*") if f.is_file()) < 20e6


def test_a_record_is_written_from_a_run_folder_and_read_back(tmp_path):
    from cifar_pl.runs import update_record

    run = tmp_path / "lightning_logs" / "s" / "a,seed=0" / "version_0"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("seed_everything: 0\n")
    update_record(run, status="running", pid=1, host="h")
    with pytest.raises(R.BadValue, match="not complete"):
        R.record_run(run.parent, tmp_path / "lightning_logs", tmp_path / "results")
    from torch.utils.tensorboard import SummaryWriter

    w = SummaryWriter(str(run))
    for step, (epoch, acc) in enumerate([(0, 0.25), (1, 0.5)]):
        w.add_scalar("train/epoch", epoch, step)
        w.add_scalar("train/acc", acc, step)
    w.add_scalar("train/epoch", 2, 2)
    w.add_scalar("test/acc", 0.375, 2)
    w.close()
    update_record(run, status="complete")
    out = R.record_run(run.parent, tmp_path / "lightning_logs", tmp_path / "results")
    assert out == tmp_path / "results" / "s" / "a,seed=0"
    scalars = R.read_csv(out / "scalars.csv")
    assert scalars["train/acc"] == [(1, 0.25), (2, 0.5)]
    assert scalars["test/acc"] == [(2, 0.375)]  # the test after fit sits at the last epoch trained
    assert "pid" not in (out / "run.json").read_text()
    assert R.stat("s/a", "train/acc", results=tmp_path / "results") == (0.5, 0.0, 1)
    assert R.stat("s/a", "train/acc", "epoch=1", results=tmp_path / "results")[0] == 0.25


def test_a_run_name_that_would_leave_results_is_refused(tmp_path):
    outside = tmp_path / "elsewhere" / "x"
    (outside / "version_0").mkdir(parents=True)
    with pytest.raises(ValueError):
        R.record_run(outside, tmp_path / "lightning_logs", tmp_path / "results")
    assert not (tmp_path / "results").exists()


def test_group_names_drop_the_seed():
    assert R.group_of("augment=none,seed=2") == "augment=none"
    assert R.group_of("cifar_frozen_s1") == "cifar_frozen"
    assert R.group_of("plain") == "plain"
    assert Path(R.PAGE_SOURCE).is_file()


def test_every_experiment_file_has_a_result_row():
    """Each config and sweep of configs/writeups/ and configs/transfer/ is covered by a row of the page (through a
    row's sweeps and their base configs, or its ``files:``), if only by one saying why it was not run."""
    covered = R.covered_files(R.rows(R.PAGE.read_text()))
    missing = [f for f in R.experiment_files() if f not in covered]
    assert not missing, f"experiment files with no result row: {missing}"


def test_every_chart_in_the_folder_is_on_the_page():
    """No stale chart: each PNG under docs/img/results/ is drawn by the page (python -m cifar_pl.results page)."""
    shown = set(re.findall(r"\]\(img/results/([^)]+)\)", R.PAGE.read_text()))
    stale = sorted(p.name for p in R.CHARTS.glob("*.png") if p.name not in shown)
    assert not stale, f"charts no page shows: {stale}"


def test_params_counts_the_registrys_net_and_refuses_bad_arguments():
    from cifar_pl.errors import BadValue
    from cifar_pl.results import expand

    assert expand("{{params base_cnn 10}}") == "122,570"  # write-up 003's count of its base CNN
    assert expand("{{params model_g 17 64}}") != expand(
        "{{params model_g 17 32}}"
    )  # a flatten head sized to the data
    with pytest.raises(BadValue, match="give NET CLASSES"):
        expand("{{params base_cnn ten}}")
