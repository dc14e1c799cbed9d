"""A bounded load test of ``python -m cifar_pl serve`` on loopback, then the bad uploads of docs/deploy.md.

    python bench/serve_load.py --model lightning_logs/deploy/x/best.onnx --photos ../shared/data/flowers \\
        --clients 8 --seconds 30

The server runs in its own process (``python -m cifar_pl serve``, an exported .onnx); ``--clients`` threads post
real photos (multipart field ``file``, ``k=3``) back to back for ``--seconds``. Printed: requests/s, p50/p99 latency,
errors (any answer but 200), the server's RSS at start, end and peak (sampled every 0.5 s from /proc); then each bad
upload with its status, the body, and whether the next good request got 200.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tests.helpers.deploy import free_port, multipart, png_bomb, post  # noqa: E402


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def bad_uploads(photo: bytes) -> list[tuple[str, bytes, str | None, str]]:
    return [
        ("a text file sent as image/jpeg", b"hello, this is text\n" * 20, "image/jpeg", ""),
        ("0 bytes", b"", "image/jpeg", ""),
        ("a truncated JPEG (first half)", photo[: len(photo) // 2], "image/jpeg", ""),
        (f"a decompression bomb (30000x30000 PNG, {len(png_bomb())} bytes)", png_bomb(), "image/png", ""),
        ("a 50 MB upload", b"\xff" * (50 * 2**20), "image/jpeg", ""),
        ("a wrong content type (application/json)", b'{"image": "x"}', "application/json", ""),
        ("multipart without a 'file' field", multipart(photo, field="image")[0], multipart(photo)[1], ""),
        ("k=0", photo, "image/jpeg", "?k=0"),
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="an exported .onnx (python -m cifar_pl export)")
    p.add_argument("--photos", required=True, help="a folder of photos to post")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--seconds", type=float, default=30)
    p.add_argument("--threads", type=int, default=None, help="the server's ONNX Runtime threads")
    args = p.parse_args(argv)
    photos = [f.read_bytes() for f in sorted(Path(args.photos).rglob("*.jpg"))[:200]]
    port = free_port()
    cmd = [sys.executable, "-m", "cifar_pl", "serve", "--ckpt_path", args.model, "--port", str(port)]
    cmd += ["--threads", str(args.threads)] if args.threads else []
    server = subprocess.Popen(cmd, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        start = time.perf_counter()
        while True:
            try:
                with urllib.request.urlopen(url + "/health", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.05)
            if time.perf_counter() - start > 60 or server.poll() is not None:
                raise SystemExit("the server did not start")
        print(
            f"server ready {time.perf_counter() - start:.2f} s after launch, RSS {rss_mb(server.pid):.0f} MB"
        )
        post(url + "/predict", photos[0], "image/jpeg")  # warm
        rss = [rss_mb(server.pid)]
        latencies: list[float] = []
        errors: list[int] = []
        stop = time.perf_counter() + args.seconds
        lock = threading.Lock()

        def client(i: int) -> None:
            n = i
            while time.perf_counter() < stop:
                body, ctype = multipart(photos[n % len(photos)])
                t = time.perf_counter()
                status = post(url + "/predict?k=3", body, ctype)[0]
                dt = time.perf_counter() - t
                with lock:
                    latencies.append(dt)
                    if status != 200:
                        errors.append(status)
                n += args.clients

        def sample() -> None:
            while time.perf_counter() < stop:
                rss.append(rss_mb(server.pid))
                time.sleep(0.5)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
        threads.append(threading.Thread(target=sample))
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        rss.append(rss_mb(server.pid))
        lat = sorted(latencies)
        print(f"{args.clients} clients x {args.seconds:.0f} s: {len(lat)} requests, {len(lat) / wall:.1f} requests/s, "
              f"p50 {1000 * lat[len(lat) // 2]:.1f} ms, p99 {1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))]:.1f} ms, "
              f"{len(errors)} errors; server RSS {rss[0]:.0f} MB before, {rss[-1]:.0f} MB after, peak {max(rss):.0f} MB; "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")  # fmt: skip
        print("\n| input | status | body | next request |")
        print("| --- | ---: | --- | --- |")
        for name, body, ctype, query in bad_uploads(photos[0]):
            status, _, raw = post(url + "/predict" + query, body, ctype)
            after = post(url + "/predict", photos[1], "image/jpeg")[0]
            shown = raw.decode(errors="replace").replace("|", "\\|")
            print(f"| {name} | {status} | `{shown}` | {after}{' (up)' if after == 200 else ''} |")
    finally:
        server.terminate()
        server.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
