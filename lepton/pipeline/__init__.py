"""The end-to-end run behind ``lepton run``: a typed config, a list of stages, a run directory."""

from lepton.pipeline.config import QUICK, DataConfig, ModelConfig, RunConfig, load_run_config
from lepton.pipeline.run import RunResult, run_pipeline
from lepton.pipeline.state import RunState, Stage

__all__ = ["QUICK", "DataConfig", "ModelConfig", "RunConfig", "RunResult", "RunState", "Stage",
           "load_run_config", "run_pipeline"]
