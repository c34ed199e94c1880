"""Rendering a window of a synthetic scene: :func:`render_window`.

A window is rendered in blocks of at most 512 pixels a side, each with a
one-pixel halo: the objects of the cells that reach the block are painted,
casters mark the shadowed pixels, colour, shading, texture and illumination
are composed, a light optical blur consumes the halo, sensor noise hashed
from global pixel indices is added, and the result is scaled to the spec's
bands and dtype, with the nodata collar cut last.
"""

from __future__ import annotations

import numpy as np

from ..classes import NODATA
from ..errors import ConfigError
from .noise import _MASK64, _fmix, _hash2d, _key32, _noise1d, _Rng, _value_noise
from .palette import _ILLUM_SCALE, _SHADOW, _TEXTURE_COLUMNS
from .shapes import _Canvas
from .spec import _BAND_ORDER, _DTYPE_SCALE, SceneSpec
from .town import _gather
from .world import _world

__all__ = ["render_window"]

_CHUNK = 512  # render_window works on chunks of at most this many pixels a side (cache-friendly)


def _valid_mask(spec: SceneSpec, r0: int, c0: int, h: int, w: int) -> np.ndarray:
    """Pixels inside the scene's irregular valid footprint (global geometry).

    Collar widths are in pixels, measured to pixel centres, so a collar
    narrower than half a pixel (tiny scenes) leaves every pixel valid.
    """
    rng = _Rng(spec.seed, 0xC011A4)
    rows = np.arange(r0, r0 + h, dtype=np.float64) + 0.5
    cols = np.arange(c0, c0 + w, dtype=np.float64) + 0.5
    big_h, big_w = float(spec.height), float(spec.width)

    def collar(t: np.ndarray, length: float, across: float, k: int) -> np.ndarray:
        base, amp = rng.u(0.004, 0.035), rng.u(0.005, 0.04)
        return across * (base + amp * _noise1d(t, length / rng.u(3, 8), _key32(spec.seed, 0xC0, k)))

    top = collar(cols, big_w, big_h, 0)
    bottom = collar(cols, big_w, big_h, 1)
    left = collar(rows, big_h, big_w, 2)
    right = collar(rows, big_h, big_w, 3)
    valid = (rows[:, None] >= top[None, :]) & ((big_h - rows)[:, None] >= bottom[None, :])
    valid &= (cols[None, :] >= left[:, None]) & ((big_w - cols)[None, :] >= right[:, None])
    if rng.chance(0.7):  # a cut corner, as in orthophotos of a rotated footprint
        cut = rng.u(0.05, 0.2) * min(big_h, big_w)
        corner = rng.integer(0, 3)
        rr = rows if corner < 2 else big_h - rows
        cc = cols if corner % 2 == 0 else big_w - cols
        valid &= (rr[:, None] + cc[None, :]) >= cut
    return valid


def _pixel_noise(seed: int, r0: int, c0: int, h: int, w: int, nch: int) -> np.ndarray:
    """Sensor noise hashed from global pixel indices: shared luminance + per band."""
    key = _key32(seed, 0x9015E)
    rows = np.arange(r0, r0 + h, dtype=np.int64)
    cols = np.arange(c0, c0 + w, dtype=np.int64)
    h1 = _hash2d(rows, cols, key)
    lum = ((h1 & 0xFFFF).astype(np.float32) + (h1 >> 16).astype(np.float32)) * np.float32(1 / 65536.0) - 1
    lum *= np.float32(0.028)
    h2 = _fmix(h1 ^ np.uint32(0x5BD1E995))
    out = np.empty((nch, h, w), dtype=np.float32)
    for k in range(nch):
        bits = ((h2 >> (8 * k)) & 0xFF).astype(np.float32)
        out[k] = lum + (bits * np.float32(1 / 256.0) - np.float32(0.5)) * np.float32(0.03)
    return out


def _compose(cv: _Canvas, shadow: np.ndarray) -> np.ndarray:
    """Colour x shading x texture x illumination, shadows, in float32."""
    fine, medium, coarse, leaf, leaf2 = cv.noise
    half = np.float32(0.5)
    # Two leaf lattices at incommensurate spacings hide the grid of value noise.
    leaf = leaf * np.float32(0.6) + leaf2 * np.float32(0.4) - half
    light = np.float32(1) + _TEXTURE_COLUMNS[3][cv.mat] * leaf
    for amp, field in zip(_TEXTURE_COLUMNS[:3], (fine, medium, coarse), strict=True):
        light += amp[cv.mat] * (field - half)
    illum = _value_noise(cv.ys, cv.xs, _ILLUM_SCALE, _key32(cv.world.seed, 0x111))
    light *= cv.shade
    light *= np.float32(0.92) + np.float32(0.16) * illum
    out = cv.col * light[None]
    for k in range(cv.nch):
        np.multiply(out[k], _SHADOW[k], out=out[k], where=shadow)
    return out


def _blur(img: np.ndarray) -> np.ndarray:
    """Light optical blur (0.2, 0.6, 0.2) that consumes the one-pixel halo."""
    a, b = np.float32(0.2), np.float32(0.6)
    rows = img[:, :-2] * a + img[:, 1:-1] * b + img[:, 2:] * a
    return rows[:, :, :-2] * a + rows[:, :, 1:-1] * b + rows[:, :, 2:] * a


def _render_block(spec: SceneSpec, r0: int, c0: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    world = _world(spec.seed & _MASK64)
    cv = _Canvas(spec, world, r0 - 1, c0 - 1, h + 2, w + 2)
    objs = _gather(world, cv.bounds)
    for obj in objs:
        obj.paint(cv)
    shadow = np.zeros((cv.h, cv.w), dtype=bool)
    for obj in objs:
        if obj.casts:
            obj.cast(cv, shadow)
    img = _blur(_compose(cv, shadow))
    img += _pixel_noise(world.seed, r0, c0, h, w, cv.nch)
    label = cv.label[1:-1, 1:-1].copy()
    info = np.iinfo(spec.dtype)
    scaled = img[list(_BAND_ORDER[spec.bands])] * np.float32(_DTYPE_SCALE[spec.dtype]) + np.float32(0.5)
    out = np.clip(scaled, 0, info.max).astype(spec.dtype)
    if spec.nodata is not None:
        valid = _valid_mask(spec, r0, c0, h, w)
        nodata = spec.nodata
        # A valid pixel must not look like nodata in every band.
        clash = valid & np.all(out == nodata, axis=0)
        out[0][clash] = nodata + 1 if nodata < info.max else nodata - 1
        out[:, ~valid] = nodata
        label[~valid] = NODATA
    return out, label


def render_window(
    spec: SceneSpec, row_off: int, col_off: int, height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Render one window of a synthetic scene.

    Parameters
    ----------
    spec : SceneSpec
        The scene.
    row_off, col_off : int
        Upper-left pixel of the window in scene coordinates.
    height, width : int
        Window size in pixels; the window must lie inside the scene.

    Returns
    -------
    image : numpy.ndarray
        ``(spec.count, height, width)`` array of ``spec.dtype``, bands in the
        order given by ``spec.bands``.
    label : numpy.ndarray
        ``(height, width)`` uint8 ISPRS class ids (:data:`CLASS_NAMES`), 255
        where the image is nodata.

    Raises
    ------
    geoseg.errors.ConfigError
        If the window is empty or reaches outside the scene (a ``ValueError``).

    Notes
    -----
    The result does not depend on how a scene is cut into windows: any
    window equals the same region cut from any larger window, byte for byte.
    Large windows are rendered in chunks of at most 512 x 512 pixels, so
    the working memory is about 30 MB (4-band: 35 MB) on top of the returned
    arrays, whatever the window size.

    Examples
    --------
    >>> spec = SceneSpec(width=256, height=256, seed=1)
    >>> image, label = render_window(spec, 0, 0, 64, 64)
    >>> image.shape, image.dtype.name, label.shape
    ((3, 64, 64), 'uint8', (64, 64))
    >>> bool((render_window(spec, 16, 16, 8, 8)[0] == image[:, 16:24, 16:24]).all())
    True
    """
    for name, value in (
        ("row_off", row_off),
        ("col_off", col_off),
        ("height", height),
        ("width", width),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ConfigError(f"{name} must be an integer, got {value!r}")
    if height < 1 or width < 1:
        raise ConfigError(f"window must be at least 1 x 1 pixels, got height={height}, width={width}")
    if row_off < 0 or col_off < 0 or row_off + height > spec.height or col_off + width > spec.width:
        raise ConfigError(
            f"window rows {row_off}..{row_off + height}, cols {col_off}..{col_off + width} reach "
            f"outside the {spec.height} x {spec.width} scene; clip the window to the scene"
        )
    row_off, col_off, height, width = int(row_off), int(col_off), int(height), int(width)
    if height <= _CHUNK and width <= _CHUNK:
        return _render_block(spec, row_off, col_off, height, width)
    image = np.empty((spec.count, height, width), dtype=spec.dtype)
    label = np.empty((height, width), dtype=np.uint8)
    for r in range(0, height, _CHUNK):
        for c in range(0, width, _CHUNK):
            hh, ww = min(_CHUNK, height - r), min(_CHUNK, width - c)
            image[:, r : r + hh, c : c + ww], label[r : r + hh, c : c + ww] = _render_block(
                spec, row_off + r, col_off + c, hh, ww
            )
    return image, label
