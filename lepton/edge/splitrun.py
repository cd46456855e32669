"""Run a planned split for real: this process is the edge (runs the head), a child process is the cloud
(runs the tail behind an HTTP endpoint on 127.0.0.1), and the tensor at the cut travels over loopback.

The cloud process: ``python -m lepton.edge.splitrun MODEL_FILE CUT`` prints ``PORT <n>`` once it listens,
then answers ``POST /tail`` (body: the encoded tensor; headers ``X-Shape``, ``X-Encoding``) with JSON
``{"logits": [...], "cloud_ms": t}`` until its stdin closes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import torch
import zstandard
from pydantic import BaseModel, ConfigDict

from lepton.edge.split import Encoding, decode_tensor, encode_tensor, head_tail, layer_chain
from lepton.errors import ConfigError, LeptonError
from lepton.utils import strict_json
from lepton.utils.timing import torch_threads

_MAX_BODY = 64 << 20


class SplitRun(BaseModel):
    """Measured latency of a split on this host over loopback (medians over ``requests`` images)."""

    model_config = ConfigDict(extra="forbid")  # not frozen, unlike lepton.config.StrictModel: kept mutable as it was

    cut: int
    encoding: str
    requests: int
    edge_ms: float
    transfer_ms: float
    cloud_ms: float
    total_ms: float
    payload_bytes: float
    agreement: float  # fraction of images whose split prediction equals the whole model's


def _serve(model_file: str, cut: int, trust_code: bool) -> None:
    torch.set_num_threads(1)
    from lepton.artifacts import load_model_file

    _, tail = head_tail(layer_chain(load_model_file(model_file, trust_code=trust_code).model), cut)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            return  # keep the parent's console clean

        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            try:
                length = int(self.headers.get("Content-Length", "0"))
                if self.path != "/tail" or not 0 < length <= _MAX_BODY:
                    raise ValueError(f"expected POST /tail with a body of 1..{_MAX_BODY} bytes")
                shape = tuple(int(d) for d in self.headers["X-Shape"].split(","))
                x = decode_tensor(self.rfile.read(length), shape, self.headers["X-Encoding"])  # type: ignore[arg-type]
                start = time.perf_counter()
                with torch.inference_mode():
                    logits = tail(torch.from_numpy(x.copy())).numpy()
                body = json.dumps({"logits": logits.tolist(), "cloud_ms": (time.perf_counter() - start) * 1e3}).encode()
                self.send_response(200)
            except (ValueError, KeyError, RuntimeError, zstandard.ZstdError) as e:
                body = json.dumps({"error": str(e)}).encode()
                self.send_response(400)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"PORT {server.server_address[1]}", flush=True)
    sys.stdin.read()  # the parent closes stdin to stop us
    server.shutdown()


def run_split(
    model_file: str | Path,
    cut: int,
    images: np.ndarray,
    *,
    encoding: Encoding = "fp32",
    warmup: int = 5,
    timeout_s: float = 60.0,
    trust_code: bool = False,
) -> SplitRun:
    """Run ``model_file`` split at ``cut`` on each of ``images`` (one request per image, batch 1)."""
    from lepton.artifacts import load_model_file

    model = load_model_file(model_file, trust_code=trust_code).model
    chain = layer_chain(model)
    head, _ = head_tail(chain, cut)
    images = np.ascontiguousarray(images, dtype=np.float32)
    if len(images) == 0:
        raise ConfigError("run_split needs at least one image.")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lepton.edge.splitrun",
            str(model_file),
            str(cut),
            "trust-code" if trust_code else "no-trust-code",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        if not line.startswith("PORT "):
            raise LeptonError(
                f"the cloud process did not start (exit code {proc.poll()}); run "
                f"`python -m lepton.edge.splitrun {model_file} {cut}` to see why."
            )
        url = f"http://127.0.0.1:{int(line.split()[1])}/tail"
        rows, agree = [], 0
        with torch_threads(1), torch.inference_mode():
            reference = model(torch.from_numpy(images)).argmax(1).numpy()
            for i in range(-min(warmup, len(images)), len(images)):
                x = torch.from_numpy(images[i % len(images)][None])
                start = time.perf_counter()
                if cut == len(chain):
                    logits, cloud_ms, sent, edge_done = head(x).numpy(), 0.0, 0, time.perf_counter()
                else:
                    z = head(x).numpy()
                    data = encode_tensor(z, encoding)
                    edge_done = time.perf_counter()
                    req = urllib.request.Request(
                        url,
                        data=data,
                        method="POST",
                        headers={
                            "X-Shape": ",".join(map(str, z.shape)),
                            "X-Encoding": encoding,
                            "Content-Type": "application/octet-stream",
                        },
                    )
                    with urllib.request.urlopen(req, timeout=timeout_s) as resp:
                        reply = strict_json.loads(resp.read(), f"the cloud process's reply from {url}")
                    logits, cloud_ms, sent = np.asarray(reply["logits"]), reply["cloud_ms"], len(data)
                end = time.perf_counter()
                if i >= 0:
                    edge_ms, total_ms = (edge_done - start) * 1e3, (end - start) * 1e3
                    rows.append((edge_ms, total_ms - edge_ms - cloud_ms, cloud_ms, total_ms, sent))
                    agree += int(logits.argmax(1)[0] == reference[i])
    finally:
        if proc.stdin:
            proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    med = np.median(np.array(rows), axis=0)
    return SplitRun(
        cut=cut,
        encoding=encoding,
        requests=len(rows),
        edge_ms=med[0],
        transfer_ms=med[1],
        cloud_ms=med[2],
        total_ms=med[3],
        payload_bytes=med[4],
        agreement=agree / len(rows),
    )


if __name__ == "__main__":
    _serve(sys.argv[1], int(sys.argv[2]), sys.argv[3] == "trust-code")
