"""``python -m cifar_pl serve --ckpt_path best [--experiment NAME] [--port 8000]``: a trained net over HTTP.

    POST /predict?k=3[&cam=1]   an image (multipart field ``file``, or the raw bytes with Content-Type image/* or
                                application/octet-stream) -> {"predictions": [{"class": ..., "probability": ...},
                                ...], "input": ..., "cam": "data:image/png;base64,..." (with cam=1)}
    GET  /                      a page: drop photos, see the top classes and the CAM over each
    GET  /info, /health         the net, its classes and limits; "ok"

The net runs on ONNX Runtime (``cifar_pl.serve.engine``): ``--ckpt_path`` takes an exported ``.onnx`` (the server
then never imports torch), or a checkpoint (a file, ``last`` or ``best``), which is exported first by a child
``python -m cifar_pl export`` into a temporary folder. Every bad request (no image, empty, truncated, too many
pixels, too large, a wrong content type, a bad ``k``) gets a 4xx with one line of JSON, ``{"error": "..."}``.

Built on Starlette and uvicorn rather than LitServe: LitServe 0.2 reads any body that is not a form as JSON (raw
image bytes would be a 500), hands the model only the form or JSON (the ``k`` query parameter is lost), answers
``GET /`` itself, and runs the model in worker processes fed through queues; a small ASGI app does what is asked
directly.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import re
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from ..checks import check_number
from ..errors import BadFile, BadValue, UserError, run_main
from ..images import MAX_PIXELS, READ_ERRORS, open_image
from ..prediction import top_classes
from ..runs import resolve_ckpt_path
from .engine import OnnxPredictor, cam_overlay, softmax
from .page import page

try:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.datastructures import UploadFile
    from starlette.exceptions import HTTPException
    from starlette.requests import ClientDisconnect, Request
    from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
    from starlette.routing import Route
except ImportError:  # an optional extra: said when the server starts, not when this module is read
    Starlette = None

MAX_UPLOAD_MB = 20
# A net of 32-224 px needs nothing near this; a 12-MP phone photo (4032 x 3024) fits. Pillow holds a decoding RGB
# image at 4 bytes a pixel and the conversion makes a second copy, so one 16-MP request may take ~130 MB, and a
# 100-byte PNG can say it is that large: the cap and MAX_CONCURRENT together bound the memory decoding can take.
SERVE_MAX_PIXELS = 16_000_000
MAX_CONCURRENT = (
    2  # decodes + inferences at once; the others wait (ONNX Runtime uses every core for one anyway)
)
FORM_OVERHEAD = 64 * 1024  # a form's boundaries and headers around the file, allowed over the limit
RAW_TYPES = ("image/", "application/octet-stream")
GRACEFUL_SHUTDOWN_S = 5
OVERLAY_SIDE = 320  # long side of the CAM picture the page shows


class Refused(Exception):
    """A request the server answers with ``status`` and one line of JSON."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _parse_k(value: str | None, default: int, n_classes: int) -> int:
    if value is None:
        return min(default, n_classes)
    try:
        k = int(value)
    except ValueError:
        raise Refused(400, f"k={value!r} is not a whole number; ask for 1 to {n_classes} classes") from None
    if not 1 <= k <= n_classes:
        raise Refused(400, f"k={k} is out of range; ask for 1 to {n_classes} classes")
    return k


async def _body(request: Request, limit: int) -> bytes:
    """The raw body, read in chunks and refused as soon as it passes ``limit`` bytes."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Refused(413, f"the upload is over {limit / 2**20:.0f} MB; send a smaller image")
        chunks.append(chunk)
    return b"".join(chunks)


def _replayed(body: bytes):
    """An ASGI receive channel that hands over ``body`` (already read and bounded) once."""
    sent = False

    async def receive() -> dict:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


async def read_upload(request: Request, limit: int) -> bytes:
    """The image bytes of a request: multipart field ``file`` or the raw body; a Refused for anything else. Every
    body is read through ``_body``, so one sent without a Content-Length (chunked) is cut off at the limit too:
    a form is parsed from the bounded bytes, never spooled by Starlette to disk unbounded."""
    ctype = request.headers.get("content-type", "").lower()
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit + FORM_OVERHEAD:
        raise Refused(
            413,
            f"the upload is {int(length) / 2**20:.0f} MB, over {limit / 2**20:.0f} MB; send a smaller image",
        )
    if ctype.startswith("multipart/form-data"):
        bounded = Request(request.scope, _replayed(await _body(request, limit + FORM_OVERHEAD)))
        try:
            form = await bounded.form(max_files=1, max_fields=8, max_part_size=limit)
        except HTTPException as e:  # Starlette's own refusal of a malformed or oversized form
            raise Refused(
                413 if "size" in str(e.detail).lower() else 400, f"the form was refused: {e.detail}"
            ) from None
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise Refused(400, "the form has no file field 'file'; send the image as multipart field 'file'")
        data = await upload.read(limit + 1)
        await form.close()
        if len(data) > limit:
            raise Refused(413, f"the upload is over {limit / 2**20:.0f} MB; send a smaller image")
        return data
    if ctype.startswith(RAW_TYPES):
        return await _body(request, limit)
    shown = ctype.split(";")[0] or "none"
    raise Refused(415, f"content type {shown} is not an image; send multipart field 'file', or the raw bytes as "
                       f"image/* or application/octet-stream")  # fmt: skip


def answer(predictor: OnnxPredictor, data: bytes, k: int, cam: bool, max_pixels: int) -> dict:
    """The JSON answer for one uploaded image (a Refused for one that cannot be read)."""
    if not data:
        raise Refused(400, "the upload is empty (0 bytes); send an image file")
    side = predictor.rules.side("train")
    try:
        photo = open_image(io.BytesIO(data), max_pixels=max_pixels, draft=(side, side))
        image, note = predictor.rules.fit(photo, "train")
    except (*READ_ERRORS, UserError) as e:
        said = re.sub(r" ?<_io\.BytesIO object at 0x[0-9a-f]+>", "", str(e))  # Pillow names the buffer
        raise Refused(400, f"not a readable image ({type(e).__name__}: {said})") from None
    logits, cams = predictor.run(image, cam=cam)
    probs = softmax(logits)[0]
    top = top_classes(probs, predictor.classes, k)
    out: dict = {"predictions": [{"class": t["class"], "probability": t["prob"]} for t in top], "input": note}
    if cam:
        if cams is None:
            out["cam"] = None
            out["cam_note"] = (
                "this net has no global-average-pooling + linear head, so no class-activation map"
            )
        else:
            if max(photo.size) < OVERLAY_SIDE:  # decoded small for the net (JPEG draft): again, for the eye
                photo = open_image(
                    io.BytesIO(data), max_pixels=max_pixels, draft=(OVERLAY_SIDE, OVERLAY_SIDE)
                )
            png = io.BytesIO()
            cam_overlay(photo, cams[0, int(probs.argmax())], OVERLAY_SIDE).save(png, format="PNG")
            out["cam"] = "data:image/png;base64," + base64.b64encode(png.getvalue()).decode()
    return out


def build_app(predictor: OnnxPredictor, top_k: int = 3, max_upload_mb: int = MAX_UPLOAD_MB,
              max_pixels: int = SERVE_MAX_PIXELS, max_concurrent: int = MAX_CONCURRENT) -> Starlette:  # fmt: skip
    """The ASGI app serving ``predictor`` (see the module docstring): at most ``max_concurrent`` images are decoded
    and run at once, so memory stays bounded by about ``max_concurrent`` x (``max_pixels`` x 8 bytes)."""
    limit = max_upload_mb * 2**20
    gate = asyncio.Semaphore(max_concurrent)
    info = {"net": predictor.rules.net, "classes": predictor.classes, "image_size": predictor.rules.train_size,
            "top_k": min(top_k, len(predictor.classes)), "cam": predictor.has_cam, "max_upload_mb": max_upload_mb,
            "max_pixels": max_pixels}  # fmt: skip
    the_page = page(info)

    async def predict(request: Request) -> Response:
        try:
            k = _parse_k(request.query_params.get("k"), top_k, len(predictor.classes))
            cam = request.query_params.get("cam", "0").lower() in ("1", "true", "yes")
            data = await read_upload(request, limit)
            async with gate:
                done = await run_in_threadpool(answer, predictor, data, k, cam, max_pixels)
            return JSONResponse(done)
        except Refused as e:
            return _error(e.status, str(e))
        except ClientDisconnect:
            return _error(400, "the client went away mid-upload")

    async def index(request: Request) -> Response:
        return HTMLResponse(the_page)

    async def get_info(request: Request) -> Response:
        return JSONResponse(info)

    async def health(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def http_error(request: Request, exc: HTTPException) -> Response:
        return _error(exc.status_code, str(exc.detail))

    async def internal_error(request: Request, exc: Exception) -> Response:
        # no plain-text 500 reaches a client; Starlette re-raises after this answer, so uvicorn logs the traceback
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        return _error(500, f"internal error: {type(exc).__name__}: {first}".rstrip(": "))

    routes = [Route("/", index), Route("/predict", predict, methods=["POST"]), Route("/info", get_info),
              Route("/health", health)]  # fmt: skip
    return Starlette(routes=routes, exception_handlers={HTTPException: http_error, Exception: internal_error})


def check_port_free(host: str, port: int) -> None:
    """Refuse in one line a port this process cannot listen on (taken, or not allowed), before uvicorn says it in a
    log line and exits 1."""
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            s.bind((host, port))
    except OSError as e:
        raise BadValue(f"--port {port} on {host} cannot be listened on ({e.strerror or e}); choose another --port "
                       f"(or stop what holds it)") from None  # fmt: skip


def exported_predictor(ckpt: str, experiment: str, threads: int | None) -> OnnxPredictor:
    """The predictor of an ``.onnx`` file, or of a checkpoint exported by a child process (so this process never
    holds torch) into a temporary folder, read into memory and removed."""
    if Path(ckpt).suffix == ".onnx":
        return OnnxPredictor(ckpt, threads)
    path = resolve_ckpt_path(ckpt, experiment)
    with tempfile.TemporaryDirectory(prefix="cifar_pl_serve_") as tmp:
        out = Path(tmp) / "model.onnx"
        done = subprocess.run([sys.executable, "-m", "cifar_pl", "export", "--ckpt_path", str(path), "--out", str(out)],
                              capture_output=True, text=True)  # fmt: skip
        if done.returncode != 0:
            said = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
            if done.returncode == 2 and said:
                raise BadFile(said[-1][len("error: ") :])
            raise RuntimeError(f"exporting {path} failed (exit {done.returncode}):\n{done.stderr}")
        return OnnxPredictor(out, threads)


def main(argv: list[str] | None = None) -> int:
    """``python -m cifar_pl serve``: serves until Ctrl+C; 2 with one line for a bad option or checkpoint."""
    p = argparse.ArgumentParser(prog="python -m cifar_pl serve", description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt_path", "--ckpt", dest="ckpt", required=True,
                   help="an exported .onnx, a checkpoint written by fit, or last / best of --experiment")  # fmt: skip
    p.add_argument("--experiment", default="default", help="where last and best are looked for (as fit's)")
    p.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)"
    )
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument(
        "--top-k", type=int, default=3, help="classes answered when a request names no k (default 3)"
    )
    p.add_argument("--max-pixels", type=int, default=SERVE_MAX_PIXELS,
                   help=f"largest image in pixels, read from its header (default {SERVE_MAX_PIXELS:,})")  # fmt: skip
    p.add_argument("--max-concurrent", type=int, default=MAX_CONCURRENT,
                   help=f"images decoded and run at once; the rest wait (default {MAX_CONCURRENT})")  # fmt: skip
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads (default: one per core)")
    p.add_argument(
        "--max-upload-mb", type=int, default=MAX_UPLOAD_MB, help=f"largest upload (default {MAX_UPLOAD_MB})"
    )

    def run() -> None:
        args = p.parse_args(argv)
        check_number("--port", args.port, 1, 65535, integer=True)
        check_number("--top-k", args.top_k, 1, integer=True)
        check_number("--max-upload-mb", args.max_upload_mb, 1, 1024, integer=True)
        check_number("--max-pixels", args.max_pixels, 1, MAX_PIXELS, integer=True)
        check_number("--max-concurrent", args.max_concurrent, 1, 64, integer=True)
        if args.threads is not None:
            check_number("--threads", args.threads, 1, 1024, integer=True)
        if Starlette is None:
            raise BadValue("serve needs starlette and uvicorn: pip install 'cifar-pl[serve]'")
        predictor = exported_predictor(args.ckpt, args.experiment, args.threads)
        check_port_free(args.host, args.port)
        app = build_app(predictor, args.top_k, args.max_upload_mb, args.max_pixels, args.max_concurrent)
        print(f"serving {predictor.rules.net} ({len(predictor.classes)} classes) on http://{args.host}:{args.port}/",
              flush=True)  # fmt: skip
        # a client that holds its connection open cannot hold up a stop (SIGTERM, Ctrl+C) past this
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning",
                    timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S)  # fmt: skip

    return run_main(run)


if __name__ == "__main__":
    sys.exit(main())
