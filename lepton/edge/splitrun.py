"""Run a planned split for real: this process is the edge (runs the head), a child process is the cloud
(runs the tail behind an HTTP endpoint on 127.0.0.1), and the tensor at the cut travels over loopback.

The cloud process: ``python -m lepton.edge.splitrun MODEL_FILE CUT`` rebuilds the model from the file (a
``.lep`` or a checkpoint; the architecture from the registry or the file's graph, so no user code runs),
cuts it at the same point as the edge (:func:`lepton.edge.cuts.layer_chain` on the same model), prints
``PORT <n> <segment before the cut>`` once it listens, then answers ``POST /tail`` (body: the encoded
tensor; headers ``X-Shape``, ``X-Encoding``) with JSON ``{"logits": [...], "cloud_ms": t}`` until its stdin
closes.
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
from torch import nn

from lepton.edge.cuts import head_tail, layer_chain
from lepton.edge.split import Encoding, decode_tensor, encode_tensor
from lepton.errors import ConfigError, LeptonError
from lepton.utils import strict_json
from lepton.utils.timing import torch_threads

_MAX_BODY = 64 << 20


class SplitRun(BaseModel):
    """Measured latency of a split on this host over loopback (medians over ``requests`` requests of ``batch``
    images each) and the agreement of its predictions with the whole model's on every image sent."""

    model_config = ConfigDict(extra="forbid")  # not frozen, unlike lepton.config.StrictModel: kept mutable as it was

    cut: int
    after: str = ""  # the segment before the cut ("input" for cloud-only)
    encoding: str
    requests: int
    batch: int = 1  # images per request
    edge_ms: float
    transfer_ms: float
    cloud_ms: float
    total_ms: float
    payload_bytes: float
    agreement: float  # fraction of images whose split prediction equals the whole model's


def _cut_model(model_file: str | Path, cut: int, trust_code: bool) -> tuple[nn.Module, str, nn.Module, nn.Module]:
    """The model in ``model_file``, the name of the segment before ``cut``, and its head and tail."""
    from lepton.artifacts import load_model_file

    loaded = load_model_file(model_file, trust_code=trust_code)
    chain = layer_chain(loaded.model, torch.zeros(1, *loaded.spec.input_shape))
    head, tail = head_tail(chain, cut)
    return loaded.model, chain[cut - 1][0] if cut else "input", head, tail


def _serve(model_file: str, cut: int, trust_code: bool) -> None:
    torch.set_num_threads(1)
    _, after, _, tail = _cut_model(model_file, cut, trust_code)

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
    print(f"PORT {server.server_address[1]} {after}", flush=True)
    sys.stdin.read()  # the parent closes stdin to stop us
    server.shutdown()


def run_split(
    model_file: str | Path,
    cut: int,
    images: np.ndarray,
    *,
    encoding: Encoding = "fp32",
    warmup: int = 5,
    batch: int = 1,
    timeout_s: float = 60.0,
    trust_code: bool = False,
) -> SplitRun:
    """Run ``model_file`` split at ``cut``: this process runs the head on ``images`` and a second process,
    rebuilding the model from the file, runs the tail on what arrives over loopback HTTP.

    Args:
        model_file: a ``.lep`` or checkpoint; a graph-carrying one loads without the user's code.
        cut: the cut index, 0 (cloud-only) to the number of segments (edge-only), as in the plan's rows.
        images: the inputs, ``[n, *input_shape]``; every one is sent.
        encoding: the tensor on the wire (fp32, int8 or int8+zstd; int8 quantizes each image on its own).
        warmup: requests sent first and not counted.
        batch: images per request (1 measures batch-1 latency; more makes agreement on a large test set cheap).
        timeout_s: per-request timeout.
        trust_code: let a file that names a ``package.module:factory`` import it.

    Returns:
        The :class:`SplitRun`: median per-request times, payload bytes, and the fraction of images whose split
        prediction equals the whole model's.
    """
    if batch < 1:
        raise ConfigError(f"batch must be at least 1, got {batch}.")
    images = np.ascontiguousarray(images, dtype=np.float32)
    if len(images) == 0:
        raise ConfigError("run_split needs at least one image.")
    model, after, head, tail = _cut_model(model_file, cut, trust_code)
    with torch_threads(1), torch.inference_mode():  # the whole model's predictions, a chunk at a time
        reference = np.concatenate(
            [model(torch.from_numpy(images[i : i + 256])).argmax(1).numpy() for i in range(0, len(images), 256)]
        )
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
        port, cloud_after = line.split(maxsplit=2)[1:]
        if cloud_after.strip() != after:
            raise LeptonError(
                f"the cloud process cut {model_file} after {cloud_after.strip()!r}, the edge after {after!r}; "
                "both must load the same model file."
            )
        url = f"http://127.0.0.1:{int(port)}/tail"
        starts = list(range(0, len(images), batch))
        rows, agree = [], 0
        with torch_threads(1), torch.inference_mode():
            for i in range(-min(warmup, len(starts)), len(starts)):
                at = starts[i % len(starts)]
                x = torch.from_numpy(images[at : at + batch])
                start = time.perf_counter()
                if len(tail) == 0:  # edge-only: nothing leaves the device
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
                    agree += int((logits.argmax(1) == reference[at : at + batch]).sum())
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
        after=after,
        encoding=encoding,
        requests=len(rows),
        batch=batch,
        edge_ms=med[0],
        transfer_ms=med[1],
        cloud_ms=med[2],
        total_ms=med[3],
        payload_bytes=med[4],
        agreement=agree / len(images),
    )


if __name__ == "__main__":
    _serve(sys.argv[1], int(sys.argv[2]), sys.argv[3] == "trust-code")
