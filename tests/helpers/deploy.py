"""Export and serving: checkpoints of any net with non-trivial BatchNorm statistics, the server run in a thread of
the test on a free loopback port, HTTP requests as a client sends them, and the bad uploads of the issue."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .hostile import write_checkpoint

# one net of each registered family (small widths where the family has them)
FAMILIES = {
    "custom CNN, flatten head": ("model_g", {}),
    "custom CNN, GAP head": ("model_gap", {}),
    "CIFAR ResNet": ("resnet20", {}),
    "Shake-Shake (eval path)": ("shake_shake_26_2x32d", {}),
    "speed net": ("speednet", {"width": 0.25}),
    "timm Xception": ("xception", {}),
}
CIFAR_DM = {"_class_path": "cifar_pl.data.CIFAR10DataModule", "data_dir": "data"}


def write_net_checkpoint(path: Path, net: str, net_kwargs: dict | None = None, image_size: int = 32,
                         seed: int = 0, **model_args) -> Path:  # fmt: skip
    """A checkpoint of ``net`` as ``fit`` writes it (CIFAR-10 DataModule, its normalisation) that looks trained where
    it matters for export: BatchNorm running statistics drawn at random (evaluation mode differs from training),
    and the classifier scaled so the logits of noise images have a standard deviation of about 5, as a trained
    net's do (an untrained deep net's reach hundreds)."""
    import torch

    from cifar_pl.inference import Predictor

    write_checkpoint(path, datamodule=CIFAR_DM, net=net, net_kwargs=net_kwargs or {}, image_size=image_size,
                     **model_args)  # fmt: skip
    ckpt = torch.load(path, weights_only=True)
    g = torch.Generator().manual_seed(seed)
    for name, t in ckpt["state_dict"].items():
        if name.endswith("running_mean"):
            t.copy_(0.1 * torch.randn(t.shape, generator=g))
        elif name.endswith("running_var"):
            t.copy_(0.5 + torch.rand(t.shape, generator=g))
    torch.save(ckpt, path)
    p = Predictor.from_checkpoint(path)
    with torch.no_grad():
        noise = torch.randint(0, 256, (8, 3, image_size, image_size), dtype=torch.uint8, generator=g)
        scale = 5.0 / float(p.net(p.normalize(noise)).std())
    head = {id(m): n for n, m in p.net.named_modules()}[id(p.net.get_classifier())]
    for name, t in ckpt["state_dict"].items():
        if name.endswith((f"{head}.weight", f"{head}.bias")):
            t.mul_(scale)
    torch.save(ckpt, path)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def served(app) -> Iterator[str]:
    """``app`` served by uvicorn in a thread of this process on 127.0.0.1; yields its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    end = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > end or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def post(
    url: str, body: bytes, content_type: str | None, timeout: float = 60
) -> tuple[int, dict | None, bytes]:
    """POST ``body`` to ``url`` (``http://host:port/path?query``): (status, JSON answer or None, raw answer). A
    server that answers before reading the whole body may close the connection under the sender; the answer it
    sent is still read."""
    rest = url.split("://", 1)[1]
    hostport, _, path = rest.partition("/")
    host, port = hostport.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    headers = {"Content-Length": str(len(body))}
    if content_type is not None:
        headers["Content-Type"] = content_type
    try:
        conn.request("POST", "/" + path, body=body, headers=headers)
    except (BrokenPipeError, ConnectionResetError):
        pass
    try:
        r = conn.getresponse()
        raw = r.read()
    finally:
        conn.close()
    try:
        return r.status, json.loads(raw), raw
    except ValueError:
        return r.status, None, raw


def multipart(data: bytes, filename: str = "photo.jpg", field: str = "file",
              content_type: str = "image/jpeg") -> tuple[bytes, str]:  # fmt: skip
    """A multipart/form-data body with one file field, as a browser's form sends it: (body, content type)."""
    boundary = "----cifarplboundary7MA4YWxk"
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
            f"Content-Type: {content_type}\r\n\r\n").encode()  # fmt: skip
    return head + data + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def png_bomb(width: int = 30000, height: int = 30000) -> bytes:
    """A PNG of a few hundred bytes that says it is ``width`` x ``height`` (900 MP, 2.7 GB decoded): a
    decompression bomb. The pixel data is a valid zlib stream of zeros for the first rows only."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (
            struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (1 + 3 * min(width, 64)) * 4)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def cifar_test_images(data_root: Path, n: int = 256) -> np.ndarray:
    """The first ``n`` images of the real CIFAR-10 test batch as uint8 N x 32 x 32 x 3 (through our reader)."""
    from cifar_pl.data.cifar import read_cifar_batch

    images, _ = read_cifar_batch(data_root / "cifar-10-batches-py" / "test_batch", "labels", 10)
    return images[:n].permute(0, 2, 3, 1).contiguous().numpy()


def eager_logits(ckpt: Path, images: np.ndarray) -> np.ndarray:
    """The checkpoint's own evaluation logits, through the torch predictor (``cifar_pl.predict``'s path)."""
    import torch

    from cifar_pl.inference import Predictor

    p = Predictor.from_checkpoint(ckpt)
    with torch.no_grad():
        return np.concatenate([p.model(p.normalize(torch.from_numpy(images[i : i + 64]).permute(0, 3, 1, 2))).numpy()
                               for i in range(0, len(images), 64)])  # fmt: skip


def exported_logits(file: Path, fmt: str, images: np.ndarray) -> np.ndarray:
    """The logits of an exported file (ONNX through ONNX Runtime, TorchScript through torch.jit) for uint8 NHWC."""
    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(file), providers=["CPUExecutionProvider"])
        return session.run(["logits"], {"images": images})[0]
    import torch

    module = torch.jit.load(str(file))
    with torch.no_grad():
        return module(torch.from_numpy(images))[0].numpy()
