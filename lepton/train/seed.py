"""Reproducibility: one call seeds every generator Lepton's training touches and fixes the threads."""

from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int, threads: int = 0) -> None:
    """Seed Python, NumPy and torch; with ``threads`` > 0 fix torch's intra-op thread count."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if threads > 0:
        torch.set_num_threads(threads)
