"""One Open Inference Protocol request to the real ``lepton serve`` server, shared by tests that check a file
serves what the model computes in-process."""

import httpx
import numpy as np

from lepton.edge.server import load_served_model, serve_in_thread


def served_logits(path, x: np.ndarray) -> np.ndarray:
    """The logits for ``x`` from one JSON request to a server serving ``path`` (.onnx or .lep) as model "m"."""
    body = {"inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]}
    with serve_in_thread(load_served_model(path, name="m", workdir=path.parent / "served")) as url:
        reply = httpx.post(f"{url}/v2/models/m/infer", json=body, timeout=30)
    assert reply.status_code == 200, reply.text
    (out,) = reply.json()["outputs"]
    return np.array(out["data"], dtype=np.float32).reshape(out["shape"])
