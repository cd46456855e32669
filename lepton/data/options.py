"""How a dataset source is read: image size, channels, array layout, held-out fraction (one typed config).

Light on purpose (pydantic only): ``lepton.pipeline.config``'s ``data`` section extends it, and reading a run
config must not load torch or Pillow.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from lepton.config import StrictModel


class SourceOptions(StrictModel):
    """Options of :func:`lepton.data.sources.load_dataset`; each applies only to the sources named in it."""

    image_size: int | None = Field(
        None,
        ge=1,
        le=4096,
        description="image folders: resize (shorter side) and center-crop every image to SIZE x SIZE; "
        "default: the most common size among the images",
    )
    channels: Literal["auto", "grey", "rgb"] = Field(
        "auto", description="image folders: grey (1 channel) or rgb (3); auto = rgb if any image is colour"
    )
    layout: Literal["auto", "nchw", "nhwc"] = Field(
        "auto", description=".npz with 4-D images: channels first (nchw) or last (nhwc); auto = detect"
    )
    cifar_labels: Literal["fine", "coarse"] = Field(
        "fine", description="CIFAR-100: the 100 fine classes or the 20 coarse superclasses"
    )
    test_fraction: float = Field(
        0.2,
        gt=0.0,
        lt=1.0,
        description="held out for testing (seed 0) when a source has no test split: an .npz with x/y, "
        "or an image folder without train/ and test/ (per class)",
    )
