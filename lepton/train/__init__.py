"""Training: the shared loop, evaluation, checkpoints (safetensors + JSON) and seeding.

The names below load on first use (:mod:`lepton.utils.lazy`), so ``lepton.train.config`` imports without torch.
"""

from lepton.utils.lazy import lazy_exports

__all__ = [
    "Checkpoint",
    "EpochRecord",
    "EvalReport",
    "Objective",
    "TensorBatches",
    "TrainConfig",
    "TrainReport",
    "cross_entropy",
    "evaluate",
    "fit",
    "load_checkpoint",
    "lr_at",
    "predict_logits",
    "save_checkpoint",
    "seed_everything",
]

lazy_exports(
    __name__,
    {
        "lepton.data.batches": ("TensorBatches",),
        "lepton.train.checkpoint": ("Checkpoint", "load_checkpoint", "save_checkpoint"),
        "lepton.train.config": ("TrainConfig",),
        "lepton.train.evaluate": ("EvalReport", "evaluate", "predict_logits"),
        "lepton.train.loop": ("EpochRecord", "Objective", "TrainReport", "cross_entropy", "fit", "lr_at"),
        "lepton.train.seed": ("seed_everything",),
    },
)
