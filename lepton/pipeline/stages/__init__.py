"""The stages of ``lepton run``, in order. A new capability adds its stage to :data:`STAGES`."""

from lepton.pipeline.stages.compress import CompressStage
from lepton.pipeline.stages.data import DataStage, DataStageReport
from lepton.pipeline.stages.edge import EdgeStage, EdgeStageReport
from lepton.pipeline.stages.quantum import QuantumStage, QuantumStageReport
from lepton.pipeline.stages.train import TrainStage, TrainStageReport

STAGES = [DataStage(), TrainStage(), CompressStage(), EdgeStage(), QuantumStage()]

__all__ = [
    "STAGES",
    "CompressStage",
    "DataStage",
    "DataStageReport",
    "EdgeStage",
    "EdgeStageReport",
    "QuantumStage",
    "QuantumStageReport",
    "TrainStage",
    "TrainStageReport",
]
