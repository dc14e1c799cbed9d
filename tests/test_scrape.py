"""The scraper against a real HTTP server on 127.0.0.1: what is kept and dropped, safe names, resumption."""

from __future__ import annotations

import csv
import io
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cifar_pl.scrape import Limits, dhash, main, remove, scrape


def _photo(seed: int, size=(96, 72), fmt="JPEG") -> bytes:
    """A real image file: smooth random blobs, different for each seed."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    img = Image.fromarray(small, "RGB").resize(size, Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


class _Server:
    """Routes: path -> (status, headers, body, delay in seconds); counts requests per path."""

    def __init__(self, routes):
        self.routes, self.hits = routes, {}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                outer.hits[self.path] = outer.hits.get(self.path, 0) + 1
                status, headers, body, delay = outer.routes.get(self.path, (404, {}, b"not found", 0))
                time.sleep(delay)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                try:
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


class _Backend:
    def __init__(self, urls):
        self.urls, self.calls = urls, 0

    def search(self, query, max_results):
        self.calls += 1
        return self.urls[:max_results]


@pytest.fixture
def server():
    a, b = _photo(1), _photo(2, fmt="PNG")
    near = io.BytesIO()
    Image.open(io.BytesIO(a)).resize((90, 68)).save(near, "JPEG", quality=70)  # same picture, re-encoded
    jpeg = {"Content-Type": "image/jpeg"}
    routes = {
        "/a.jpg": (200, jpeg, a, 0),
        "/b.png": (200, {"Content-Type": "image/png"}, b, 0),
        "/c.jpg": (200, jpeg, _photo(3), 0),
        "/fake.jpg": (200, jpeg, b"<html>this is not an image</html>", 0),
        "/truncated.jpg": (200, jpeg, _photo(4)[:700], 0),
        "/huge.jpg": (
            200,
            {"Content-Type": "image/jpeg", "Content-Length": str(5_000_000)},
            b"\xff" * 1000,
            0,
        ),
        "/stream.jpg": (200, jpeg, b"\xff\xd8" + b"\0" * 300_000, 0),  # no Content-Length, over the cap
        "/slow.jpg": (200, jpeg, _photo(5), 3.0),
        "/redirect": (302, {"Location": "/c.jpg"}, b"", 0),
        "/to-ftp": (302, {"Location": "ftp://127.0.0.1/x.jpg"}, b"", 0),
        "/dup1.jpg": (200, jpeg, _photo(6), 0),
        "/dup2.jpg": (200, jpeg, _photo(6), 0),
        "/near.jpg": (200, jpeg, near.getvalue(), 0),
        "/error500.jpg": (500, {}, b"oops", 0),
        "/tiny.png": (200, {"Content-Type": "image/png"}, _photo(7, size=(10, 10), fmt="PNG"), 0),
    }
    srv = _Server(routes)
    yield srv
    srv.httpd.shutdown()


LIMITS = Limits(timeout=1.0, max_bytes=200_000, retries=2, backoff=0.05, concurrency=4)


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_loopback_scrape_keeps_and_drops_exactly_right(server, tmp_path, capsys):
    u = server.url
    urls = [f"{u}/a.jpg", f"{u}/b.png", f"{u}/redirect", f"{u}/fake.jpg", f"{u}/truncated.jpg", f"{u}/huge.jpg",
            f"{u}/stream.jpg", f"{u}/slow.jpg", f"{u}/to-ftp", f"{u}/dup1.jpg", f"{u}/dup2.jpg", f"{u}/near.jpg",
            f"{u}/error500.jpg", f"{u}/missing.jpg", f"{u}/tiny.png", "ftp://127.0.0.1/file.jpg",
            "file:///etc/passwd", f"{u}/a.jpg"]  # fmt: skip
    backend = _Backend(urls)
    out = tmp_path / "food"
    summary = scrape(["Green Curry!"], 30, out, backend, LIMITS, show_progress=False)
    folder = out / "green_curry"
    kept = _rows(out / "manifest_green_curry.csv")
    dropped = {r["url"].replace(u, ""): r["reason"] for r in _rows(out / "dropped_green_curry.csv")}
    kept_urls = sorted(r["url"].replace(u, "") for r in kept)
    # a.jpg, b.png, redirect (-> c.jpg) and one of the two identical files are kept
    assert len(kept) == 4 and {"/a.jpg", "/b.png", "/redirect"} <= set(kept_urls)
    assert len({"/dup1.jpg", "/dup2.jpg"} & set(kept_urls)) == 1
    dup_dropped = ({"/dup1.jpg", "/dup2.jpg"} - set(kept_urls)).pop()
    assert dropped[dup_dropped] == "duplicate (same bytes as a kept image)"
    assert dropped["/fake.jpg"].startswith("not a readable image")
    assert dropped["/truncated.jpg"].startswith("not a readable image")
    assert dropped["/huge.jpg"] == "too large (5000000 bytes > 200000)"
    assert dropped["/stream.jpg"] == "too large (over 200000 bytes)"
    assert dropped["/slow.jpg"] == "timed out (3 tries)" and server.hits["/slow.jpg"] == 3
    assert dropped["/to-ftp"] == "redirect to a non-http URL (ftp)"
    assert dropped["/near.jpg"] == "near-duplicate (perceptual hash)"
    assert dropped["/error500.jpg"] == "HTTP 500 (3 tries)" and server.hits["/error500.jpg"] == 3
    assert dropped["/missing.jpg"] == "HTTP 404" and server.hits["/missing.jpg"] == 1  # no retry for a 404
    assert dropped["/tiny.png"] == "too small (10x10)"
    assert dropped["ftp://127.0.0.1/file.jpg"] == "not an http(s) URL (ftp)"
    assert dropped["file:///etc/passwd"] == "not an http(s) URL (file)"
    assert len(dropped) == 13 and server.hits["/a.jpg"] == 1  # a URL listed twice is fetched once
    assert summary["Green Curry!"]["kept"] == 4
    # safe generated names, RGB JPEGs, manifest fields
    for r in kept:
        assert r["file"] == f"green_curry_{r['sha256'][:16]}.jpg" and r["class"] == "Green Curry!"
        with Image.open(folder / r["file"]) as im:
            assert (
                im.mode == "RGB"
                and im.format == "JPEG"
                and (im.width, im.height) == (int(r["width"]), int(r["height"]))
            )
    assert sorted(p.name for p in folder.glob("*.jpg")) == sorted(r["file"] for r in kept)
    with Image.open(out / "contact_sheet_green_curry.png") as im:
        im.verify()
    # a second run fetches nothing new
    before = dict(server.hits)
    scrape(["Green Curry!"], 30, out, backend, LIMITS, show_progress=False)
    assert server.hits == before
    assert len(_rows(out / "manifest_green_curry.csv")) == 4


def test_remove_drops_from_manifest_and_the_folder_loads(server, tmp_path):
    from cifar_pl.data import ImageFolderDataModule

    u = server.url
    out = tmp_path / "photos"
    scrape(
        ["cat"], 10, out, _Backend([f"{u}/a.jpg", f"{u}/b.png", f"{u}/c.jpg"]), LIMITS, show_progress=False
    )
    scrape(
        ["dog"],
        10,
        out,
        _Backend([f"{u}/dup1.jpg", f"{u}/slow.jpg"]),
        Limits(timeout=5, backoff=0.05),
        show_progress=False,
    )
    cat = _rows(out / "manifest_cat.csv")
    victim = out / "cat" / cat[0]["file"]
    assert main(["--out", str(out), "--remove", str(victim)]) == 0
    assert not victim.exists() and len(_rows(out / "manifest_cat.csv")) == 2
    assert _rows(out / "dropped_cat.csv")[-1]["reason"] == "removed by hand"
    before = dict(server.hits)
    scrape(
        ["cat"], 10, out, _Backend([f"{u}/a.jpg", f"{u}/b.png", f"{u}/c.jpg"]), LIMITS, show_progress=False
    )
    assert server.hits == before  # the removed image is not fetched again
    with pytest.raises(FileNotFoundError, match="is not a kept image"):
        remove([str(out / "cat" / "nope.jpg")], out)
    # the collection is a dataset
    dm = ImageFolderDataModule(str(out), image_size=16, val_size=0.5)
    dm.setup("fit")
    assert dm.classes == ["cat", "dog"] and len(dm.train_set) + len(dm.val_set) == 4


def test_perceptual_hash_separates_different_photos():
    a = Image.open(io.BytesIO(_photo(1)))
    assert bin(dhash(a) ^ dhash(a.resize((50, 40)))).count("1") <= 4
    assert min(bin(dhash(a) ^ dhash(Image.open(io.BytesIO(_photo(s))))).count("1") for s in range(2, 12)) > 10
