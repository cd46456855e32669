"""``lepton run --track mlflow``: one MLflow run in a local SQLite store inside the run folder.

Where: ``RUN/mlflow/mlflow.db`` (tracking URI ``sqlite:///RUN/mlflow/mlflow.db``), artifacts under
``RUN/mlflow/artifacts``; experiment ``lepton``, one run named after the run folder. MLflow 3 keeps the
``file:`` store (``./mlruns``) only in maintenance mode and refuses to open it unless
``MLFLOW_ALLOW_FILE_STORE=true``; SQLite is its supported local backend, so Lepton uses that. No server is
started and nothing goes over the network (MLflow's usage telemetry is switched off for the process).

What: the resolved config as params (flattened dotted keys, e.g. ``train.epochs``) and as the artifact
``config.yaml``; each stage's numbers as metrics ``STAGE/FIELD`` at step 0 and its per-epoch ``history`` as
``STAGE/epoch/FIELD`` at step = epoch, logged from the report when the stage ends (so a resumed run logs what
an uninterrupted one does). A resumed run replaces the interrupted attempt's MLflow run: the earlier run is
deleted (MLflow's logical delete) so the store holds one live run per run folder.

View it with ``mlflow ui --backend-store-uri sqlite:///RUN/mlflow/mlflow.db`` (needs the full ``mlflow``
package) or read it with ``mlflow.tracking.MlflowClient``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from pathlib import Path

from pydantic import BaseModel

from lepton.report.track import check_tracker, config_yaml, flatten, stage_numbers

EXPERIMENT = "lepton"
BATCH = 100  # MLflow's log_batch takes at most 100 params (and 1000 metrics) per call
_BAD = re.compile(r"[^\w./\- :]")  # MLflow's allowed name characters; anything else becomes "_"


def tracking_uri(folder: str | Path) -> str:
    """The SQLite tracking URI of the store in ``folder``."""
    return "sqlite:///" + str((Path(folder) / "mlflow.db").resolve())


class MLflowTracker:
    """Logs the run's config, stage numbers and per-epoch curves to a local MLflow SQLite store."""

    def __init__(self, folder: str | Path, *, run_name: str = "lepton") -> None:
        check_tracker("mlflow")
        os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"  # a local store only: MLflow 3 would otherwise phone home
        from mlflow.tracking import MlflowClient

        logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)  # "Creating initial tables" on stderr
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.uri = tracking_uri(self.folder)
        self._client = MlflowClient(tracking_uri=self.uri)
        experiment = self._client.get_experiment_by_name(EXPERIMENT)
        if experiment is None:
            experiment_id = self._client.create_experiment(
                EXPERIMENT, artifact_location=(self.folder / "artifacts").resolve().as_uri()
            )
        else:
            experiment_id = experiment.experiment_id
            for old in self._client.search_runs([experiment_id]):  # an interrupted attempt of this run folder
                self._client.delete_run(old.info.run_id)
        self.run_id = self._client.create_run(experiment_id, run_name=run_name).info.run_id

    def config(self, config: BaseModel) -> None:
        """Log the config as params (dotted keys; lists as JSON) and as the artifact ``config.yaml``."""
        from mlflow.entities import Param

        params = [
            Param(_name(k), v if isinstance(v, str) else json.dumps(v))
            for k, v in flatten(config.model_dump(mode="json")).items()
        ]
        for i in range(0, len(params), BATCH):
            self._client.log_batch(self.run_id, params=params[i : i + BATCH])
        self._client.log_text(self.run_id, config_yaml(config), "config.yaml")

    def stage(self, name: str, report: BaseModel) -> None:
        """Log ``report``'s numbers as ``name/FIELD`` at step 0 and its ``history`` (if any) per epoch."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        final, curves = stage_numbers(report)
        metrics = [Metric(_name(f"{name}/{k}"), v, now, 0) for k, v in final.items()]
        for epoch, numbers in curves:
            metrics += [Metric(_name(f"{name}/epoch/{k}"), v, now, epoch) for k, v in numbers.items()]
        for i in range(0, len(metrics), BATCH * 10):
            self._client.log_batch(self.run_id, metrics=metrics[i : i + BATCH * 10])

    def close(self) -> None:
        """Mark the MLflow run finished."""
        self._client.set_terminated(self.run_id, "FINISHED")


def _name(key: str) -> str:
    """``key`` with the characters MLflow refuses in a param or metric name replaced by ``_``."""
    return _BAD.sub("_", key)
