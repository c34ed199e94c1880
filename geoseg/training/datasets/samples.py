"""Labelled samples and how their pixels are read: one image, its reference labels, the meaning of its bands.

A :class:`Sample` names an image, its reference labels and how to read them
(ISPRS colour-coded RGB, or class indices with an offset and an ignore value).
:func:`read_image` and :func:`read_labels` read them one window at a time;
:func:`match_bands` finds the bands a model expects in a sample's image by
their meaning.

Label values are class ids ``0..n-1`` of a :class:`~geoseg.classes.ClassTable`
and :data:`~geoseg.classes.NODATA` (255) for pixels to ignore: the black
boundaries of eroded ISPRS references, unknown colours, nodata.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.windows import Window

from ...classes import ISPRS, NODATA, ClassTable
from ...errors import ConfigError, DatasetError, DatasetNotFoundError, GeosegIOError

__all__ = ["BAND_MEANINGS", "LabelKind", "PathLike", "Sample", "match_bands", "read_image", "read_labels"]

LabelKind = Literal["rgb", "index"]
PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class Sample:
    """One labelled image.

    Attributes
    ----------
    image : Path
        The image raster (GeoTIFF, PNG...).
    label : Path
        The reference labels, same size as the image.
    label_kind : {'rgb', 'index'}
        ISPRS colour-coded RGB labels (a paletted single band also works), or
        class indices in band 1.
    name : str
        Short identifier, e.g. ``"top_potsdam_2_10"``.
    eroded : Path or None
        The eroded ("noBoundary") reference, same kind as `label`, if available.
    bands : tuple of int or None
        1-based bands of `image` to use, in this order; None for all.
    index_offset : int
        Index labels: class id = value - offset (mmsegmentation files use 1,
        with 0 = ignore).
    ignore_value : int or None
        Index labels: the raw value (before the offset) that means "ignore".
    band_names : tuple of str or None
        What each band of the image *file* holds, in file order (``red``,
        ``green``, ``blue``, ``nir``), where the dataset's format says so
        (ISPRS tiles, synthetic scenes); None where it is unknown.
    """

    image: Path
    label: Path
    label_kind: LabelKind
    name: str
    eroded: Path | None = None
    bands: tuple[int, ...] | None = None
    index_offset: int = 0
    ignore_value: int | None = None
    band_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        # Accept str paths and lists of bands; store Paths and a tuple (hashable, picklable).
        object.__setattr__(self, "image", Path(self.image))
        object.__setattr__(self, "label", Path(self.label))
        if self.eroded is not None:
            object.__setattr__(self, "eroded", Path(self.eroded))
        if self.label_kind not in get_args(LabelKind):
            raise ConfigError(f"Sample.label_kind must be 'rgb' or 'index', got {self.label_kind!r}")
        if self.bands is not None:
            bands = tuple(self.bands)
            if not bands or not all(isinstance(b, (int, np.integer)) and b >= 1 for b in bands):
                raise ConfigError(f"Sample.bands must be 1-based band numbers or None, got {self.bands!r}")
            object.__setattr__(self, "bands", tuple(int(b) for b in bands))
        if self.band_names is not None:
            object.__setattr__(self, "band_names", tuple(_meaning(n) for n in self.band_names))

    @property
    def selected_band_names(self) -> tuple[str, ...] | None:
        """What the selected `bands` hold, in the order they are read; None where unknown."""
        if self.band_names is None:
            return None
        if self.bands is None:
            return self.band_names
        if max(self.bands) > len(self.band_names):
            return None
        return tuple(self.band_names[b - 1] for b in self.bands)


# Spellings of band meanings found in band descriptions and model specs, mapped to geoseg's names.
_BAND_ALIASES = {"r": "red", "g": "green", "b": "blue", "ir": "nir", "infrared": "nir", "near infrared": "nir"}
#: Band meanings geoseg matches between a model and a dataset (other names are only labels).
BAND_MEANINGS = frozenset({"red", "green", "blue", "nir"})


def _meaning(name: str) -> str:
    key = str(name).strip().lower()
    return _BAND_ALIASES.get(key, key)


def match_bands(sample: Sample, wanted: Sequence[str]) -> tuple[int, ...] | None:
    """The 1-based bands of the sample's image file that hold `wanted`, matched by meaning.

    Parameters
    ----------
    sample : Sample
        The sample; its `band_names` say what the file holds.
    wanted : sequence of str
        The bands a model expects, in its order (``nir``, ``red``, ``green``).

    Returns
    -------
    tuple of int or None
        The file bands to read, in the model's order; None where either side's
        meaning is unknown (the sample has no `band_names`, or a wanted name is
        not one of :data:`BAND_MEANINGS`, such as ``band1``): then only the
        number of bands can be checked.

    Raises
    ------
    DatasetError
        If the meanings are known and the file lacks a wanted band.

    Examples
    --------
    >>> rgbir = Sample("t.tif", "l.tif", "rgb", "t", band_names=("red", "green", "blue", "nir"))
    >>> match_bands(rgbir, ("nir", "red", "green"))
    (4, 1, 2)
    """
    want = tuple(_meaning(n) for n in wanted)
    if sample.band_names is None or not want or not set(want) <= BAND_MEANINGS:
        return None
    missing = [n for n in want if n not in sample.band_names]
    if missing:
        raise DatasetError(
            f"the model expects bands {','.join(want)} but {sample.image.name} ({sample.name}) holds "
            f"{','.join(sample.band_names)}, without {','.join(missing)}; use imagery that has them (Potsdam: "
            "potsdam:ROOT:rgbir reads 4_Ortho_RGBIR) or pass --bands to choose the file's bands yourself"
        )
    return tuple(sample.band_names.index(n) + 1 for n in want)


@contextmanager
def _open(path: Path) -> Iterator[Any]:
    """Open a raster for reading; PNGs without georeferencing are fine here."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            ds = rasterio.open(path)
    except RasterioIOError as exc:
        if not Path(path).exists():
            raise DatasetNotFoundError(f"{path} does not exist; check the dataset folder") from exc
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise GeosegIOError(f"{path} is not a readable raster ({reason}); pass a GeoTIFF or PNG") from exc
    with ds:
        yield ds


def _raster_shape(path: Path) -> tuple[int, int, int]:
    """``(height, width, count)`` of a raster, from its header."""
    with _open(path) as ds:
        return ds.height, ds.width, ds.count


def _image_bands(sample: Sample, count: int) -> list[int]:
    if sample.bands is None:
        return list(range(1, count + 1))
    bad = [b for b in sample.bands if b > count]
    if bad:
        raise DatasetError(
            f"sample {sample.name!r} selects band(s) {list(sample.bands)} but {sample.image.name} has bands "
            f"1..{count}; pass bands within that range (or None for all)"
        )
    return list(sample.bands)


def read_image(sample: Sample, window: Window | None = None) -> np.ndarray:
    """Read the sample's image bands in a window.

    Parameters
    ----------
    sample : Sample
        The sample; its `bands` choose and order the bands.
    window : rasterio.windows.Window, optional
        The pixels to read, inside the image; None reads the whole image.

    Returns
    -------
    numpy.ndarray
        ``(bands, height, width)`` in the file's dtype.

    Raises
    ------
    DatasetError
        If `sample.bands` names a band the file does not have.
    """
    with _open(sample.image) as ds:
        return ds.read(_image_bands(sample, ds.count), window=window)


def read_labels(
    sample: Sample, window: Window | None = None, *, classes: ClassTable = ISPRS, eroded: bool = False
) -> np.ndarray:
    """Read the sample's reference labels in a window as class ids.

    Parameters
    ----------
    sample : Sample
        The sample.
    window : rasterio.windows.Window, optional
        The pixels to read, inside the label file; None reads all of it.
    classes : ClassTable, optional
        The class table; RGB labels are decoded with its colours.
    eroded : bool, optional
        Read the eroded ("noBoundary") reference instead of the full one.

    Returns
    -------
    numpy.ndarray
        ``(height, width)`` uint8 class ids ``0..n-1``, 255 for ignore. RGB
        labels: unknown colours (the black boundaries of eroded references)
        become 255. Index labels: ``value - index_offset``, `ignore_value`
        becomes 255.

    Raises
    ------
    DatasetError
        If an index label holds a value that is neither the ignore value nor a
        class id after the offset (the message names the values and the
        file), if an RGB label has neither 3 bands nor a colour table, or if
        ``eroded=True`` and the sample has no eroded reference.
    """
    path = sample.label
    if eroded:
        if sample.eroded is None:
            raise DatasetError(
                f"sample {sample.name!r} has no eroded (noBoundary) reference; read its full reference "
                "with eroded=False"
            )
        path = sample.eroded
    with _open(path) as ds:
        if sample.label_kind == "rgb":
            rgb = ds.read([1, 2, 3], window=window) if ds.count >= 3 else _palette_rgb(ds, path, window)
            return classes.decode_rgb(np.moveaxis(rgb, 0, -1))
        raw = ds.read(1, window=window)
    return _index_ids(raw, sample, classes, path)


def _palette_rgb(ds: Any, path: Path, window: Window | None) -> np.ndarray:
    """A paletted single-band label as ``(3, h, w)`` RGB."""
    try:
        cmap = ds.colormap(1)
    except ValueError:
        cmap = None
    if not cmap:
        raise DatasetError(
            f"{path.name} has {ds.count} band(s) and no colour table, so it is not an RGB colour label; "
            "use label_kind='index' for class-index labels"
        )
    lut = np.zeros((256, 3), dtype=np.uint8)
    for value, rgba in cmap.items():
        if 0 <= value < 256:
            lut[value] = rgba[:3]
    values = ds.read(1, window=window)
    return np.moveaxis(lut[values.astype(np.intp)], -1, 0)


def _index_ids(raw: np.ndarray, sample: Sample, classes: ClassTable, path: Path) -> np.ndarray:
    n = len(classes)
    ids = raw.astype(np.int64) - sample.index_offset
    ignore = raw == sample.ignore_value if sample.ignore_value is not None else np.zeros(raw.shape, dtype=bool)
    bad = ~ignore & ((ids < 0) | (ids >= n))
    if bad.any():
        values = np.unique(raw[bad])
        shown = ", ".join(str(v) for v in values[:10].tolist()) + (", ..." if values.size > 10 else "")
        raise DatasetError(
            f"{path} holds label value(s) {shown} that are neither the ignore value ({sample.ignore_value}) nor a "
            f"class id 0..{n - 1} after index_offset={sample.index_offset}; set index_offset and ignore_value to "
            "match the file (mmsegmentation ISPRS files: index_offset=1, ignore_value=0) or pass label_kind='rgb' "
            "for colour labels"
        )
    return np.where(ignore, NODATA, ids).astype(np.uint8)
