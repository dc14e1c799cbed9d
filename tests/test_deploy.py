"""Export, the light predictor and the server (docs/deploy.md): what a user of an exported net relies on."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import cifar_pl.export as export_module
from cifar_pl.__main__ import main as cli
from cifar_pl.evaluation import class_activation_map
from cifar_pl.export import SUFFIXES, export, file_digest
from cifar_pl.inference import Predictor
from cifar_pl.predict import main as predict_cli
from cifar_pl.predict import predict as predict_main

from .helpers import REPO, write_photo
from .helpers.deploy import (
    FAMILIES,
    cifar_test_images,
    eager_logits,
    exported_logits,
    multipart,
    png_bomb,
    post,
    served,
    write_net_checkpoint,
)

ort = pytest.importorskip("onnxruntime")
from cifar_pl.serve.app import build_app  # noqa: E402  (after the skip: the serve extra may be absent)
from cifar_pl.serve.engine import OnnxPredictor  # noqa: E402

# 3 M (Shake-Shake, two branches per block) and 20 M parameters (Xception): 40-60 s per format on this 2-core CPU,
# so they run in the slow tier (CI runs both tiers)
SLOW_FAMILIES = {"Shake-Shake (eval path)", "timm Xception"}


@pytest.mark.real_data
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
@pytest.mark.parametrize(
    "family", [pytest.param(f, marks=pytest.mark.slow) if f in SLOW_FAMILIES else f for f in FAMILIES]
)
def test_exported_logits_equal_the_checkpoints_eager_logits_on_256_real_test_images(
    family, fmt, real_data, tmp_path
):
    net, kwargs = FAMILIES[family]
    ckpt = write_net_checkpoint(tmp_path / "net.ckpt", net, kwargs)
    done = export(ckpt, fmt, (tmp_path / "net").with_suffix(SUFFIXES[fmt]))
    images = cifar_test_images(real_data, 256)
    ref, out = eager_logits(ckpt, images), exported_logits(done.file, fmt, images)
    assert out.shape == ref.shape == (256, 10)
    assert np.abs(out - ref).max() < 1e-4
    assert (out.argmax(1) == ref.argmax(1)).all()


def test_the_evaluation_forward_is_exported_with_its_weight_average_and_test_time_views(tmp_path, real_data):
    """A checkpoint evaluated with flip TTA and an EMA: the file gives what validate/test would score."""
    ckpt = write_net_checkpoint(
        tmp_path / "r.ckpt", "resnet20", evaluation={"tta": "flip"}, average={"decay": 0.9}
    )
    state = torch.load(ckpt, weights_only=True)
    for name, t in state["state_dict"].items():  # an average that differs from the trained weights
        if name.startswith("ema.") and t.is_floating_point():
            t.mul_(0.9)
    torch.save(state, ckpt)
    images = cifar_test_images(real_data, 64)
    done = export(ckpt, "onnx", tmp_path / "r.onnx")
    ref, out = eager_logits(ckpt, images), exported_logits(done.file, "onnx", images)
    assert np.abs(out - ref).max() < 1e-4
    p = Predictor.from_checkpoint(ckpt)
    with torch.no_grad():  # not the plain net's single view
        plain = p.net(p.normalize(torch.from_numpy(images).permute(0, 3, 1, 2))).numpy()
    assert np.abs(plain - ref).max() > 1e-3


def test_the_exported_cam_is_the_class_activation_map_of_cifar_pl_evaluation(tmp_path, real_data):
    ckpt = write_net_checkpoint(tmp_path / "r.ckpt", "resnet20")
    done = export(ckpt, "onnx", tmp_path / "r.onnx")
    images = cifar_test_images(real_data, 4)
    engine = OnnxPredictor(done.file)
    logits, cams = engine.run(images, cam=True)
    assert cams.shape == (4, 10, 8, 8)
    p = Predictor.from_checkpoint(ckpt)
    for i in range(4):
        cam, _, c = class_activation_map(p.net, p.normalize(torch.from_numpy(images[i]).permute(2, 0, 1)))
        assert c == int(logits[i].argmax())
        assert np.abs(cams[i, c] - cam.numpy()).max() < 1e-4


def test_export_finds_last_and_best_writes_beside_them_and_the_sidecar_says_what_the_file_takes(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "lightning_logs" / "exp" / "version_0" / "checkpoints"
    run.mkdir(parents=True)
    ckpt = write_net_checkpoint(run / "last.ckpt", "model_gap", class_names=[f"c{i}" for i in range(10)])
    (tmp_path / "lightning_logs" / "exp" / "best.ckpt").symlink_to(run / "last.ckpt")
    assert cli(["export", "--ckpt_path", "last", "--experiment", "exp"]) == 0
    assert "wrote lightning_logs/exp/version_0/checkpoints/last.onnx" in capsys.readouterr().out
    assert cli(["export", "--ckpt_path", "best", "--experiment", "exp", "--format", "torchscript"]) == 0
    assert (tmp_path / "lightning_logs" / "exp" / "best.pt").is_file()
    meta = json.loads((run / "last.onnx.json").read_text())
    assert meta["classes"] == [f"c{i}" for i in range(10)]
    assert meta["image_size"] == 32 and meta["any_size"] is True and meta["fixed_size"] is None
    assert meta["input"]["dtype"] == "uint8" and meta["input"]["layout"] == "NHWC"
    assert meta["outputs"] == ["logits", "cam"]
    assert meta["checkpoint"]["sha256"] == file_digest(ckpt)
    assert meta["versions"]["cifar_pl"] == "0.1.0"
    # the batch axis is dynamic: one image and 5 images run
    engine = OnnxPredictor(run / "last.onnx")
    for n in (1, 5):
        assert engine.run(np.zeros((n, 32, 32, 3), np.uint8))[0].shape == (n, 10)


@pytest.mark.parametrize(
    "args, said",
    [
        (
            ["--ckpt_path", "best", "--experiment", "nothing"],
            "--ckpt_path best: lightning_logs/nothing/best.ckpt",
        ),
        (["--ckpt_path", "{garbage}"], "is not a readable PyTorch weights file"),
        (["--ckpt_path", "{ckpt}", "--out", "{tmp}/m.json"], ".json is the sidecar's name"),
        (["--ckpt_path", "{ckpt}", "--refused"], "net model_gap cannot be exported: its head is a test's"),
        (["--ckpt_path", "{ckpt}", "--out", "{ckpt}"], "is the checkpoint being exported"),
        (["--ckpt_path", "{ckpt}", "--out", "{tmp}/best.ckpt"], "is the checkpoint being exported"),
        (["--ckpt_path", "{tmp}/best.ckpt", "--out", "{ckpt}"], "is the checkpoint being exported"),
        (["--ckpt_path", "{ckpt}", "--out", "{tmp}/m.bin"], "--format onnx writes a .onnx file"),
        (
            ["--ckpt_path", "{ckpt}", "--out", "{tmp}/m.onnx", "--format", "torchscript"],
            "--format torchscript writes a .pt or .ts file",
        ),  # fmt: skip
    ],
)
def test_a_bad_export_is_one_line_and_exit_2(args, said, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    ckpt = write_net_checkpoint(tmp_path / "m.ckpt", "model_gap")
    (tmp_path / "best.ckpt").symlink_to(ckpt)  # as fit links best.ckpt
    before = ckpt.read_bytes()
    (tmp_path / "garbage.ckpt").write_bytes(b"not a checkpoint")
    if "--refused" in args:
        monkeypatch.setitem(export_module.REFUSED, "model_gap", "its head is a test's")
        args = [a for a in args if a != "--refused"]
    args = [a.format(ckpt=ckpt, garbage=tmp_path / "garbage.ckpt", tmp=tmp_path) for a in args]
    code = cli(["export", *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and said in err[-1] and "Traceback" not in "\n".join(err)
    assert not list(tmp_path.glob("*.onnx")) and not list(tmp_path.glob("*.json"))
    assert ckpt.read_bytes() == before  # the checkpoint is never overwritten


def _photos(folder: Path) -> list[Path]:
    colours = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (220, 220, 40)]
    sizes = [(64, 40), (40, 64), (128, 128), (300, 200)]
    return [
        write_photo(folder / f"p{i}.jpg", c, size=s, seed=i)
        for i, (c, s) in enumerate(zip(colours, sizes, strict=True))
    ]


@pytest.mark.parametrize("size", ["train", "auto"])
def test_both_engines_give_the_same_table(size, tmp_path):
    ckpt = write_net_checkpoint(tmp_path / "m.ckpt", "model_gap", class_names=["a", "b", "c", "d", "e", "f", "g",
                                                                                "h", "i", "j"])  # fmt: skip
    export(ckpt, "onnx", tmp_path / "m.onnx")
    photos = _photos(tmp_path / "photos")
    common = [str(tmp_path / "photos"), "--top-k", "3", "--size", size]
    by_torch = predict_main([*common, "--ckpt", str(ckpt), "--out", str(tmp_path / "t.json")])
    by_onnx = predict_main([*common, "--engine", "onnx", "--ckpt", str(tmp_path / "m.onnx"), "--out",
                            str(tmp_path / "o.json")])  # fmt: skip
    assert len(by_torch) == len(by_onnx) == len(photos)
    for a, b in zip(by_torch, by_onnx, strict=True):
        assert (a["file"], a["width"], a["height"], a["input"]) == (
            b["file"],
            b["width"],
            b["height"],
            b["input"],
        )
        assert [t["class"] for t in a["top"]] == [t["class"] for t in b["top"]]
        assert np.allclose([t["prob"] for t in a["top"]], [t["prob"] for t in b["top"]], atol=1e-5)


def test_the_onnx_engine_and_the_server_import_neither_torch_nor_lightning(tmp_path):
    ckpt = write_net_checkpoint(tmp_path / "m.ckpt", "model_gap")
    export(ckpt, "onnx", tmp_path / "m.onnx")
    photo = write_photo(tmp_path / "p.jpg", (200, 30, 30), size=(50, 40))
    code = (
        "import sys\n"
        "from cifar_pl.predict import main\n"
        "import cifar_pl.__main__, cifar_pl.serve.app\n"
        f"assert main(['{photo}', '--engine', 'onnx', '--ckpt', '{tmp_path / 'm.onnx'}', '--out', "
        f"'{tmp_path / 'p.csv'}']) == 0\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'pytorch_lightning', 'lightning', "
        "'torchvision', 'timm'))\n"
        "print('HEAVY', heavy)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "HEAVY []" in done.stdout
    assert (tmp_path / "p.csv").read_text().count("\n") == 2


@pytest.fixture(scope="module")
def engine(tmp_path_factory) -> OnnxPredictor:
    folder = tmp_path_factory.mktemp("served")
    ckpt = write_net_checkpoint(folder / "m.ckpt", "model_gap", class_names=[f"class{i}" for i in range(10)])
    return OnnxPredictor(export(ckpt, "onnx", folder / "m.onnx").file)


@pytest.fixture(scope="module")
def server(engine):
    with served(build_app(engine, max_upload_mb=8)) as url:
        yield url


def _jpeg(size=(120, 90), seed=0) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def test_a_posted_photo_gets_the_engines_top_k_as_json_multipart_or_raw(server, engine, tmp_path):
    photo = _jpeg()
    (tmp_path / "p.jpg").write_bytes(photo)
    expected = engine.predict_files([tmp_path / "p.jpg"], top_k=4)[0]["top"]
    body, ctype = multipart(photo)
    for url, data, kind in (
        (f"{server}/predict?k=4", body, ctype),
        (f"{server}/predict?k=4", photo, "image/jpeg"),
    ):
        status, answer, _ = post(url, data, kind)
        assert status == 200
        assert [p["class"] for p in answer["predictions"]] == [t["class"] for t in expected]
        assert np.allclose([p["probability"] for p in answer["predictions"]], [t["prob"] for t in expected])
    status, answer, _ = post(f"{server}/predict?cam=1", photo, "application/octet-stream")
    assert status == 200 and len(answer["predictions"]) == 3  # the default k
    png = base64.b64decode(answer["cam"].split(",", 1)[1])
    assert Image.open(io.BytesIO(png)).size == (
        120,
        90,
    )  # over the photo as sent (under 320 px: its own size)


def _bad_uploads() -> dict[str, tuple[bytes, str | None, str]]:
    photo = _jpeg((400, 300))
    return {
        "not an image": (b"hello, this is text\n" * 20, "image/jpeg", ""),
        "0 bytes": (b"", "image/jpeg", ""),
        "truncated JPEG": (photo[: len(photo) // 2], "image/jpeg", ""),
        "decompression bomb (30000x30000 PNG)": (png_bomb(), "image/png", ""),
        "50 MB upload": (b"\xff" * (50 * 2**20), "image/jpeg", ""),
        "wrong content type (JSON)": (b'{"image": "x"}', "application/json", ""),
        "no content type": (photo, None, ""),
        "multipart without a file field": (multipart(photo, field="image")[0], multipart(photo)[1], ""),
        "k=0": (photo, "image/jpeg", "?k=0"),
        "k=abc": (photo, "image/jpeg", "?k=abc"),
    }


BAD_STATUS = {"50 MB upload": 413, "wrong content type (JSON)": 415, "no content type": 415}


@pytest.mark.parametrize("case", list(_bad_uploads()))
def test_a_bad_upload_gets_a_4xx_with_one_line_of_json_and_the_server_answers_the_next(case, server):
    data, ctype, query = _bad_uploads()[case]
    status, answer, raw = post(f"{server}/predict{query}", data, ctype)
    assert status == BAD_STATUS.get(case, 400)
    assert raw.count(b"\n") == 0 and set(answer) == {"error"} and answer["error"]
    status, answer, _ = post(f"{server}/predict", _jpeg(), "image/jpeg")
    assert status == 200 and answer["predictions"]


def test_parallel_requests_all_get_200(server):
    photos = [_jpeg(seed=i) for i in range(32)]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda p: post(f"{server}/predict?cam=1", p, "image/jpeg")[0], photos))
    assert results == [200] * 32


def test_a_chunked_multipart_upload_over_the_limit_is_cut_off_while_it_streams(engine):
    """No Content-Length (chunked transfer): the app stops reading soon after the limit and answers 413 with one
    line of JSON, rather than spooling all of it to disk first."""
    import asyncio

    app = build_app(engine, max_upload_mb=1)
    head, ctype = multipart(b"")
    head = head[: head.index(b"\r\n--", 10)]  # the part's headers, then the file's bytes stream
    chunk, total, pulled, sent = b"\xff" * 2**16, 64 * 2**20, [0], []

    async def receive() -> dict:
        body = head if pulled[0] == 0 else chunk
        pulled[0] += len(body)
        return {"type": "http.request", "body": body, "more_body": pulled[0] < total}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/predict", "raw_path": b"/predict", "query_string": b"", "root_path": "",
             "headers": [(b"content-type", ctype.encode()), (b"transfer-encoding", b"chunked")],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}  # fmt: skip
    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 413
    raw = b"".join(m.get("body", b"") for m in sent[1:])
    assert raw.count(b"\n") == 0 and "over 1 MB" in json.loads(raw)["error"]
    assert pulled[0] < 2 * 2**20  # of the 64 MB sent


def test_an_unexpected_failure_is_a_500_with_one_line_of_json_and_the_server_answers_the_next(
    server, monkeypatch
):
    import cifar_pl.serve.app as app_module

    def broken(*args):
        raise RuntimeError("the net broke\nsecond line")

    monkeypatch.setattr(app_module, "answer", broken)
    status, answer, raw = post(f"{server}/predict", _jpeg(), "image/jpeg")
    assert status == 500 and raw.count(b"\n") == 0
    assert answer == {"error": "internal error: RuntimeError: the net broke"}
    monkeypatch.undo()
    assert post(f"{server}/predict", _jpeg(), "image/jpeg")[0] == 200


@pytest.fixture(scope="module")
def flatten_export(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("flatten")
    return export(write_net_checkpoint(folder / "g.ckpt", "model_g"), "onnx", folder / "g.onnx").file


@pytest.mark.parametrize(
    "net, change, said",
    [
        ("gap", {"classes": [f"c{i}" for i in range(9)]}, "the net gives 10 logits but the sidecar names 9 classes"),
        ("gap", {"classes": [f"c{i}" for i in range(11)]}, "the net gives 10 logits but the sidecar names 11"),
        ("flatten", {"image_size": 40, "fixed_size": 40}, "the net takes 32x32 images but the sidecar says 40x40"),
        ("flatten", {"image_size": 40, "fixed_size": None}, "the net takes 32x32 images but the sidecar says 40x40"),
        ("flatten", {"fixed_size": None, "any_size": True}, "the net takes 32x32 images but the sidecar says any size"),
        ("gap", {"image_size": 48}, "the net was exported at 32 px but the sidecar says 48"),
        ("gap", {"resize": "crop"}, "the net was trained with resize squash but the sidecar says crop"),
    ],
)  # fmt: skip
def test_a_sidecar_that_contradicts_its_graph_is_one_line_and_exit_2_for_predict_and_serve(
    net, change, said, engine, flatten_export, tmp_path, capsys
):
    source = engine.file if net == "gap" else flatten_export
    model = tmp_path / "m.onnx"
    model.write_bytes(source.read_bytes())
    meta = json.loads(Path(f"{source}.json").read_text())
    Path(f"{model}.json").write_text(json.dumps({**meta, **change}))
    photo = write_photo(tmp_path / "p.jpg", (200, 30, 30), size=(50, 40))
    for run in (
        lambda: predict_cli(
            [str(photo), "--engine", "onnx", "--ckpt", str(model), "--out", str(tmp_path / "p.csv")]
        ),
        lambda: cli(["serve", "--ckpt_path", str(model), "--port", "1"]),
    ):
        assert run() == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and said in err[0], err
    assert not (tmp_path / "p.csv").exists()


def test_serve_on_a_port_in_use_is_one_line_and_exit_2_and_a_stop_waits_5_s_at_most(
    engine, capsys, monkeypatch
):
    import socket

    import cifar_pl.serve.app as app_module

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        assert cli(["serve", "--ckpt_path", str(engine.file), "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: --port {port} on 127.0.0.1 cannot be listened on"), (
        err
    )
    seen = {}
    monkeypatch.setattr(app_module.uvicorn, "run", lambda app, **kw: seen.update(kw))
    assert cli(["serve", "--ckpt_path", str(engine.file), "--port", str(port)]) == 0
    assert seen["port"] == port and seen["timeout_graceful_shutdown"] == 5


def test_predict_with_an_onnx_file_but_the_torch_engine_says_add_engine_onnx(engine, tmp_path, capsys):
    photo = write_photo(tmp_path / "p.jpg", (200, 30, 30), size=(50, 40))
    assert predict_cli([str(photo), "--ckpt", str(engine.file), "--out", str(tmp_path / "p.csv")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: --ckpt {engine.file} is an ONNX export: add --engine onnx"]


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads this process's RSS from /proc")
def test_header_only_big_pngs_sent_at_once_are_refused_or_decoded_a_few_at_a_time(server, monkeypatch):
    """A PNG of ~100 bytes whose header says 6000x6000 (36 MP) is refused from its header; 8 that say 15 MP, sent
    at once, are decoded at most MAX_CONCURRENT at a time, so the server's memory grows by far less than 8 x 60 MB."""
    import threading

    import cifar_pl.serve.app as app_module

    results = [post(f"{server}/predict", png_bomb(6000, 6000), "image/png") for _ in range(8)]
    for status, answer, _ in results:
        assert status == 400 and "over the limit of 16 MP" in answer["error"]

    running, peak, lock, real = [0], [0], threading.Lock(), app_module.answer

    def counted(*args):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        try:
            time.sleep(0.05)
            return real(*args)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(app_module, "answer", counted)
    before, top, stop = _rss_mb(), [0.0], threading.Event()

    def sample():
        while not stop.is_set():
            top[0] = max(top[0], _rss_mb())
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda _: post(f"{server}/predict", png_bomb(3900, 3900), "image/png")[0],
                                 range(8)))  # fmt: skip
    stop.set()
    sampler.join()
    assert statuses == [400] * 8  # decoded (15.2 MP is under the cap), then found truncated
    assert peak[0] <= app_module.MAX_CONCURRENT
    assert top[0] - before < 300


def test_the_page_and_info_are_served(server, engine):
    import urllib.request

    with urllib.request.urlopen(f"{server}/") as r:
        html = r.read().decode()
    assert 'type="file"' in html and "predict?k=" in html and "class0" in html
    with urllib.request.urlopen(f"{server}/info") as r:
        info = json.loads(r.read())
    assert info["classes"] == engine.classes and info["cam"] is True


def test_a_bad_checkpoint_or_export_at_start_up_is_one_line_and_exit_2(tmp_path, capsys):
    (tmp_path / "garbage.ckpt").write_bytes(b"not a checkpoint")
    (tmp_path / "garbage.onnx").write_bytes(b"not an onnx file")
    (tmp_path / "garbage.onnx.json").write_text("{}")
    for target, said in (
        (tmp_path / "garbage.ckpt", "is not a readable PyTorch weights file"),
        (tmp_path / "garbage.onnx", "is not a sidecar of version 1"),
        (tmp_path / "missing.onnx", "does not exist"),
    ):
        assert cli(["serve", "--ckpt_path", str(target), "--port", "1"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and said in err[0]
