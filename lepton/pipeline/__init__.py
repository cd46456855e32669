"""The end-to-end run behind ``lepton run``: a typed config, a list of stages, a run directory.

The names below load on first use (:mod:`lepton.utils.lazy`), so ``lepton.pipeline.config`` stays light.
"""

from lepton.utils.lazy import lazy_exports

__all__ = [
    "QUICK",
    "DataConfig",
    "ModelConfig",
    "RunConfig",
    "RunResult",
    "RunState",
    "Stage",
    "load_run_config",
    "run_pipeline",
]

lazy_exports(
    __name__,
    {
        "lepton.pipeline.config": ("QUICK", "DataConfig", "ModelConfig", "RunConfig", "load_run_config"),
        "lepton.pipeline.run": ("RunResult", "run_pipeline"),
        "lepton.pipeline.state": ("RunState", "Stage"),
    },
)
