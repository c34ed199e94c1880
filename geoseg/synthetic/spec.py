"""What a synthetic scene is: its size, georeferencing, bands, data type and nodata.

:class:`SceneSpec` is the one value every other part of the generator takes.
This module also holds the label ids the generator paints (the six ISPRS
classes, :data:`CLASS_NAMES`) and how the rendered channels become image
bands: their order and names per ``bands`` setting, and the scale per dtype.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import affine
import numpy as np

from ..classes import ISPRS
from ..errors import ConfigError

__all__ = [
    "CLASS_NAMES",
    "_BAND_NAMES",
    "_BAND_ORDER",
    "_BLD",
    "_CAR",
    "_CLU",
    "_DTYPE_SCALE",
    "_IMP",
    "_LOW",
    "_TREE",
    "SceneSpec",
]

#: Names of the ISPRS classes, indexed by label id (label value 255 is nodata).
CLASS_NAMES: tuple[str, ...] = ISPRS.names

_IMP, _BLD, _LOW, _TREE, _CAR, _CLU = range(6)


@dataclass(frozen=True)
class SceneSpec:
    """Size, georeferencing and appearance of a synthetic scene.

    Parameters
    ----------
    width, height : int
        Scene size in pixels.
    pixel_size : float
        Ground sampling distance in CRS units (metres) per pixel; objects
        keep their real-world size whatever the pixel size.
    crs : str
        Any CRS string rasterio understands; written into the GeoTIFFs.
    origin : tuple of float
        ``(x, y)`` of the upper-left corner of the scene (north-up grid).
    seed : int
        Selects the town. Only ``seed mod 2**64`` matters.
    bands : {"rgb", "rgbn", "irrg"}
        Image bands: red-green-blue, RGB plus near infrared, or
        NIR-red-green like ISPRS Vaihingen.
    dtype : {"uint8", "uint16"}
        Image data type; ``uint16`` scales reflectance-like values to
        roughly 0..10000.
    nodata : int or None
        If set, an irregular collar (and usually one cut corner) is written
        with this value in every band and 255 in the label; valid pixels
        never have this value in all bands at once.

    Raises
    ------
    geoseg.errors.ConfigError
        If a field is out of range (a ``ValueError``); the message names it.

    Examples
    --------
    >>> spec = SceneSpec(width=512, height=256, pixel_size=0.2, seed=3)
    >>> spec.count, spec.transform.a
    (3, 0.2)
    """

    width: int
    height: int
    pixel_size: float = 0.1
    crs: str = "EPSG:32633"
    origin: tuple[float, float] = (500000.0, 5800000.0)
    seed: int = 0
    bands: Literal["rgb", "rgbn", "irrg"] = "rgb"
    dtype: Literal["uint8", "uint16"] = "uint8"
    nodata: int | None = None

    def __post_init__(self) -> None:
        for name in ("width", "height"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ConfigError(f"SceneSpec.{name} must be a positive integer, got {value!r}")
        size_ok = isinstance(self.pixel_size, (int, float, np.floating))
        if isinstance(self.pixel_size, bool) or not (size_ok and math.isfinite(self.pixel_size)):
            raise ConfigError(f"SceneSpec.pixel_size must be a finite number, got {self.pixel_size!r}")
        if self.pixel_size <= 0:
            raise ConfigError(
                f"SceneSpec.pixel_size must be > 0 metres, got {self.pixel_size!r}; "
                "typical aerial values are 0.05 to 0.3"
            )
        try:
            origin = tuple(float(v) for v in self.origin)
        except (TypeError, ValueError):
            origin = ()
        if len(origin) != 2 or not all(math.isfinite(v) for v in origin):
            raise ConfigError(f"SceneSpec.origin must be two finite numbers (x, y), got {self.origin!r}")
        object.__setattr__(self, "origin", origin)  # a list would make the spec unhashable
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)):
            raise ConfigError(f"SceneSpec.seed must be an integer, got {self.seed!r}")
        if self.bands not in _BAND_ORDER:
            raise ConfigError(f"SceneSpec.bands must be one of {sorted(_BAND_ORDER)}, got {self.bands!r}")
        if self.dtype not in _DTYPE_SCALE:
            raise ConfigError(f"SceneSpec.dtype must be 'uint8' or 'uint16', got {self.dtype!r}")
        if self.nodata is not None:
            info = np.iinfo(self.dtype)
            if (
                isinstance(self.nodata, bool)
                or not isinstance(self.nodata, (int, np.integer))
                or not info.min <= self.nodata <= info.max
            ):
                raise ConfigError(
                    f"SceneSpec.nodata={self.nodata!r} does not fit dtype {self.dtype} "
                    f"({info.min}..{info.max}); pass an integer in that range or None"
                )

    @property
    def transform(self) -> affine.Affine:
        """Affine transform from pixel (col, row) to CRS (x, y), north up."""
        x0, y0 = self.origin
        return affine.Affine(self.pixel_size, 0.0, float(x0), 0.0, -self.pixel_size, float(y0))

    @property
    def count(self) -> int:
        """Number of image bands (3 for ``rgb`` and ``irrg``, 4 for ``rgbn``)."""
        return len(_BAND_ORDER[self.bands])


_BAND_ORDER: dict[str, tuple[int, ...]] = {
    "rgb": (0, 1, 2),
    "rgbn": (0, 1, 2, 3),
    "irrg": (3, 0, 1),
}
_BAND_NAMES: dict[str, tuple[str, ...]] = {
    "rgb": ("red", "green", "blue"),
    "rgbn": ("red", "green", "blue", "nir"),
    "irrg": ("nir", "red", "green"),
}
_DTYPE_SCALE = {"uint8": 255.0, "uint16": 10000.0}
