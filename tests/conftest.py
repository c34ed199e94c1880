"""Shared fixtures: tiny GeoTIFF writers, small model checkpoints, the shared sample data."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from affine import Affine

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the project; tests using it skip where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"sample data folder {SHARED_DATA} is absent (it sits beside the project checkout)")
    return SHARED_DATA


def write_tif(
    path: Path,
    data: np.ndarray,
    *,
    crs: Any = "EPSG:32633",
    transform: Any = None,
    nodata: float | None = None,
    **profile: Any,
) -> Path:
    """Write `data` (bands, H, W) as a GeoTIFF; 0.5 m pixels at a UTM origin by default."""
    data = np.asarray(data)
    if data.ndim == 2:
        data = data[None]
    count, h, w = data.shape
    prof = {
        "driver": "GTiff",
        "width": w,
        "height": h,
        "count": count,
        "dtype": data.dtype.name,
        "crs": crs,
        "transform": transform or Affine(0.5, 0, 500000.0, 0, -0.5, 5800000.0),
        "nodata": nodata,
    }
    prof.update(profile)
    with rasterio.open(path, "w", **prof) as dst:
        dst.write(data)
    return path


@pytest.fixture
def make_tif(tmp_path: Path) -> Callable[..., Path]:
    counter = iter(range(10_000))

    def make(data: np.ndarray, name: str | None = None, **kw: Any) -> Path:
        return write_tif(tmp_path / (name or f"scene{next(counter)}.tif"), data, **kw)

    return make


def smooth_image(h: int, w: int, bands: int = 3, seed: int = 0, dtype: str = "uint8") -> np.ndarray:
    """A seeded image with large smooth structures plus noise (models give varied classes on it)."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    zoom = 40
    base = rng.random((bands, h // zoom + 2, w // zoom + 2))
    img = np.stack([ndimage.zoom(b, zoom, order=1)[:h, :w] for b in base])
    img = img * 255 + rng.normal(0, 6, img.shape)
    return img.clip(0, 255).astype(dtype)


@pytest.fixture(scope="session")
def fcn_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained FCN-8s / ResNet-18 checkpoint (3 bands): the cheapest model for pipeline tests."""
    from geoseg.predict.checkpoint import init_checkpoint

    path = tmp_path_factory.mktemp("models") / "fcn18.pt"
    init_checkpoint(path, arch="fcn", encoder="resnet18", in_channels=3, seed=1)
    return path


@pytest.fixture(scope="session")
def fcn_model_4band(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from geoseg.predict.checkpoint import init_checkpoint

    path = tmp_path_factory.mktemp("models") / "fcn18_rgbn.pt"
    init_checkpoint(path, arch="fcn", encoder="resnet18", in_channels=4, seed=1)
    return path
