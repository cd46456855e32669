"""The stages of ``lepton run``, in order. A new capability adds its stage to :data:`STAGES`."""

from lepton.pipeline.stages.train import TrainStage, TrainStageReport

STAGES = [TrainStage()]

__all__ = ["STAGES", "TrainStage", "TrainStageReport"]
