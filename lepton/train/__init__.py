"""Training: the shared loop, evaluation, checkpoints (safetensors + JSON) and seeding."""

from lepton.data.batches import TensorBatches
from lepton.train.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from lepton.train.config import TrainConfig
from lepton.train.evaluate import EvalReport, evaluate, predict_logits
from lepton.train.loop import EpochRecord, Objective, TrainReport, cross_entropy, fit, lr_at
from lepton.train.seed import seed_everything

__all__ = ["Checkpoint", "EpochRecord", "EvalReport", "Objective", "TensorBatches", "TrainConfig", "TrainReport",
           "cross_entropy", "evaluate", "fit", "load_checkpoint", "lr_at", "predict_logits", "save_checkpoint",
           "seed_everything"]
