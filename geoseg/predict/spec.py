"""What a model expects: the metadata every geoseg checkpoint carries.

This module does not import torch, so tools that only describe a model can use
the dataclass; reading a checkpoint file needs :mod:`geoseg.predict.checkpoint`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal, get_args

from ..classes import ISPRS, ClassTable

__all__ = ["ARCHITECTURES", "ENCODERS", "IMAGENET_MEAN", "IMAGENET_STD", "Architecture", "ModelSpec"]

#: Architectures geoseg can build (see :mod:`geoseg.predict.models`).
Architecture = Literal["unet", "fpn", "deeplabv3plus", "fcn", "fcn4s"]
ARCHITECTURES: tuple[str, ...] = get_args(Architecture)
#: Encoders offered on the command line; any segmentation-models-pytorch encoder works in the API.
ENCODERS = ("resnet18", "resnet34", "resnet50")

#: ImageNet statistics in 8-bit pixel units, for encoders pretrained on ImageNet.
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to run a model on a scene, stored inside the checkpoint.

    Attributes
    ----------
    arch, encoder : str
        Architecture (``unet``, ``fpn``, ``deeplabv3plus``, ``fcn``, ``fcn4s``) and encoder name.
    in_channels : int
        Number of input bands.
    bands : tuple of str
        Name of each input band in order (``red``, ``green``, ``blue``, ``nir``...).
    mean, std : tuple of float
        Per-band normalisation in the scene's pixel units: the model sees
        ``(pixel - mean) / std``.
    classes : ClassTable
        Output classes; output channel ``i`` is class id ``i``.
    tile_size : int
        Tile size the model was trained with (the default for ``geoseg run``).
    gsd : float or None
        Training ground sampling distance in metres, if known.
    pixel_dtype : str or None
        Data type of the training imagery (``uint8``, ``uint16``...).
    encoder_weights : str or None
        Weights the encoder was initialised with (``imagenet`` or None).
    name : str
        Short human name.
    extra : dict
        Free-form provenance (training data, metrics...).
    """

    arch: str
    encoder: str
    in_channels: int
    bands: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: ClassTable = ISPRS
    tile_size: int = 512
    gsd: float | None = None
    pixel_dtype: str | None = "uint8"
    encoder_weights: str | None = None
    name: str = "model"
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        # numpy scalars (from statistics) would not serialise into the checkpoint
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {self.arch!r}; choose one of {', '.join(ARCHITECTURES)}")
        n = self.in_channels
        for label, seq in (("bands", self.bands), ("mean", self.mean), ("std", self.std)):
            if len(seq) != n:
                raise ValueError(f"{label} has {len(seq)} values but in_channels is {n}")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std values must be positive, got {list(self.std)}")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["classes"] = self.classes.to_dict()
        d["bands"], d["mean"], d["std"] = list(self.bands), list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelSpec:
        d = dict(d)
        d["classes"] = ClassTable.from_dict(d["classes"])
        for k in ("bands", "mean", "std"):
            d[k] = tuple(d[k])
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})

    @staticmethod
    def default_bands(n: int) -> tuple[str, ...]:
        """Band names for `n` inputs: RGB, RGB+NIR, else ``band1..bandN``."""
        if n == 3:
            return ("red", "green", "blue")
        if n == 4:
            return ("red", "green", "blue", "nir")
        return tuple(f"band{i + 1}" for i in range(n))
