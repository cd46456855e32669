"""The LeNet family used throughout the literature on MNIST compression."""

from __future__ import annotations

import torch
from torch import nn

from lepton.utils.checks import check_int


def _conv_out(size: int, kernel: int, padding: int = 0) -> int:
    return size + 2 * padding - kernel + 1


def _check_widths(model: str, **widths: int) -> None:
    for name, width in widths.items():
        check_int(width, name, 1, owner=model, hint="Pass a positive channel count.", error=ValueError)


class LeNet5(nn.Module):
    """LeNet-5 as in Caffe's example and Deep Compression: conv 20@5x5, pool, conv 50@5x5, pool,
    fc 500, fc 10 (431,080 parameters on 28x28 MNIST). The widths are arguments so that a
    channel-pruned copy can be rebuilt from its spec."""

    def __init__(
        self,
        in_channels: int = 1,
        image_size: int = 28,
        num_classes: int = 10,
        *,
        conv1: int = 20,
        conv2: int = 50,
        fc1: int = 500,
    ) -> None:
        super().__init__()
        side = _conv_out(_conv_out(image_size, 5) // 2, 5) // 2
        if side < 1:
            raise ValueError(
                f"LeNet-5 needs images of at least 12x12 pixels, got {image_size}x{image_size}; "
                "use lenet-300-100 for smaller images."
            )
        _check_widths("LeNet-5", conv1=conv1, conv2=conv2, fc1=fc1)
        self.conv1 = nn.Conv2d(in_channels, conv1, 5)
        self.conv2 = nn.Conv2d(conv1, conv2, 5)
        self.fc1 = nn.Linear(conv2 * side * side, fc1)
        self.fc2 = nn.Linear(fc1, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.max_pool2d(self.conv1(x), 2)  # Caffe's LeNet has no ReLU after the convs
        x = nn.functional.max_pool2d(self.conv2(x), 2)
        x = nn.functional.relu(self.fc1(x.flatten(1)))
        return self.fc2(x)


class LeNet5Classic(nn.Module):
    """LeCun et al. 1998's LeNet-5 layout (6-16-120-84-10) with ReLU and max pooling; conv1 pads by 2
    so 28x28 MNIST sees the original 32x32 geometry (61,706 parameters)."""

    def __init__(
        self,
        in_channels: int = 1,
        image_size: int = 28,
        num_classes: int = 10,
        *,
        conv1: int = 6,
        conv2: int = 16,
        fc1: int = 120,
        fc2: int = 84,
    ) -> None:
        super().__init__()
        side = _conv_out(_conv_out(image_size, 5, 2) // 2, 5) // 2
        if side < 1:
            raise ValueError(f"classic LeNet-5 needs images of at least 12x12 pixels, got {image_size}x{image_size}.")
        _check_widths("classic LeNet-5", conv1=conv1, conv2=conv2, fc1=fc1, fc2=fc2)
        self.conv1 = nn.Conv2d(in_channels, conv1, 5, padding=2)
        self.conv2 = nn.Conv2d(conv1, conv2, 5)
        self.fc1 = nn.Linear(conv2 * side * side, fc1)
        self.fc2 = nn.Linear(fc1, fc2)
        self.fc3 = nn.Linear(fc2, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.max_pool2d(nn.functional.relu(self.conv1(x)), 2)
        x = nn.functional.max_pool2d(nn.functional.relu(self.conv2(x)), 2)
        x = nn.functional.relu(self.fc1(x.flatten(1)))
        x = nn.functional.relu(self.fc2(x))
        return self.fc3(x)


class LeNet300100(nn.Module):
    """The fully connected LeNet-300-100 (266,610 parameters on 28x28 MNIST)."""

    def __init__(
        self, in_channels: int = 1, image_size: int = 28, num_classes: int = 10, *, fc1: int = 300, fc2: int = 100
    ) -> None:
        super().__init__()
        _check_widths("LeNet-300-100", fc1=fc1, fc2=fc2)
        self.fc1 = nn.Linear(in_channels * image_size * image_size, fc1)
        self.fc2 = nn.Linear(fc1, fc2)
        self.fc3 = nn.Linear(fc2, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.relu(self.fc1(x.flatten(1)))
        x = nn.functional.relu(self.fc2(x))
        return self.fc3(x)
