"""The stages of ``lepton run``, in order. A new capability adds its stage to :data:`STAGES`."""

from lepton.pipeline.stages.compress import CompressStage
from lepton.pipeline.stages.train import TrainStage, TrainStageReport

STAGES = [TrainStage(), CompressStage()]

__all__ = ["STAGES", "CompressStage", "TrainStage", "TrainStageReport"]
