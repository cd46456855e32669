"""Channel layout of 4-D image arrays: detect channels-first (N, C, H, W) or channels-last (N, H, W, C)."""

from __future__ import annotations

import numpy as np

from lepton.errors import DataError

CHANNEL_COUNTS = (1, 3, 4)
"""Channel counts the detection recognises: grey, RGB, RGBA."""


def detect_layout(shape: tuple[int, ...], where: str) -> str:
    """``"nchw"`` or ``"nhwc"`` for a 4-D ``shape``: the side whose size is a channel count (1, 3 or 4).

    Args:
        shape: the array's shape, ``(N, A, B, C)``.
        where: what the array is (a file and key), named in the error.

    Returns:
        The layout, when exactly one side looks like channels; else a :class:`DataError` asking for the option.
    """
    first, last = shape[1] in CHANNEL_COUNTS, shape[3] in CHANNEL_COUNTS
    if first != last:
        return "nchw" if first else "nhwc"
    why = "both the second and the last axis" if first else "neither the second nor the last axis"
    raise DataError(
        f"{where}: images of shape {tuple(shape)} are ambiguous: {why} could hold the channels (1, 3 or 4). "
        "State the layout: --layout nchw (channels first) or --layout nhwc (channels last), "
        "or 'layout:' in the data section of the config."
    )


def to_nchw(x: np.ndarray, layout: str, where: str) -> np.ndarray:
    """``x`` as (N, C, H, W) (a copy when it was channels-last); 3-D grey ``(N, H, W)`` is returned as is.

    Args:
        x: images, 3-D or 4-D.
        layout: ``"auto"`` (detect with :func:`detect_layout`), ``"nchw"`` or ``"nhwc"``.
        where: what the array is, named in errors.

    Returns:
        The images with channels first.
    """
    if x.ndim != 4:
        return x
    chosen = detect_layout(x.shape, where) if layout == "auto" else layout
    if chosen == "nhwc":
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    if chosen != "nchw":
        raise DataError(f"{where}: layout must be auto, nchw or nhwc, got {layout!r}.")
    return x
