"""The browser target: an ONNX variant run by ONNX Runtime Web in a real (headless) Chromium.

The page (`web/index.html`) ships in every ONNX bundle and applies the bundle's preprocessing
spec in JavaScript; ONNX Runtime Web's script and WebAssembly come from `web/node_modules`
(npm, locked by `web/package-lock.json`), served from 127.0.0.1 with everything else: nothing
is fetched from the network. `browser_predict` is the verification the browser cohort gets:
the same test images through the page, probabilities back over a loopback POST.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np

from device.preprocessing import PreprocessingSpec
from edgeops.errors import EdgeOpsError

WEB_DIR = Path(__file__).resolve().parents[1] / "web"
PAGE_FILE = "index.html"
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-extensions", "--mute-audio",
)
_TYPES = {".html": "text/html", ".js": "text/javascript", ".mjs": "text/javascript",
          ".wasm": "application/wasm", ".json": "application/json", ".onnx": "application/octet-stream"}


class BrowserError(EdgeOpsError):
    """The browser target cannot be checked here: no browser, no runtime files, or the page failed."""

    exit_code = 15


@dataclass(frozen=True)
class BrowserRun:
    probs: np.ndarray  # (N, classes) float32, from the page
    load_ms: float  # runtime + model load in the page
    infer_ms: float  # preprocessing + one batched run in the page
    user_agent: str


def page() -> bytes:
    """The static page that goes into every ONNX bundle."""
    return (WEB_DIR / PAGE_FILE).read_bytes()


def find_chromium() -> str:
    """EDGEOPS_CHROMIUM, else `chromium` / `chromium-browser` on the PATH (Debian's package)."""
    for name in (os.environ.get("EDGEOPS_CHROMIUM"), "chromium", "chromium-browser"):
        path = shutil.which(name) if name else None
        if path:
            return path
    raise BrowserError("no Chromium found: install Debian's `chromium` package (make test does)")


def ort_web_dir() -> Path:
    """ONNX Runtime Web's dist folder, installed from the npm registry by `npm ci` in web/."""
    dist = WEB_DIR / "node_modules" / "onnxruntime-web" / "dist"
    if not (dist / "ort.wasm.min.js").exists():
        raise BrowserError("onnxruntime-web is not installed: run `npm ci` in web/", where=str(dist))
    return dist


def _handler(site: Path, ort_dir: Path, done: threading.Event, result: dict[str, Any]) -> type:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            path = self.path.split("?", 1)[0].lstrip("/")
            root, rel = (ort_dir, path[4:]) if path.startswith("ort/") else (site, path)
            file = (root / rel).resolve()
            if root.resolve() not in file.parents or not file.is_file():
                self.send_error(404)
                return
            data = file.read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", _TYPES.get(file.suffix, "application/octet-stream"))
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(204)
            self.end_headers()
            try:
                result.update(json.loads(body))
            except json.JSONDecodeError as exc:
                result["error"] = f"unreadable report from the page: {exc}"
            done.set()

        def log_message(self, *args: Any) -> None:  # quiet
            return

    return Handler


def browser_predict(
    model: bytes,
    spec: PreprocessingSpec,
    images: np.ndarray,
    timeout_s: float = 90.0,
    page_html: bytes | None = None,
) -> BrowserRun:
    """Probabilities of uint8 images (N, H, W, C) from the bundle page in headless Chromium.
    `page_html`: the page as shipped in a bundle (default: web/index.html)."""
    images = np.ascontiguousarray(images)
    if images.dtype != np.uint8 or images.ndim != 4:
        raise BrowserError(f"the page takes uint8 (N, H, W, C) images, got {images.dtype} {images.shape}")
    chromium, ort_dir = find_chromium(), ort_web_dir()
    with tempfile.TemporaryDirectory(prefix="edgeops-web-") as tmp:
        site = Path(tmp) / "site"
        site.mkdir()
        (site / PAGE_FILE).write_bytes(page_html if page_html is not None else page())
        (site / "model.onnx").write_bytes(model)
        (site / "preprocessing.json").write_text(spec.to_json())
        n, h, w, c = images.shape
        job = {"n": n, "h": h, "w": w, "c": c, "data": base64.b64encode(images.tobytes()).decode()}
        (site / "inputs.json").write_text(json.dumps(job))
        done, result = threading.Event(), {}
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(site, ort_dir, done, result))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_port}/{PAGE_FILE}?inputs=/inputs.json&report=/result&ort=/ort/"
        log = Path(tmp) / "chromium.log"
        try:
            with log.open("wb") as out:
                proc = subprocess.Popen(
                    [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={Path(tmp) / 'profile'}", url],
                    stdout=out, stderr=subprocess.STDOUT,
                )
        except OSError as exc:
            server.shutdown()
            raise BrowserError(f"the browser cannot start: {exc}", where=chromium) from exc
        try:
            finished = _wait(done, proc, timeout_s)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            server.shutdown()
        if not finished:
            tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
            state = f"exited with {proc.returncode}" if proc.returncode not in (None, -15) else "timed out"
            raise BrowserError(f"the browser page gave no result ({state}; last line: {tail[0][:200]})",
                               where=chromium)
    if "error" in result:
        raise BrowserError(f"the page failed: {result['error']}", where="web/index.html")
    probs = np.asarray(result["probs"], dtype=np.float32)
    return BrowserRun(probs, float(result["load_ms"]), float(result["infer_ms"]), str(result["user_agent"]))


def _wait(done: threading.Event, proc: subprocess.Popen, timeout_s: float) -> bool:
    """Until the page reports, the browser exits, or the time is up."""
    step = 0.2
    waited = 0.0
    while waited < timeout_s:
        if done.wait(step):
            return True
        if proc.poll() is not None:
            return done.is_set()
        waited += step
    return False
