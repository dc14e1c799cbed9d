"""The page of ``python -m cifar_pl serve``, used as a person uses it: headless Chromium opens it, real photos are
chosen in its file input (what a drop does), and the page shows each photo's top classes and CAM."""

from __future__ import annotations

import pytest

from .helpers.browser import Browser, chromium
from .helpers.deploy import served, write_net_checkpoint

pytest.importorskip("onnxruntime")
pytest.importorskip("websockets")
from cifar_pl.export import export  # noqa: E402
from cifar_pl.serve.app import build_app  # noqa: E402
from cifar_pl.serve.engine import OnnxPredictor  # noqa: E402

pytestmark = [
    pytest.mark.slow,
    pytest.mark.real_data,
    pytest.mark.skipif(chromium() is None, reason="no chromium on the PATH (apt-get install chromium)"),
]


def test_the_page_shows_the_top_classes_and_the_cam_of_each_dropped_photo(real_data, tmp_path):
    names = [f"class{i}" for i in range(10)]
    ckpt = write_net_checkpoint(tmp_path / "m.ckpt", "resnet20", class_names=names)
    engine = OnnxPredictor(export(ckpt, "onnx", tmp_path / "m.onnx").file)
    photos = [sorted((real_data / "flowers" / c).glob("*.jpg"))[0] for c in ("sunflower", "daisy")]
    expected = engine.predict_files(photos, top_k=3)
    with served(build_app(engine)) as url, Browser() as page:
        page.goto(url + "/")
        assert page.evaluate("document.querySelectorAll('.result').length") == 0
        page.choose_files("#files", photos)
        page.wait_for("document.querySelectorAll('.result[data-state=done]').length === 2", timeout=60)
        shown = page.evaluate(
            "[...document.querySelectorAll('.result')].map(d => ({name: d.querySelector('.name').textContent, "
            "labels: [...d.querySelectorAll('.row .label')].map(e => e.textContent), "
            "pcts: [...d.querySelectorAll('.row .pct')].map(e => e.textContent), "
            "img: d.querySelector('img').src.slice(0, 21), loaded: d.querySelector('img').naturalWidth}))"
        )
    by_name = {s["name"]: s for s in shown}
    for photo, row in zip(photos, expected, strict=True):
        s = by_name[photo.name]
        assert s["labels"] == [t["class"] for t in row["top"]]
        assert s["pcts"] == [f"{100 * t['prob']:.1f}%" for t in row["top"]]
        assert (
            s["img"] == "data:image/png;base64" and s["loaded"] > 0
        )  # the CAM picture, decoded by the browser
