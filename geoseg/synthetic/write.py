"""Writing synthetic scenes to GeoTIFF files.

:func:`write_scene` renders a scene window by window into a tiled image
GeoTIFF and, optionally, its label GeoTIFF with the ISPRS colour table;
:func:`write_copies` tiles an existing GeoTIFF into a larger one, for
memory and speed measurements on big scenes.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from ..classes import ISPRS, NODATA
from ..errors import ConfigError
from .render import render_window
from .spec import _BAND_NAMES, CLASS_NAMES, SceneSpec

__all__ = ["write_copies", "write_scene"]

logger = logging.getLogger(__name__)


def write_scene(
    spec: SceneSpec,
    image_path: str | os.PathLike[str],
    label_path: str | os.PathLike[str] | None = None,
    *,
    block: int = 1024,
    compress: str = "deflate",
) -> None:
    """Render a scene into tiled GeoTIFFs, window by window.

    Parameters
    ----------
    spec : SceneSpec
        The scene to render.
    image_path : str or os.PathLike
        Output image GeoTIFF: ``spec.count`` bands of ``spec.dtype`` with the
        spec's CRS and transform, ``nodata=spec.nodata`` when set, and band
        descriptions (``red``, ``green``, ``blue``, ``nir``).
    label_path : str or os.PathLike, optional
        Output label GeoTIFF: one uint8 band of class ids, nodata 255, with
        the ISPRS colour table. Not written when None.
    block : int, optional
        Side of the square windows rendered at a time; rounded up to a
        multiple of the internal tile size (512, or 256 for scenes smaller
        than 512 pixels).
    compress : str, optional
        GDAL compression for both files (``deflate``, ``lzw``, ``zstd``,
        ``none``...).

    Raises
    ------
    geoseg.errors.ConfigError
        If ``block`` is not a positive integer (a ``ValueError``).

    Notes
    -----
    Memory is bounded by ``block``, whatever the scene size: the rendered
    block (``count`` x itemsize + 1 bytes per pixel) plus about 35 MB of
    working memory. Files are written under a temporary name next
    to the target and renamed when complete, so a crash never leaves a
    half-written scene under the final name.
    """
    if isinstance(block, bool) or not isinstance(block, (int, np.integer)) or block < 1:
        raise ConfigError(f"block must be a positive integer number of pixels, got {block!r}")
    import rasterio
    from rasterio.enums import ColorInterp
    from rasterio.windows import Window

    tile = 512 if min(spec.width, spec.height) >= 512 else 256
    step = max(tile, -(-int(block) // tile) * tile)
    predictor = {"predictor": 2} if compress.lower() in ("deflate", "lzw", "zstd") else {}
    common = dict(
        driver="GTiff",
        width=spec.width,
        height=spec.height,
        crs=spec.crs,
        transform=spec.transform,
        tiled=True,
        blockxsize=tile,
        blockysize=tile,
        compress=compress,
        BIGTIFF="IF_SAFER",
    )
    image_profile = dict(
        common,
        count=spec.count,
        dtype=spec.dtype,
        nodata=spec.nodata,
        interleave="pixel",
        **predictor,
    )
    # GDAL would tag three uint8 bands as red, green, blue; NIR-R-G must not claim that.
    image_profile["photometric"] = {"rgb": "RGB", "rgbn": "MINISBLACK", "irrg": "MINISBLACK"}[spec.bands]
    label_profile = dict(common, count=1, dtype="uint8", nodata=NODATA)
    targets = [Path(image_path)] + ([Path(label_path)] if label_path is not None else [])
    temps = [t.with_name(f".{t.name}.partial{t.suffix or '.tif'}") for t in targets]
    try:
        with rasterio.open(temps[0], "w", **image_profile) as img_ds:
            names = _BAND_NAMES[spec.bands]
            for k, name in enumerate(names, start=1):
                img_ds.set_band_description(k, name)
            if spec.bands == "rgbn":
                img_ds.colorinterp = [
                    ColorInterp.red,
                    ColorInterp.green,
                    ColorInterp.blue,
                    ColorInterp.undefined,
                ]
            img_ds.update_tags(SYNTHETIC_SEED=str(spec.seed), BANDS=spec.bands)
            lab_ds = rasterio.open(temps[1], "w", **label_profile) if label_path is not None else None
            try:
                if lab_ds is not None:
                    lab_ds.write_colormap(1, ISPRS.colormap())
                    lab_ds.set_band_description(1, "ISPRS class")
                    lab_ds.update_tags(CLASS_NAMES=";".join(f"{k}={n}" for k, n in enumerate(CLASS_NAMES)))
                for r in range(0, spec.height, step):
                    for c in range(0, spec.width, step):
                        hh, ww = min(step, spec.height - r), min(step, spec.width - c)
                        window = Window(c, r, ww, hh)
                        image, label = render_window(spec, r, c, hh, ww)
                        img_ds.write(image, window=window)
                        if lab_ds is not None:
                            lab_ds.write(label, 1, window=window)
                logger.debug("rendered %d x %d synthetic scene (seed %d)", spec.width, spec.height, spec.seed)
            finally:
                if lab_ds is not None:
                    lab_ds.close()
        for temp, target in zip(temps, targets, strict=True):
            os.replace(temp, target)
    finally:
        for temp in temps:
            for leftover in (temp, temp.with_name(temp.name + ".aux.xml")):
                if leftover.exists():
                    leftover.unlink()


def write_copies(src: str | os.PathLike[str], dst: str | os.PathLike[str], rows: int, cols: int) -> Path:
    """`rows` x `cols` copies of the GeoTIFF `src` side by side in `dst`, written block by block.

    A large scene for memory and speed measurements whose writing needs no
    more memory than one block of `src`.
    """
    import rasterio
    from rasterio.windows import Window

    with rasterio.open(src) as ds:
        profile = ds.profile | {
            "width": cols * ds.width,
            "height": rows * ds.height,
            "tiled": True,
            "compress": "deflate",
        }
        with rasterio.open(dst, "w", **profile) as out:
            for _, win in ds.block_windows(1):
                data = ds.read(window=win)
                for i in range(rows):
                    for j in range(cols):
                        w = Window(win.col_off + j * ds.width, win.row_off + i * ds.height, win.width, win.height)
                        out.write(data, window=w)
    return Path(dst)
