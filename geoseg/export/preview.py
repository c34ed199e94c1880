"""A quick-look PNG: the scene beside its class map."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil

from .._files import staged
from ..classes import NODATA, ClassTable
from ..raster import SceneInfo, open_raster, valid_mask
from ..remote import scene_name

__all__ = ["write_preview"]

log = logging.getLogger(__name__)


def _stretch(band: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Linear 2-98 % stretch to uint8 (any input dtype)."""
    vals = band[valid]
    if vals.size == 0:
        return np.zeros(band.shape, np.uint8)
    lo, hi = np.percentile(vals, [2, 98])
    scaled = (band.astype(np.float64) - lo) / max(hi - lo, 1e-9)
    return (np.clip(scaled, 0, 1) * 255).astype(np.uint8)


def write_preview(
    info: SceneInfo,
    classes_tif: str | os.PathLike[str],
    path: str | os.PathLike[str],
    classes: ClassTable,
    *,
    max_side: int = 800,
    alpha: float = 0.55,
) -> Path:
    """A PNG quicklook: the scene, the scene under the class colours, and a legend with each class's share.

    Both rasters are read at reduced resolution (the class COG through its
    ``mode`` overviews), so memory stays small for any scene size.
    """
    from PIL import Image, ImageDraw, ImageFont
    from rasterio.enums import Resampling

    scale = max(info.width, info.height) / max_side
    h, w = (
        (info.height, info.width)
        if scale <= 1
        else (max(1, round(info.height / scale)), max(1, round(info.width / scale)))
    )
    order = {ci: i + 1 for i, ci in enumerate(info.colorinterp)}
    rgb = [order[c] for c in ("red", "green", "blue") if c in order]
    if len(rgb) < 3:
        rgb = list(info.data_bands[:3]) if len(info.data_bands) >= 3 else [info.data_bands[0]] * 3
    with open_raster(info.path) as src:
        img = src.read(rgb, out_shape=(3, h, w), resampling=Resampling.average)
        valid = valid_mask(src, info.path, None, out_shape=(h, w)) > 0  # an alpha band holding data is no mask
    with rasterio.open(classes_tif) as src:
        cls = src.read(1, out_shape=(h, w), resampling=Resampling.nearest)
    base = np.stack([_stretch(b, valid) for b in img], axis=-1)
    base[~valid] = (128, 128, 128)
    lut = np.zeros((256, 3), np.uint8)
    for c in classes:
        lut[c.id] = c.color
    colour = lut[cls]
    known = cls != NODATA
    over = base.copy()
    over[known] = (alpha * colour[known] + (1 - alpha) * base[known]).astype(np.uint8)

    font = ImageFont.load_default(size=15)
    gap, legend_h = 10, 30 + 24 * ((len(classes) + 2) // 3)
    canvas = Image.new("RGB", (2 * w + 3 * gap, h + 2 * gap + legend_h), "white")
    canvas.paste(Image.fromarray(base), (gap, gap))
    canvas.paste(Image.fromarray(over), (2 * gap + w, gap))
    draw = ImageDraw.Draw(canvas)
    counts = np.bincount(cls[known].ravel(), minlength=len(classes))[: len(classes)]
    total = max(int(counts.sum()), 1)
    draw.text(
        (gap, h + gap + 6),
        f"{scene_name(info.path)} · {info.width} x {info.height} px · {info.crs_name}",
        fill="black",
        font=font,
    )
    col_w = (2 * w + gap) // 3
    for i, c in enumerate(classes):
        x = gap + (i % 3) * col_w
        y = h + gap + 30 + 24 * (i // 3)
        draw.rectangle((x, y, x + 18, y + 16), fill=c.color, outline="black")
        draw.text((x + 26, y), f"{c.name} {100 * counts[c.id] / total:.1f} %", fill="black", font=font)
    with staged(path) as tmp:
        canvas.save(tmp, format="PNG")
    return Path(path)
