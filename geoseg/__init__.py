"""geoseg: land-cover maps from large GeoTIFFs.

Tile a scene lazily with Dask, segment it into the six ISPRS classes with a
U-Net/FPN/DeepLabV3+/FCN on a ResNet encoder, blend overlapping tiles into one
seamless class raster, and vectorise it into land-cover polygons.

Importing geoseg does not import torch; the model code lives in
:mod:`geoseg.predict` (inference) and :mod:`geoseg.training` and is loaded
when a run needs it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "ISPRS",
    "ClassTable",
    "GeosegError",
    "RunConfig",
    "RunResult",
    "__version__",
    "open_scene",
    "run",
]

from .classes import ISPRS, ClassTable
from .errors import GeosegError

if TYPE_CHECKING:
    from .config import RunConfig
    from .pipeline import RunResult, run
    from .raster import open_scene


def __getattr__(name: str) -> Any:
    # Heavy modules (dask, geopandas, zarr) load on first use, keeping `geoseg --help` fast.
    if name in ("run", "RunResult"):
        from . import pipeline

        return getattr(pipeline, name)
    if name == "RunConfig":
        from .config import RunConfig

        return RunConfig
    if name == "open_scene":
        from .raster import open_scene

        return open_scene
    raise AttributeError(f"module 'geoseg' has no attribute {name!r}")
