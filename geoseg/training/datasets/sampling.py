"""Windows cut from labelled samples, read lazily: random augmented ones for training, a grid for validation.

:class:`WindowSampler` draws the training windows of an epoch, each decided by
the seed, the epoch and its index alone; :func:`grid_windows` covers an image
with non-overlapping windows. Neither reads a whole tile at once.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from rasterio.windows import Window

from ...classes import ISPRS, NODATA, ClassTable
from ...errors import ConfigError, DatasetError
from .samples import Sample, _image_bands, _raster_shape, read_image, read_labels

__all__ = ["WindowSampler", "grid_windows"]

_MAX_DRAWS = 32  # windows drawn per sample before WindowSampler settles for the best one


def _seed_words(*values: int) -> list[int]:
    return [int(v) & 0xFFFFFFFFFFFFFFFF for v in values]


def _check_positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _dihedral(image: np.ndarray, label: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The same random flip / quarter-turn of ``(C, H, W)`` image and ``(H, W)`` label."""
    hflip, vflip, k = rng.random() < 0.5, rng.random() < 0.5, int(rng.integers(0, 4))
    if hflip:
        image, label = image[:, :, ::-1], label[:, ::-1]
    if vflip:
        image, label = image[:, ::-1, :], label[::-1, :]
    image, label = np.rot90(image, k, axes=(1, 2)), np.rot90(label, k)
    return np.ascontiguousarray(image), np.ascontiguousarray(label)


class WindowSampler:
    """Random training windows read lazily: never a whole tile in memory.

    Parameters
    ----------
    samples : sequence of Sample
        The training samples; all must give the same number of image bands.
    size : int
        Side of the square windows in pixels.
    per_epoch : int
        Windows per epoch (the sampler's length).
    seed : int, optional
        With the epoch number, determines every window.
    augment : bool, optional
        Random horizontal and vertical flips and a quarter-turn rotation
        (k in 0..3), the same for image and label.
    classes : ClassTable, optional
        The class table labels are decoded with.
    min_valid : float, optional
        A window with less than this fraction of labelled (non-ignore) pixels
        is drawn again, up to 32 draws; then the best draw is used.

    Raises
    ------
    geoseg.errors.ConfigError
        If an option is out of range.
    DatasetError
        If an image and its label differ in size, a sample's bands do not
        exist in its image, or samples give different numbers of bands.

    Notes
    -----
    Window ``i`` of epoch ``e`` depends on ``(seed, e, i)`` only, so
    :meth:`get` can serve workers in any order. A sample is chosen with
    probability proportional to its pixel count and the window position is
    uniform over the image. Each window costs one read of the label and one of
    the image, both ``size`` x ``size`` at most (images smaller than `size`
    are padded: image with 0, label with 255); the valid fraction is taken
    over the pixels read, so small images are not redrawn for their padding.
    The sampler holds only paths and pickles cheaply.

    Examples
    --------
    >>> sampler = WindowSampler(samples, size=512, per_epoch=1000)  # doctest: +SKIP
    >>> for image, label in sampler.epoch(0):  # doctest: +SKIP
    ...     pass  # image (C, 512, 512) float32, label (512, 512) int64
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        *,
        size: int,
        per_epoch: int,
        seed: int = 0,
        augment: bool = True,
        classes: ClassTable = ISPRS,
        min_valid: float = 0.05,
    ) -> None:
        self.samples = tuple(samples)
        if not self.samples:
            raise ConfigError("WindowSampler needs at least one sample; check the dataset path and split")
        self.size = _check_positive_int("size", size)
        self.per_epoch = _check_positive_int("per_epoch", per_epoch)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise ConfigError(f"seed must be an integer, got {seed!r}")
        self.seed = int(seed)
        if not 0.0 <= float(min_valid) <= 1.0:
            raise ConfigError(f"min_valid must be a fraction in 0..1, got {min_valid!r}")
        self.min_valid = float(min_valid)
        self.augment = bool(augment)
        self.classes = classes
        shapes, channels = _check_samples(self.samples)
        self.channels = channels
        self._shapes = tuple(shapes)
        pixels = np.array([h * w for h, w in shapes], dtype=np.float64)
        self._p = pixels / pixels.sum()

    def __len__(self) -> int:
        return self.per_epoch

    def __repr__(self) -> str:
        return (
            f"WindowSampler({len(self.samples)} samples, size={self.size}, per_epoch={self.per_epoch}, "
            f"seed={self.seed}, augment={self.augment}, min_valid={self.min_valid})"
        )

    def epoch(self, epoch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield the `per_epoch` windows of an epoch, in order.

        Yields
        ------
        image : numpy.ndarray
            ``(C, size, size)`` float32 in the file's pixel units.
        label : numpy.ndarray
            ``(size, size)`` int64 class ids, 255 = ignore.
        """
        for i in range(self.per_epoch):
            yield self.get(i, epoch)

    def get(self, i: int, epoch: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """The `i`-th window of an epoch (the same as the `i`-th yielded by :meth:`epoch`)."""
        if not 0 <= i < self.per_epoch:
            raise IndexError(f"window index {i} is outside 0..{self.per_epoch - 1}")
        pos_seq, aug_seq = np.random.SeedSequence(_seed_words(self.seed, epoch, i)).spawn(2)
        rng = np.random.default_rng(pos_seq)
        best: tuple[float, int, Window, np.ndarray] | None = None
        for _ in range(_MAX_DRAWS):
            k = int(rng.choice(len(self.samples), p=self._p))
            h, w = self._shapes[k]
            row = int(rng.integers(0, max(h - self.size, 0) + 1))
            col = int(rng.integers(0, max(w - self.size, 0) + 1))
            window = Window(col, row, min(self.size, w), min(self.size, h))
            label = read_labels(self.samples[k], window, classes=self.classes)
            valid = float(np.count_nonzero(label != NODATA)) / label.size
            if best is None or valid > best[0]:
                best = (valid, k, window, label)
            if valid >= self.min_valid:
                break
        assert best is not None
        _, k, window, label = best
        image = read_image(self.samples[k], window)
        out_img = np.zeros((image.shape[0], self.size, self.size), dtype=np.float32)
        out_lab = np.full((self.size, self.size), NODATA, dtype=np.int64)
        out_img[:, : image.shape[1], : image.shape[2]] = image
        out_lab[: label.shape[0], : label.shape[1]] = label
        if self.augment:
            out_img, out_lab = _dihedral(out_img, out_lab, np.random.default_rng(aug_seq))
        return out_img, out_lab


def _check_samples(samples: Sequence[Sample]) -> tuple[list[tuple[int, int]], int]:
    """Image sizes, checked against the labels, and the common number of bands."""
    shapes: list[tuple[int, int]] = []
    channels: dict[int, str] = {}
    for s in samples:
        h, w, count = _raster_shape(s.image)
        lh, lw, _ = _raster_shape(s.label)
        if (h, w) != (lh, lw):
            raise DatasetError(
                f"sample {s.name!r}: image {s.image.name} is {w} x {h} pixels but label {s.label.name} is "
                f"{lw} x {lh}; each label must cover its image pixel for pixel"
            )
        shapes.append((h, w))
        channels.setdefault(len(_image_bands(s, count)), s.name)
    if len(channels) > 1:
        described = ", ".join(f"{n} ({name!r})" for n, name in channels.items())
        raise DatasetError(
            f"samples give different numbers of image bands: {described}; select the same bands for every "
            "sample (Sample.bands)"
        )
    return shapes, next(iter(channels))


def grid_windows(sample: Sample, *, size: int) -> list[Window]:
    """Non-overlapping windows covering the sample's image, row by row, for validation.

    Windows are `size` x `size`; those on the right and bottom edges are
    smaller where the image is not a multiple of `size`.

    Examples
    --------
    >>> [(w.width, w.height) for w in grid_windows(sample, size=512)]  # doctest: +SKIP
    [(512, 512), (488, 512), (512, 88), (488, 88)]
    """
    size = _check_positive_int("size", size)
    h, w, _ = _raster_shape(sample.image)
    return _grid(h, w, size)


def _grid(h: int, w: int, size: int) -> list[Window]:
    return [Window(c, r, min(size, w - c), min(size, h - r)) for r in range(0, h, size) for c in range(0, w, size)]
