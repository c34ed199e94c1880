"""Statistics of a training set read from random windows: per-band mean and deviation, pixels per class.

:func:`band_stats` gives the model's normalisation and :func:`class_pixels`
the class balance; both read random 256 x 256 windows up to a pixel budget,
or every pixel where the data hold fewer.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
from rasterio.windows import Window

from ...classes import ISPRS, ClassTable
from ...errors import ConfigError, DatasetError
from ...raster import valid_mask
from .samples import Sample, _image_bands, _open, _raster_shape, read_labels
from .sampling import _check_positive_int, _check_samples, _grid, _seed_words

__all__ = ["band_stats", "class_pixels"]

_STATS_WINDOW = 256  # side of the random windows read by band_stats / class_pixels
_COUNT_BLOCK = 1024  # side of the blocks class_pixels reads when it counts exactly


def _random_windows(
    shapes: Sequence[tuple[int, int]], max_pixels: int, rng: np.random.Generator
) -> list[tuple[int, Window]]:
    """Random windows (sample index, window) of about `max_pixels` pixels in all, or a full grid if that is fewer."""
    pixels = np.array([h * w for h, w in shapes], dtype=np.float64)
    if pixels.sum() <= max_pixels:
        return [(k, win) for k, (h, w) in enumerate(shapes) for win in _grid(h, w, _COUNT_BLOCK)]
    p = pixels / pixels.sum()
    out, left = [], max_pixels
    while left > 0:
        k = int(rng.choice(len(shapes), p=p))
        h, w = shapes[k]
        ww = min(_STATS_WINDOW, w)
        hh = max(1, min(_STATS_WINDOW, h, math.ceil(left / ww)))
        row = int(rng.integers(0, h - hh + 1))
        col = int(rng.integers(0, w - ww + 1))
        out.append((k, Window(col, row, ww, hh)))
        left -= ww * hh
    out.sort(key=lambda kw: kw[0])  # one file open per sample
    return out


def band_stats(
    samples: Sequence[Sample], *, max_pixels: int = 2_000_000, seed: int = 0
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-band mean and standard deviation of the images, for the model's normalisation.

    Parameters
    ----------
    samples : sequence of Sample
        The samples; all must give the same number of bands.
    max_pixels : int, optional
        Pixels read in all: random 256 x 256 windows are drawn (sample chosen
        in proportion to its size) until this many are read; if the images
        have fewer pixels, all of them are read (exact statistics).
    seed : int, optional
        Seed of the window draw.

    Returns
    -------
    mean, std : tuple of float
        One value per selected band, in pixel units; the standard deviation
        is the population one. Pixels outside the dataset mask (nodata,
        alpha, internal mask) are ignored.

    Raises
    ------
    DatasetError
        If the windows read hold no valid pixel, or samples give different
        numbers of bands.
    """
    samples = tuple(samples)
    if not samples:
        raise ConfigError("band_stats needs at least one sample")
    max_pixels = _check_positive_int("max_pixels", max_pixels)
    shapes, channels = _check_samples(samples)
    windows = _random_windows(shapes, max_pixels, np.random.default_rng(_seed_words(seed)))
    n = 0
    mean = np.zeros(channels, dtype=np.float64)
    m2 = np.zeros(channels, dtype=np.float64)
    for k, group in itertools.groupby(windows, key=lambda kw: kw[0]):
        with _open(samples[k].image) as ds:
            bands = _image_bands(samples[k], ds.count)
            for _, win in group:
                data = ds.read(bands, window=win)
                valid = valid_mask(ds, str(samples[k].image), win) > 0  # an alpha band holding data is no mask
                values = data[:, valid].astype(np.float64)
                m = values.shape[1]
                if m == 0:
                    continue
                # Chan et al.'s pairwise update: stable for large offsets, unlike a sum of squares.
                wmean = values.mean(axis=1)
                wm2 = ((values - wmean[:, None]) ** 2).sum(axis=1)
                delta = wmean - mean
                total = n + m
                mean += delta * (m / total)
                m2 += wm2 + delta**2 * (n * m / total)
                n = total
    if n == 0:
        raise DatasetError(
            f"no valid pixel in the {len(windows)} window(s) read from {len(samples)} image(s); the images are "
            "all nodata, or raise max_pixels"
        )
    std = np.sqrt(m2 / n)
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def class_pixels(
    samples: Sequence[Sample], *, classes: ClassTable = ISPRS, max_pixels: int | None = None, seed: int = 0
) -> np.ndarray:
    """Pixels per class in the samples' reference labels, for class-balanced loss weights.

    Parameters
    ----------
    samples : sequence of Sample
        The samples.
    classes : ClassTable, optional
        The class table.
    max_pixels : int, optional
        If given and the labels hold more pixels, count random 256 x 256
        windows of about this many pixels in all and scale the counts up to
        the labels' size; None counts every pixel, block by block.
    seed : int, optional
        Seed of the window draw.

    Returns
    -------
    numpy.ndarray
        int64 counts, one per class; ignored pixels are not counted.
    """
    samples = tuple(samples)
    n = len(classes)
    counts = np.zeros(n, dtype=np.int64)
    if not samples:
        return counts
    shapes = [_raster_shape(s.label)[:2] for s in samples]
    total = sum(h * w for h, w in shapes)
    budget = total if max_pixels is None else _check_positive_int("max_pixels", max_pixels)
    windows = _random_windows(shapes, budget, np.random.default_rng(_seed_words(seed)))
    read = 0
    for k, win in windows:
        labels = read_labels(samples[k], win, classes=classes)
        counts += np.bincount(labels[labels < n].ravel(), minlength=n)[:n]
        read += labels.size
    if read < total:
        counts = np.rint(counts * (total / read)).astype(np.int64)
    return counts
