"""A small model zoo beyond the LeNets, sized for 28–32 px images: BatchNorm, residual adds, depthwise
convolutions and an all-linear net, so every stage is exercised on the layer kinds real users bring.
Parameter counts below are for 1x28x28 inputs and 10 classes (``lepton info`` lists them with MACs).

- :class:`ResNet20` — He et al. 2016's CIFAR ResNet-20 (3 stages of 3 basic blocks, 16-32-64 channels,
  parameter-free "option A" shortcuts: subsample + zero-pad), 269,434 parameters.
- :class:`MobileNetV2Small` — MobileNetV2's inverted residual blocks (1x1 expand, 3x3 depthwise, 1x1 linear
  projection, ReLU6, residual add when the shape allows) at widths for small images, 134,538 parameters.
- :class:`MLPMixerSmall` — Tolstikhin et al. 2021's MLP-Mixer: patch embedding, token- and channel-mixing
  MLPs with LayerNorm and GELU; no convolution beyond the patch embedding, 174,246 parameters.

All take ``in_channels``, ``image_size`` and ``num_classes``, and trace with torch.fx.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _check(model: str, **values: int) -> None:
    for name, v in values.items():
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{model}: {name}={v!r} must be an int >= 1.")


class BasicBlock(nn.Module):
    """Two 3x3 conv + BatchNorm layers and an identity shortcut; a strided block subsamples the shortcut and
    zero-pads its new channels (option A of He et al., no parameters)."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.stride, self.pad = stride, planes - in_planes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x
        if self.stride != 1 or self.pad:
            shortcut = F.pad(x[:, :, :: self.stride, :: self.stride], (0, 0, 0, 0, 0, self.pad))
        return F.relu(out + shortcut)


class ResNet20(nn.Module):
    """ResNet-20 for small images (269,722 parameters for 3x32x32 and 10 classes; 269,434 for 1x28x28)."""

    def __init__(
        self, in_channels: int = 1, image_size: int = 28, num_classes: int = 10, *, width: int = 16, blocks: int = 3
    ) -> None:
        super().__init__()
        _check(
            "ResNet-20",
            in_channels=in_channels,
            image_size=image_size,
            num_classes=num_classes,
            width=width,
            blocks=blocks,
        )
        if image_size < 8:
            raise ValueError(f"ResNet-20 needs images of at least 8x8 pixels, got {image_size}x{image_size}.")
        self.conv1 = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        layers, planes = [], width
        for stage, mult in enumerate((1, 2, 4)):
            for i in range(blocks):
                stride = 2 if stage > 0 and i == 0 else 1
                layers.append(BasicBlock(planes, width * mult, stride))
                planes = width * mult
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(planes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(F.relu(self.bn1(self.conv1(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class InvertedResidual(nn.Module):
    """MobileNetV2's block: 1x1 expand (BN, ReLU6), 3x3 depthwise (BN, ReLU6), 1x1 linear projection (BN),
    and a residual add when input and output shapes agree."""

    def __init__(self, in_planes: int, planes: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = in_planes * expand
        self.use_residual = stride == 1 and in_planes == planes
        self.block = nn.Sequential(
            nn.Conv2d(in_planes, hidden, 1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, hidden, 3, stride=stride, padding=1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, planes, 1, bias=False),
            nn.BatchNorm2d(planes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x) if self.use_residual else self.block(x)


class MobileNetV2Small(nn.Module):
    """A depthwise-separable MobileNetV2 for 28–32 px images: stem 16, stages (expand, channels, blocks,
    stride) = (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 2, 2), (6, 64, 2, 2), head 1x1 to 256, pooling, linear."""

    STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 2, 2), (6, 64, 2, 2))

    def __init__(self, in_channels: int = 1, image_size: int = 28, num_classes: int = 10, *, head: int = 256) -> None:
        super().__init__()
        _check("MobileNetV2-small", in_channels=in_channels, image_size=image_size, num_classes=num_classes, head=head)
        if image_size < 8:
            raise ValueError(f"MobileNetV2-small needs images of at least 8x8 pixels, got {image_size}x{image_size}.")
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU6(inplace=True)
        )
        blocks, planes = [], 16
        for expand, channels, n, stride in self.STAGES:
            for i in range(n):
                blocks.append(InvertedResidual(planes, channels, stride if i == 0 else 1, expand))
                planes = channels
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.Conv2d(planes, head, 1, bias=False), nn.BatchNorm2d(head), nn.ReLU6(inplace=True))
        self.classifier = nn.Linear(head, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.blocks(self.stem(x)))
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class MixerBlock(nn.Module):
    """Token mixing (an MLP across patches, per channel) then channel mixing (an MLP per patch), each with a
    LayerNorm in front and a residual add."""

    def __init__(self, tokens: int, dim: int, token_hidden: int, channel_hidden: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.token_fc1, self.token_fc2 = nn.Linear(tokens, token_hidden), nn.Linear(token_hidden, tokens)
        self.norm2 = nn.LayerNorm(dim)
        self.channel_fc1, self.channel_fc2 = nn.Linear(dim, channel_hidden), nn.Linear(channel_hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [batch, tokens, dim]
        y = self.norm1(x).transpose(1, 2)
        x = x + self.token_fc2(F.gelu(self.token_fc1(y))).transpose(1, 2)
        return x + self.channel_fc2(F.gelu(self.channel_fc1(self.norm2(x))))


class MLPMixerSmall(nn.Module):
    """MLP-Mixer with 4x4-pixel patches (7x7 = 49 tokens on 28 px, 64 on 32 px), 4 blocks of width 64."""

    def __init__(
        self,
        in_channels: int = 1,
        image_size: int = 28,
        num_classes: int = 10,
        *,
        patch: int = 4,
        dim: int = 64,
        depth: int = 4,
    ) -> None:
        super().__init__()
        _check(
            "MLP-Mixer",
            in_channels=in_channels,
            image_size=image_size,
            num_classes=num_classes,
            patch=patch,
            dim=dim,
            depth=depth,
        )
        if image_size % patch:
            raise ValueError(
                f"MLP-Mixer: image size {image_size} is not a multiple of the patch size {patch}; "
                'pass kwargs {"patch": P} with P dividing the image size.'
            )
        tokens = (image_size // patch) ** 2
        self.embed = nn.Conv2d(in_channels, dim, patch, stride=patch)
        self.blocks = nn.Sequential(*[MixerBlock(tokens, dim, 2 * tokens, 4 * dim) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.fc = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x).flatten(2).transpose(1, 2)  # [batch, tokens, dim]
        return self.fc(self.norm(self.blocks(x)).mean(1))
