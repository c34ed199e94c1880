"""Model registry: segmentation-models-pytorch architectures and an FCN-8s head."""

from __future__ import annotations

from collections.abc import Callable

import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from segmentation_models_pytorch.encoders import get_encoder
from torch import nn

from .spec import ARCHITECTURES

__all__ = ["FCN", "build_model", "input_multiple"]


class FCN(nn.Module):
    """FCN-8s-style head on a ResNet encoder (Long, Shelhamer & Darrell, 2015).

    1x1 score convolutions on the stride-8, -16 and -32 encoder features; the
    coarser scores are upsampled bilinearly and summed into the finer ones,
    then upsampled to the input size. As in the original, the skip scores start
    at zero so training begins from the stride-32 prediction.
    """

    output_stride = 32

    def __init__(
        self,
        encoder_name: str = "resnet34",
        *,
        in_channels: int = 3,
        classes: int = 6,
        encoder_weights: str | None = None,
    ) -> None:
        super().__init__()
        self.encoder = get_encoder(encoder_name, in_channels=in_channels, depth=5, weights=encoder_weights)
        ch = self.encoder.out_channels
        self.score32 = nn.Conv2d(ch[-1], classes, kernel_size=1)
        self.score16 = nn.Conv2d(ch[-2], classes, kernel_size=1)
        self.score8 = nn.Conv2d(ch[-3], classes, kernel_size=1)
        for layer in (self.score16, self.score8):
            nn.init.zeros_(layer.weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.encoder(x)
        s = self.score32(feats[-1])
        s = self.score16(feats[-2]) + F.interpolate(s, size=feats[-2].shape[-2:], mode="bilinear", align_corners=False)
        s = self.score8(feats[-3]) + F.interpolate(s, size=feats[-3].shape[-2:], mode="bilinear", align_corners=False)
        return F.interpolate(s, size=x.shape[-2:], mode="bilinear", align_corners=False)


def _smp(cls: type[nn.Module]) -> Callable[..., nn.Module]:
    def make(encoder: str, *, in_channels: int, classes: int, encoder_weights: str | None) -> nn.Module:
        return cls(encoder_name=encoder, encoder_weights=encoder_weights, in_channels=in_channels, classes=classes)

    return make


def _fcn(encoder: str, *, in_channels: int, classes: int, encoder_weights: str | None) -> nn.Module:
    return FCN(encoder, in_channels=in_channels, classes=classes, encoder_weights=encoder_weights)


#: Architecture name -> constructor.
REGISTRY: dict[str, Callable[..., nn.Module]] = {
    "unet": _smp(smp.Unet),
    "fpn": _smp(smp.FPN),
    "deeplabv3plus": _smp(smp.DeepLabV3Plus),
    "fcn": _fcn,
}
assert tuple(REGISTRY) == ARCHITECTURES


def build_model(
    arch: str, encoder: str, *, in_channels: int, classes: int, encoder_weights: str | None = None
) -> nn.Module:
    """Build an untrained (or ImageNet-initialised) model.

    Raises
    ------
    KeyError
        Unknown architecture; the message lists the valid names.
    """
    try:
        make = REGISTRY[arch]
    except KeyError:
        raise KeyError(f"unknown architecture {arch!r}; choose one of {', '.join(REGISTRY)}") from None
    return make(encoder, in_channels=in_channels, classes=classes, encoder_weights=encoder_weights)


def input_multiple(model: nn.Module) -> int:
    """Tile sizes must be a multiple of this (the encoder's output stride)."""
    enc = getattr(model, "encoder", None)
    return int(getattr(enc, "output_stride", getattr(model, "output_stride", 32)))
