"""``python -m lepton.train.worker JOB.json``: one worker of a job that ``train_model`` launched.

``JOB.json`` names a ``.npz`` of the dataset (written by the launching process) or a packed store (each
rank reads its own samples from it), the model, the
training config, the output folder and whether the user allowed their model's code (``--trust-code``).
Every rank trains; rank 0 writes ``OUT/last.*`` after each epoch and ``OUT/report.json`` at the end. A worker restarted by torchrun resumes from ``OUT/last``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from lepton.data.dataset import ImageDataset
from lepton.data.store.source import StoreSource
from lepton.distributed.runtime import env_rank
from lepton.train.config import TrainConfig
from lepton.train.job import train_model
from lepton.utils.io import atomic_write_text


def main(job_path: str) -> None:
    job = json.loads(Path(job_path).read_text())
    data: ImageDataset | StoreSource
    if "store" in job:
        data = StoreSource(job["store"], job["n_train"], job["n_test"])
    else:
        with np.load(job["data"], allow_pickle=False) as z:
            data = ImageDataset(
                job["name"], z["x_train"], z["y_train"], z["x_test"], z["y_test"], tuple(job["classes"])
            )
    out = Path(job["out"])
    trained = train_model(
        data,
        job["model"],
        TrainConfig(**job["train"]),
        model_kwargs=job["model_kwargs"],
        checkpoint_dir=out,
        resume=job["resume"],
        progress=job["progress"],
        trust_code=job["trust_code"],
        normalize=job["normalize"],
    )
    if env_rank() == 0:
        atomic_write_text(out / "report.json", trained.train.model_dump_json())


if __name__ == "__main__":
    main(sys.argv[1])
