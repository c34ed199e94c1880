"""Labelled imagery for training and evaluation: ISPRS Potsdam and Vaihingen, image/label folders, synthetic scenes.

A :class:`Sample` names one image, its reference labels and how to read them
(ISPRS colour-coded RGB, or class indices with an offset and an ignore value).
The dataset functions only *find* files and return samples; pixels are read
later, one window at a time, by :func:`read_image` and :func:`read_labels`:

* :func:`potsdam`, :func:`vaihingen` -- the official ISPRS 2D semantic
  labelling layouts and train/test splits;
* :func:`pairs` -- any two lists or folders of images and labels (GeoTIFF,
  PNG...), matched by file stem;
* :func:`synthetic` -- scenes rendered by :mod:`geoseg.synthetic`, with exact
  labels;
* :func:`dataset_from_spec` -- one of the above from a short string
  (``"potsdam:ROOT:train"``), for the command line.

:class:`WindowSampler` draws random, augmented training windows and
:func:`grid_windows` cuts an image into validation windows; :func:`band_stats`
and :func:`class_pixels` estimate the normalisation and the class balance from
random windows. Nothing here reads a whole tile at once, and nothing imports
torch: the training loop (:mod:`geoseg.training.fit`) turns the numpy windows
into tensors.

Label values are class ids ``0..n-1`` of a :class:`~geoseg.classes.ClassTable`
and :data:`~geoseg.classes.NODATA` (255) for pixels to ignore: the black
boundaries of eroded ISPRS references, unknown colours, nodata.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import re
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.windows import Window

from .classes import ISPRS, NODATA, ClassTable
from .errors import ConfigError, GeosegError, GeosegIOError
from .raster import valid_mask

__all__ = [
    "BAND_MEANINGS",
    "POTSDAM_TEST",
    "POTSDAM_TRAIN",
    "VAIHINGEN_TEST",
    "VAIHINGEN_TRAIN",
    "DatasetError",
    "DatasetNotFoundError",
    "DatasetSpec",
    "Sample",
    "WindowSampler",
    "band_stats",
    "class_pixels",
    "dataset_from_spec",
    "grid_windows",
    "match_bands",
    "pairs",
    "parse_dataset",
    "potsdam",
    "potsdam_bands_for",
    "read_image",
    "read_labels",
    "synthetic",
    "vaihingen",
]

log = logging.getLogger(__name__)

LabelKind = Literal["rgb", "index"]
Split = Literal["train", "test", "all"]
PotsdamBands = Literal["rgb", "rgbir", "irrg"]
PathLike = str | os.PathLike[str]


class DatasetNotFoundError(GeosegIOError, FileNotFoundError):
    """A dataset folder or file is missing; the message names the path that was expected."""


class DatasetError(GeosegError, ValueError):
    """Dataset files exist but cannot be used as given (label values, sizes, bands, unmatched files)."""


# ---------------------------------------------------------------------------
# Official ISPRS 2D semantic labelling splits, as in mmsegmentation's
# tools/dataset_converters/{potsdam,vaihingen}.py and torchgeo's Potsdam2D /
# Vaihingen2D (train = the tiles whose labels were released to participants).
# ---------------------------------------------------------------------------
#: Potsdam training tiles (24), ``row_col`` as in ``top_potsdam_2_10_RGB.tif``.
POTSDAM_TRAIN: tuple[str, ...] = (
    "2_10", "2_11", "2_12", "3_10", "3_11", "3_12", "4_10", "4_11", "4_12", "5_10", "5_11", "5_12",
    "6_10", "6_11", "6_12", "6_7", "6_8", "6_9", "7_10", "7_11", "7_12", "7_7", "7_8", "7_9",
)  # fmt: skip
#: Potsdam test tiles (14).
POTSDAM_TEST: tuple[str, ...] = (
    "2_13", "2_14", "3_13", "3_14", "4_13", "4_14", "4_15", "5_13", "5_14", "5_15", "6_13", "6_14", "6_15", "7_13",
)  # fmt: skip
#: Vaihingen training areas (16), as in ``top_mosaic_09cm_area1.tif``.
VAIHINGEN_TRAIN: tuple[int, ...] = (1, 3, 5, 7, 11, 13, 15, 17, 21, 23, 26, 28, 30, 32, 34, 37)
#: Vaihingen test areas (17).
VAIHINGEN_TEST: tuple[int, ...] = (2, 4, 6, 8, 10, 12, 14, 16, 20, 22, 24, 27, 29, 31, 33, 35, 38)

# Potsdam image folders per band choice: (folder, file suffix, bands to read), first found wins.
_POTSDAM_IMAGES: dict[str, tuple[tuple[str, str, tuple[int, ...] | None], ...]] = {
    "rgb": (("2_Ortho_RGB", "RGB", None), ("4_Ortho_RGBIR", "RGBIR", (1, 2, 3))),
    "rgbir": (("4_Ortho_RGBIR", "RGBIR", None),),
    "irrg": (("4_Ortho_RGBIR", "RGBIR", (4, 1, 2)), ("3_Ortho_IRRG", "IRRG", None)),
}
# 5_Labels_all (2018 release) covers all 38 tiles; 5_Labels_for_participants the 24 training tiles.
_POTSDAM_LABELS = ("5_Labels_all", "5_Labels_for_participants")
_POTSDAM_ERODED = (
    "5_Labels_all_noBoundary",
    "5_Labels_for_participants_no_Boundary",
    "5_Labels_for_participants_noBoundary",
)
_POTSDAM_BAND_NAMES: dict[str, tuple[str, ...]] = {
    "RGB": ("red", "green", "blue"),
    "RGBIR": ("red", "green", "blue", "nir"),
    "IRRG": ("nir", "red", "green"),
}
_VAIHINGEN_IMAGES = "top"
_VAIHINGEN_BAND_NAMES = ("nir", "red", "green")
_VAIHINGEN_PACKAGE = "ISPRS_semantic_labeling_Vaihingen"
_VAIHINGEN_LABELS = ("gts_for_participants", "ISPRS_semantic_labeling_Vaihingen_ground_truth_COMPLETE")
_VAIHINGEN_ERODED = ("gts_eroded_for_participants", "ISPRS_semantic_labeling_Vaihingen_ground_truth_eroded_COMPLETE")

_RASTER_SUFFIXES = frozenset({".tif", ".tiff", ".png", ".jpg", ".jpeg", ".jp2", ".bmp", ".gif", ".img"})
# Trailing name tokens that say what a file is rather than which scene it shows.
_ROLE_TOKENS = frozenset(
    {
        "img", "image", "images", "im", "rgb", "irrg", "rgbir", "rgbn", "ortho", "sat",
        "label", "labels", "lbl", "gt", "gts", "ann", "anno", "annot", "annotation", "annotations",
        "mask", "masks", "seg", "segmentation", "target", "noboundary", "eroded", "ref", "reference",
    }
)  # fmt: skip
_SEPARATORS = "_-. "
_MAX_DEPTH = 6  # folder levels searched under an ISPRS root for the official file names
_MAX_DRAWS = 32  # windows drawn per sample before WindowSampler settles for the best one
_STATS_WINDOW = 256  # side of the random windows read by band_stats / class_pixels
_COUNT_BLOCK = 1024  # side of the blocks class_pixels reads when it counts exactly


# ---------------------------------------------------------------------------
# Samples and reading
# ---------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------
# ISPRS Potsdam and Vaihingen
# ---------------------------------------------------------------------------
class _Found:
    """Every file under a dataset root, by lower-case file name: ISPRS files are found by their official names.

    The archives unpack in several ways (into a folder named after the
    archive, into that folder twice, or flat into whatever folder the user
    chose), so folders are only a preference when a name occurs twice.
    """

    def __init__(self, roots: Sequence[Path], *, base: Path | None = None) -> None:
        self.files: dict[str, list[tuple[Path, tuple[str, ...]]]] = {}
        self.archives: list[Path] = []
        seen: set[str] = set()
        for root in roots:
            if not root.is_dir():
                continue
            for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
                here = Path(dirpath)
                real = os.path.realpath(here)
                rel = tuple(part.lower() for part in here.relative_to(base or root).parts)
                if real in seen:  # a symlinked folder seen already (or a link loop)
                    dirnames[:] = []
                    continue
                seen.add(real)
                deep = len(here.relative_to(root).parts) >= _MAX_DEPTH
                dirnames[:] = [] if deep else sorted(d for d in dirnames if not d.startswith("."))
                for name in sorted(filenames):
                    if name.startswith("."):
                        continue
                    if name.lower().endswith(".zip"):
                        self.archives.append(here / name)
                    else:
                        self.files.setdefault(name.lower(), []).append((here / name, rel))

    def candidates(self, names: Sequence[str]) -> list[tuple[Path, tuple[str, ...]]]:
        return [hit for name in names for hit in self.files.get(name.lower(), [])]

    def pick(self, names: Sequence[str], prefer: Sequence[str] = ()) -> Path | None:
        """The file with one of `names`; in a folder named as in `prefer` (earlier wins), else the shallowest."""
        return _pick(self.candidates(names), prefer)

    def unzip_hint(self) -> str:
        """Tell the user to unpack the ISPRS archives found under the root, if any."""
        if not self.archives:
            return ""
        return (
            f"; found {len(self.archives)} .zip archive(s) such as {self.archives[0]}: unzip them (anywhere under "
            "the root, flat or in folders) and pass the root again"
        )


def _pick(hits: Sequence[tuple[Path, tuple[str, ...]]], prefer: Sequence[str] = ()) -> Path | None:
    if not hits:
        return None
    order = [p.lower() for p in prefer]

    def rank(hit: tuple[Path, tuple[str, ...]]) -> tuple[int, int, str]:
        path, rel = hit
        named = min((order.index(part) for part in rel if part in order), default=len(order))
        return named, len(rel), str(path)

    return min(hits, key=rank)[0]


def _looks_like_colour_label(path: Path) -> bool:
    """Whether a raster holds only ISPRS label colours (and eroded black) in a central window.

    Vaihingen images and references share their file names
    (``top_mosaic_09cm_area1.tif``), so where folder names do not tell them
    apart the pixels do: an orthophoto never holds only the six colours.
    """
    with _open(path) as ds:
        if ds.count < 3:
            return False
        w, h = min(ds.width, 256), min(ds.height, 256)
        rgb = ds.read([1, 2, 3], window=Window((ds.width - w) // 2, (ds.height - h) // 2, w, h)).astype(np.int64)
    packed = np.unique((rgb[0] << 16) | (rgb[1] << 8) | rgb[2])
    palette = {(r << 16) | (g << 8) | b for r, g, b in (c.color for c in ISPRS)} | {0}
    return bool(set(packed.tolist()) <= palette)


def _check_split(split: str) -> None:
    if split not in get_args(Split):
        raise ConfigError(f"split must be 'train', 'test' or 'all', got {split!r}")


def _check_root(root: PathLike, dataset: str, marker: str) -> Path:
    p = Path(root)
    if not p.is_dir():
        raise DatasetNotFoundError(f"{dataset} root {p} is not a folder; pass the folder that holds {marker}")
    return p


def _potsdam_tokens(tile: str) -> tuple[str, ...]:
    a, b = tile.split("_")
    return (f"{int(a)}_{int(b)}", f"{int(a):02d}_{int(b):02d}")


def potsdam(root: PathLike, *, split: Split = "train", bands: PotsdamBands = "rgb") -> list[Sample]:
    """The ISPRS Potsdam tiles of a split that are present under `root`.

    Parameters
    ----------
    root : path-like
        A folder under which the unpacked archives lie. Files are found by
        their official names (``top_potsdam_2_10_RGB.tif``,
        ``top_potsdam_2_10_label.tif``, ``top_potsdam_2_10_label_noBoundary.tif``)
        in any subfolder: archives unpacked into folders named after them
        (``2_Ortho_RGB/``, ``5_Labels_all/``, also nested twice) or flat (the
        files of ``5_Labels_all.zip`` sit at its root) are all found.
    split : {'train', 'test', 'all'}, optional
        The official split: 24 training tiles (:data:`POTSDAM_TRAIN`), 14 test
        tiles (:data:`POTSDAM_TEST`), or both.
    bands : {'rgb', 'rgbir', 'irrg'}, optional
        ``rgb`` reads ``top_potsdam_{tile}_RGB.tif`` (or bands 1-3 of the
        RGBIR file); ``rgbir`` all four bands (R, G, B, IR) of
        ``top_potsdam_{tile}_RGBIR.tif``; ``irrg`` its bands 4, 1, 2 (or
        ``top_potsdam_{tile}_IRRG.tif``).

    Returns
    -------
    list of Sample
        One per tile whose image and RGB colour label both exist, in the
        official order, named ``top_potsdam_{row}_{col}``, with the bands'
        meaning in `band_names`. Where a name occurs twice, files in folders
        named after the archives win (labels: ``5_Labels_all`` before
        ``5_Labels_for_participants``), then the shallower one. The eroded
        reference is set where a ``..._label_noBoundary.tif`` exists. Tile
        ids are accepted as ``2_10`` and ``02_10`` in file names.

    Raises
    ------
    DatasetNotFoundError
        If no tile of the split is complete; the message names the file
        expected for the first tile (and the .zip archives to unpack, if any).
    """
    _check_split(split)
    if bands not in _POTSDAM_IMAGES:
        raise ConfigError(f"bands must be one of {sorted(_POTSDAM_IMAGES)}, got {bands!r}")
    p = _check_root(root, "Potsdam", "the unpacked ISPRS archives")
    found = _Found([p])
    tiles = {"train": POTSDAM_TRAIN, "test": POTSDAM_TEST, "all": POTSDAM_TRAIN + POTSDAM_TEST}[split]
    samples, images_found = [], 0
    for tile in tiles:
        tokens = _potsdam_tokens(tile)
        image, sel, names = None, None, None
        for folder, suffix, sel_bands in _POTSDAM_IMAGES[bands]:
            image = found.pick([f"top_potsdam_{t}_{suffix}.tif" for t in tokens], [folder])
            if image is not None:
                sel, names = sel_bands, _POTSDAM_BAND_NAMES[suffix]
                break
        if image is None:
            continue
        images_found += 1
        label = found.pick([f"top_potsdam_{t}_label.tif" for t in tokens], _POTSDAM_LABELS)
        if label is None:
            continue
        eroded = found.pick([f"top_potsdam_{t}_label_noBoundary.tif" for t in tokens], _POTSDAM_ERODED)
        name = f"top_potsdam_{tokens[0]}"
        samples.append(Sample(image, label, "rgb", name, eroded=eroded, bands=sel, band_names=names))
    if not samples:
        first = tiles[0]
        if images_found:
            raise DatasetNotFoundError(
                f"found {images_found} Potsdam {split} image(s) under {p} but no reference labels: expected "
                f"top_potsdam_{first}_label.tif anywhere under it (e.g. {p / _POTSDAM_LABELS[0]}); the test-tile "
                f"labels ship in {_POTSDAM_LABELS[0]}.zip ({_POTSDAM_LABELS[1]}.zip holds the 24 training tiles "
                f"only){found.unzip_hint()}"
            )
        folder, suffix, _ = _POTSDAM_IMAGES[bands][0]
        raise DatasetNotFoundError(
            f"no Potsdam {split} tiles found under {p}: expected top_potsdam_{first}_{suffix}.tif and "
            f"top_potsdam_{first}_label.tif anywhere under it (e.g. in {p / folder} and "
            f"{p / _POTSDAM_LABELS[0]}); pass the folder that holds the unpacked archives{found.unzip_hint()}"
        )
    _log_found("Potsdam", split, samples, len(tiles), p)
    return samples


def _log_found(dataset: str, split: str, samples: Sequence[Sample], expected: int, root: Path) -> None:
    eroded = sum(s.eroded is not None for s in samples)
    log.info(
        "%s %s: %d of %d tiles under %s, %d with an official eroded (noBoundary) reference",
        dataset, split, len(samples), expected, root, eroded,
    )  # fmt: skip


def vaihingen(root: PathLike, *, split: Split = "train") -> list[Sample]:
    """The ISPRS Vaihingen areas of a split that are present under `root`.

    Parameters
    ----------
    root : path-like
        A folder under which the unpacked archives lie. Files are found by
        their official names in any subfolder: the IRRG orthophotos
        ``top_mosaic_09cm_area{N}.tif`` (``ISPRS_semantic_labeling_Vaihingen/top/``),
        the references of the same name (``gts_for_participants/``, or
        ``..._ground_truth_COMPLETE.zip`` unpacked flat or into its folder)
        and the eroded ones ``top_mosaic_09cm_area{N}_noBoundary.tif``. An
        image and a reference with the same name are told apart by their
        folder (``top`` vs the reference folders) or else by their pixels (a
        reference holds only the six class colours). If `root` is the
        ``ISPRS_semantic_labeling_Vaihingen`` folder, the reference folders
        beside it are searched too.
    split : {'train', 'test', 'all'}, optional
        The official split: 16 training areas (:data:`VAIHINGEN_TRAIN`), 17
        test areas (:data:`VAIHINGEN_TEST`), or both.

    Returns
    -------
    list of Sample
        One per area whose image and RGB colour label both exist, in the
        official order, named ``top_mosaic_09cm_area{N}``; images are IRRG
        (near infrared, red, green). Where an area has references in both
        ``gts_for_participants`` and the ``..._COMPLETE`` release, training
        areas take the former and test areas the latter.

    Raises
    ------
    DatasetNotFoundError
        If no area of the split is complete; the message names the file
        expected for the first area.
    """
    _check_split(split)
    p = _check_root(root, "Vaihingen", f"{_VAIHINGEN_IMAGES}/")
    if p.name == _VAIHINGEN_PACKAGE:  # the reference archives unpack beside the image archive's folder
        roots = [p, *(p.parent / d for d in (*_VAIHINGEN_LABELS, *_VAIHINGEN_ERODED))]
        found = _Found(roots, base=p.parent)
    else:
        found = _Found([p])
    areas = {"train": VAIHINGEN_TRAIN, "test": VAIHINGEN_TEST, "all": VAIHINGEN_TRAIN + VAIHINGEN_TEST}[split]
    label_folders = {d.lower() for d in _VAIHINGEN_LABELS}
    samples, images_found = [], 0
    for area in areas:
        stem = f"top_mosaic_09cm_area{area}"
        images, labels = [], []
        for path, rel in found.candidates([f"{stem}.tif"]):
            if _VAIHINGEN_IMAGES in rel:
                images.append((path, rel))
            elif label_folders & set(rel) or _looks_like_colour_label(path):
                labels.append((path, rel))
            else:
                images.append((path, rel))
        image = _pick(images)
        if image is None:
            continue
        images_found += 1
        test = area in VAIHINGEN_TEST
        label = _pick(labels, _VAIHINGEN_LABELS[::-1] if test else _VAIHINGEN_LABELS)
        if label is None:
            continue
        eroded = found.pick([f"{stem}_noBoundary.tif"], _VAIHINGEN_ERODED[::-1] if test else _VAIHINGEN_ERODED)
        samples.append(Sample(image, label, "rgb", stem, eroded=eroded, band_names=_VAIHINGEN_BAND_NAMES))
    if not samples:
        stem = f"top_mosaic_09cm_area{areas[0]}"
        if images_found:
            expected = p / (_VAIHINGEN_LABELS[1] if areas[0] in VAIHINGEN_TEST else _VAIHINGEN_LABELS[0])
            raise DatasetNotFoundError(
                f"found {images_found} Vaihingen {split} image(s) under {p} but no reference labels: expected a "
                f"colour-coded {stem}.tif besides the image anywhere under it (e.g. {expected}); the test references "
                f"ship in {_VAIHINGEN_LABELS[1]}.zip, the training ones in {_VAIHINGEN_LABELS[0]}"
                f"{found.unzip_hint()}"
            )
        raise DatasetNotFoundError(
            f"no Vaihingen {split} areas found under {p}: expected {stem}.tif (image and colour-coded reference) "
            f"anywhere under it (e.g. {p / _VAIHINGEN_IMAGES / f'{stem}.tif'} and {p / _VAIHINGEN_LABELS[0]}); "
            f"pass the folder that holds the unpacked archives{found.unzip_hint()}"
        )
    _log_found("Vaihingen", split, samples, len(areas), p)
    return samples


# ---------------------------------------------------------------------------
# Image/label pairs from lists or folders
# ---------------------------------------------------------------------------
def _stem_key(stem: str) -> str:
    """The scene part of a file stem: trailing role tokens (``_label``, ``_RGB``, ``_noBoundary``...) removed."""
    key = stem
    while True:
        m = re.search(r"[_\-. ]([^_\-. ]+)$", key)
        if m is None or m.group(1).lower() not in _ROLE_TOKENS:
            return key
        key = key[: m.start()]


def _prefix_of(short: str, long: str) -> bool:
    """Whether `short` starts `long` and ends at a separator of it (``area1`` starts ``area1_x``, not ``area11``)."""
    return len(long) > len(short) and long.startswith(short) and long[len(short)] in _SEPARATORS


def _list_rasters(folder: Path, what: str) -> list[Path]:
    files = sorted(
        f
        for f in folder.iterdir()
        if f.is_file() and f.suffix.lower() in _RASTER_SUFFIXES and not f.name.startswith(".")
    )
    if not files:
        raise DatasetNotFoundError(
            f"no {what} rasters in {folder} (looked for {', '.join(sorted(_RASTER_SUFFIXES))}); pass the folder "
            f"that holds the {what}"
        )
    return files


def _shown(paths: Sequence[Path], limit: int = 5) -> str:
    names = [p.name for p in paths[:limit]]
    return ", ".join(names) + (f" and {len(paths) - limit} more" if len(paths) > limit else "")


def _match_folders(images: Sequence[Path], labels: Sequence[Path]) -> list[tuple[Path, Path, str]]:
    """Pair images and labels by stem: equal scene keys first, then the longest key that starts the other stem."""
    keys: dict[str, Path] = {}
    for img in images:
        key = _stem_key(img.stem)
        if key in keys:
            raise DatasetError(
                f"images {keys[key].name} and {img.name} have the same stem {key!r}, so labels cannot be matched "
                "to them; keep one image per scene in the folder or pass lists of files"
            )
        keys[key] = img
    taken: dict[Path, Path] = {}
    unmatched_labels: list[Path] = []
    for lab in labels:
        lkey = _stem_key(lab.stem)
        match = keys.get(lkey)
        if match is None:
            # The longest image key that starts the label's stem (x_img.png ~ x_label_v2.png), or the label's
            # key starting a single image's stem (x_scan3.tif ~ x_label.tif).
            cands = [(len(k), i) for k, i in keys.items() if _prefix_of(k, lab.stem)]
            cands += [(len(lkey), i) for i in keys.values() if _prefix_of(lkey, i.stem)]
            best = max((n for n, _ in cands), default=0)
            top = {i for n, i in cands if n == best}
            match = top.pop() if len(top) == 1 else None
        if match is None:
            unmatched_labels.append(lab)
            continue
        if match in taken:
            raise DatasetError(
                f"labels {taken[match].name} and {lab.name} both match image {match.name}; keep one reference per "
                "scene in the label folder (e.g. eroded ones elsewhere) or pass lists of files"
            )
        taken[match] = lab
    unmatched_images = [i for i in images if i not in taken]
    if unmatched_images or unmatched_labels:
        parts = []
        if unmatched_images:
            parts.append(f"{len(unmatched_images)} image(s) without a label: {_shown(unmatched_images)}")
        if unmatched_labels:
            parts.append(f"{len(unmatched_labels)} label(s) without an image: {_shown(unmatched_labels)}")
        raise DatasetError(
            f"cannot pair every image with a label by file stem ({'; '.join(parts)}); name each label after its "
            "image (optionally with a suffix such as _label, _gt, _ann or _noBoundary) or pass lists of files"
        )
    return [(img, taken[img], _stem_key(img.stem)) for img in images]


def _as_paths(value: Sequence[PathLike] | PathLike) -> Path | list[Path]:
    """One path, or a list of files; a list holding one folder is that folder (as command lines give it)."""
    if isinstance(value, (str, os.PathLike)):
        return Path(value)
    paths = [Path(v) for v in value]
    return paths[0] if len(paths) == 1 and paths[0].is_dir() else paths


def pairs(
    images: Sequence[PathLike] | PathLike,
    labels: Sequence[PathLike] | PathLike,
    *,
    label_kind: Literal["rgb", "index", "auto"] = "auto",
    index_offset: int = 0,
    ignore_value: int | None = NODATA,
) -> list[Sample]:
    """Samples from image and label files given as two lists or two folders.

    Parameters
    ----------
    images, labels : sequence of path-like, or path-like
        Two lists of files paired in order, or two folders (also as
        one-element lists) whose rasters
        (GeoTIFF, PNG, JPEG...) are paired by file stem: a label matches the
        image with the same stem once suffixes such as ``_label``, ``_gt``,
        ``_ann``, ``_mask`` or ``_noBoundary`` (and ``_img``, ``_RGB`` on the
        image side) are dropped, or else the image whose stem is the longest
        one that starts the label's (``x_img.png`` with
        ``x_label_v2.png``). Two single files make one pair.
    label_kind : {'auto', 'rgb', 'index'}, optional
        How labels are coded; ``auto`` reads each label's header: 3 or more
        bands are RGB colour labels, 1 band is class indices.
    index_offset : int, optional
        Index labels: class id = value - offset (1 for mmsegmentation ISPRS
        files, where 0 marks ignored boundaries).
    ignore_value : int or None, optional
        Index labels: the raw value that means "ignore" (before the offset).

    Returns
    -------
    list of Sample
        In the order of the images, named after their stems (without role
        suffixes).

    Raises
    ------
    DatasetNotFoundError
        If a file or folder is missing, or a folder holds no raster.
    DatasetError
        If files cannot all be paired (the message lists the unmatched
        ones), if an image and its label differ in size, or if a label's band
        count does not fit `label_kind`.
    """
    if label_kind not in ("rgb", "index", "auto"):
        raise ConfigError(f"label_kind must be 'rgb', 'index' or 'auto', got {label_kind!r}")
    imgs, labs = _as_paths(images), _as_paths(labels)
    if isinstance(imgs, Path) and isinstance(labs, Path):
        for p, what in ((imgs, "image"), (labs, "label")):
            if not p.exists():
                raise DatasetNotFoundError(f"{what} path {p} does not exist; pass an existing folder or file")
        if imgs.is_dir() and labs.is_dir():
            matched = _match_folders(_list_rasters(imgs, "image"), _list_rasters(labs, "label"))
        elif imgs.is_file() and labs.is_file():
            matched = [(imgs, labs, _stem_key(imgs.stem))]
        else:
            raise ConfigError(f"pass two folders or two files, got {imgs} and {labs}")
    elif isinstance(imgs, list) and isinstance(labs, list):
        if len(imgs) != len(labs):
            raise DatasetError(
                f"got {len(imgs)} image(s) but {len(labs)} label(s); pass lists of equal length, paired in order"
            )
        if not imgs:
            raise DatasetError("got empty lists of images and labels; pass at least one pair")
        matched = [(i, la, _stem_key(i.stem)) for i, la in zip(imgs, labs, strict=True)]
    else:
        raise ConfigError("pass images and labels both as folders or both as lists of files")

    samples = []
    for img, lab, name in matched:
        for p in (img, lab):
            if not p.is_file():
                raise DatasetNotFoundError(f"{p} does not exist; check the list of files")
        ih, iw, _ = _raster_shape(img)
        lh, lw, lcount = _raster_shape(lab)
        if (ih, iw) != (lh, lw):
            raise DatasetError(
                f"image {img.name} is {iw} x {ih} pixels but label {lab.name} is {lw} x {lh}; pair each image with "
                "the label of the same scene"
            )
        kind: LabelKind
        if label_kind == "auto":
            if lcount >= 3:
                kind = "rgb"
            elif lcount == 1:
                kind = "index"
            else:
                raise DatasetError(
                    f"label {lab.name} has {lcount} bands: neither RGB colours (3+) nor class indices (1); "
                    "pass label_kind='rgb' or 'index'"
                )
        else:
            kind = label_kind
        if kind == "index":
            samples.append(Sample(img, lab, "index", name, index_offset=index_offset, ignore_value=ignore_value))
        else:
            samples.append(Sample(img, lab, "rgb", name))
    if label_kind == "auto" and index_offset == 0:
        # Guessing the kind is the user's request; guessing the coding too is not, so a likely mix-up refuses.
        _refuse_shifted_index_labels([s for s in samples if s.label_kind == "index"], ignore_value)
    return samples


_CODING_FILES = 16  # label files read to check an 'auto' index coding (spread over the list)
_CODING_WINDOW = 1024  # side of the central window read from each
_THIN = 4  # px: eroded ISPRS boundaries are about 7 px wide, so their pixels lie within 4 px of their edge


def _refuse_shifted_index_labels(samples: Sequence[Sample], ignore_value: int | None, n: int = len(ISPRS)) -> None:
    """Refuse index labels that look like mmsegmentation's ISPRS coding (0 = ignore, 1..6) read as ids 0..5.

    Read that way, eroded boundaries become impervious surfaces and every
    class the next one (cars become clutter), silently. Signs, in up to
    `_CODING_FILES` label files: the value `n` (clutter in mmseg's coding,
    out of range as an id); value 0 only in thin bands that separate all
    other values, which never touch directly (mmseg's eroded boundaries; a
    real class has wide regions, and classes touch);
    value 0 absent while 3 or more other values occur (no impervious
    surface, the commonest ISPRS class: a shift by one). Labels holding the
    ignore value (255) use geoseg's coding and are accepted.
    """
    from scipy import ndimage

    if not samples:
        return
    picked = [samples[int(i)] for i in np.unique(np.linspace(0, len(samples) - 1, min(len(samples), _CODING_FILES)))]
    values: set[int] = set()
    zeros = thick = direct = across_zero = 0
    for sample in picked:
        with _open(sample.label) as ds:
            w, h = min(ds.width, _CODING_WINDOW), min(ds.height, _CODING_WINDOW)
            raw = ds.read(1, window=Window((ds.width - w) // 2, (ds.height - h) // 2, w, h))
        values |= set(np.unique(raw).tolist())
        zero = raw == 0
        if zero.any():
            zeros += int(zero.sum())
            thick += int((ndimage.distance_transform_edt(zero) > _THIN).sum())
        for a, b in ((raw[:, 1:], raw[:, :-1]), (raw[1:], raw[:-1])):
            change = a != b
            touches_zero = (a == 0) | (b == 0)
            direct += int((change & ~touches_zero).sum())
            across_zero += int((change & touches_zero).sum())
    if (ignore_value is not None and ignore_value in values) or not values <= set(range(n + 1)):
        return
    folder = picked[0].label.parent
    shown = ", ".join(str(v) for v in sorted(values))
    if n in values:
        why = f"value {n}, which is no class id 0..{n - 1}"
    elif zeros and thick < 0.2 * zeros and direct < 0.02 * (direct + across_zero):
        # mmseg's eroded boundaries: 0 is a thin band, and the other values (classes) never touch directly
        why = "value 0 only in thin bands that separate all the other values, like eroded boundaries"
    elif 0 not in values and len(values) >= 3:
        why = "no value 0 (impervious surfaces as an id) while the others occur"
    else:
        return
    raise DatasetError(
        f"index labels in {folder} hold values {shown}, with {why}: this looks like mmsegmentation's ISPRS coding "
        f"(0 = ignore, 1..{n} = impervious..clutter), which read as class ids would shift every class by one; pass "
        f"--label-kind index --index-offset 1 --ignore-value 0 for that coding, or --label-kind index if the values "
        f"are class ids 0..{n - 1}"
    )


# ---------------------------------------------------------------------------
# Synthetic scenes
# ---------------------------------------------------------------------------
def _scene_is_current(spec: Any, image: Path, label: Path) -> bool:
    """Whether `image` and `label` were rendered from `spec` (same size, grid, CRS, seed, bands, dtype, nodata)."""
    if not (image.is_file() and label.is_file()):
        return False
    try:
        with _open(image) as ds:
            tags = ds.tags()
            same = (
                (ds.width, ds.height, ds.count, ds.dtypes[0]) == (spec.width, spec.height, spec.count, spec.dtype)
                and ds.nodata == spec.nodata
                and tags.get("SYNTHETIC_SEED") == str(spec.seed)
                and tags.get("BANDS") == spec.bands
                and ds.crs == CRS.from_user_input(spec.crs)
                and ds.transform.almost_equals(spec.transform)
            )
        with _open(label) as ds:
            return same and (ds.width, ds.height, ds.count) == (spec.width, spec.height, 1)
    except (GeosegError, RasterioIOError):
        return False


def synthetic(
    folder: PathLike, *, n: int, size: int = 1024, pixel_size: float = 0.1, seed: int = 0, **spec_options: Any
) -> list[Sample]:
    """Render `n` synthetic scenes with exact labels into `folder` and return their samples.

    Parameters
    ----------
    folder : path-like
        Output folder, created if needed. Scene ``s`` is written as
        ``synthetic_{s}_image.tif`` and ``synthetic_{s}_label.tif``.
    n : int
        Number of scenes; their seeds are ``seed .. seed + n - 1``.
    size : int, optional
        Width and height of each scene in pixels.
    pixel_size : float, optional
        Ground sampling distance in metres.
    seed : int, optional
        Seed of the first scene.
    **spec_options
        Further :class:`geoseg.synthetic.SceneSpec` fields: ``bands``
        (``rgb``, ``rgbn``, ``irrg``), ``dtype``, ``nodata``, ``crs``,
        ``origin``.

    Returns
    -------
    list of Sample
        Index labels (class ids, 255 = nodata collar) named ``synthetic_{s}``.

    Notes
    -----
    Files that already hold the same scene (size, grid, CRS, seed, bands,
    dtype and nodata are compared) are kept, not rendered again. Rendering
    works in blocks, so memory stays bounded whatever `size`.
    """
    from .synthetic import _BAND_NAMES, SceneSpec, write_scene

    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ConfigError(f"n must be a positive number of scenes, got {n!r}")
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    samples = []
    for s in range(int(seed), int(seed) + int(n)):
        spec = SceneSpec(width=size, height=size, pixel_size=pixel_size, seed=s, **spec_options)
        name = f"synthetic_{s}"
        image, label = out / f"{name}_image.tif", out / f"{name}_label.tif"
        if _scene_is_current(spec, image, label):
            log.debug("kept %s: same scene already rendered", image)
        else:
            write_scene(spec, image, label)
        samples.append(Sample(image, label, "index", name, ignore_value=NODATA, band_names=_BAND_NAMES[spec.bands]))
    return samples


# ---------------------------------------------------------------------------
# Dataset strings (command line)
# ---------------------------------------------------------------------------
_SPEC_USAGE = (
    "'potsdam:ROOT[:SPLIT][:BANDS]', 'vaihingen:ROOT[:SPLIT]' or 'synthetic:FOLDER:N[:SIZE]' "
    "(SPLIT: train, test or all; BANDS: rgb, rgbir or irrg; N scenes of SIZE x SIZE pixels, default 1024)"
)


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset named by a short string (:func:`parse_dataset`), before any file is looked at.

    Attributes
    ----------
    kind : {'potsdam', 'vaihingen', 'synthetic'}
        The dataset.
    root : str
        Its folder, as given (it may contain colons: ``C:/data/Potsdam``).
    split : {'train', 'test', 'all'} or None
        The split the string names; None if it names none (callers choose:
        ``train`` trains, ``evaluate`` scores the test split).
    bands : {'rgb', 'rgbir', 'irrg'} or None
        Potsdam imagery the string names; None if it names none.
    n, size : int or None
        Synthetic scenes: how many, and their side in pixels (None: 1024).
    """

    kind: Literal["potsdam", "vaihingen", "synthetic"]
    root: str
    split: Split | None = None
    bands: PotsdamBands | None = None
    n: int | None = None
    size: int | None = None

    def load(self, *, split: Split | None = None, bands: PotsdamBands | None = None) -> list[Sample]:
        """The samples: `split` and `bands` apply where the string named none (default ``train``, ``rgb``)."""
        if self.kind == "synthetic":
            assert self.n is not None
            return synthetic(self.root, n=self.n, **({"size": self.size} if self.size else {}))
        chosen: Split = self.split or split or "train"
        if self.kind == "potsdam":
            return potsdam(self.root, split=chosen, bands=self.bands or bands or "rgb")
        return vaihingen(self.root, split=chosen)


def parse_dataset(spec: str) -> DatasetSpec:
    """Parse a dataset string of the command line; the one parser of ``train`` and ``evaluate``.

    Parameters
    ----------
    spec : str
        ``potsdam:ROOT[:SPLIT][:BANDS]``, ``vaihingen:ROOT[:SPLIT]`` or
        ``synthetic:FOLDER:N[:SIZE]``. Suffixes are taken from the right, so
        ROOT may itself contain colons (``potsdam:C:/data/Potsdam:test``).

    Raises
    ------
    geoseg.errors.ConfigError
        If the string has none of these forms (a ``ValueError``; the message
        shows the usage).

    Examples
    --------
    >>> parse_dataset("potsdam:C:/data/Potsdam:test:irrg")
    DatasetSpec(kind='potsdam', root='C:/data/Potsdam', split='test', bands='irrg', n=None, size=None)
    >>> parse_dataset("vaihingen:/data/Vaihingen").split is None
    True
    """
    kind, sep, rest = str(spec).partition(":")
    kind = kind.strip().lower()
    if kind in ("potsdam", "vaihingen") and sep and rest:
        parts = rest.split(":")
        bands: str | None = None
        split: str | None = None
        if kind == "potsdam" and len(parts) > 1 and parts[-1].lower() in _POTSDAM_IMAGES:
            bands = parts.pop().lower()
        if len(parts) > 1 and parts[-1].lower() in get_args(Split):
            split = parts.pop().lower()
        if kind == "potsdam" and bands is None and len(parts) > 1 and parts[-1].lower() in _POTSDAM_IMAGES:
            bands = parts.pop().lower()  # potsdam:ROOT:irrg:test
        root = ":".join(parts)
        if root:
            return DatasetSpec(kind, root, split, bands)  # type: ignore[arg-type]
    elif kind == "synthetic" and sep:
        parts = rest.split(":")
        numbers: list[int] = []
        while len(parts) > 1 and len(numbers) < 2 and re.fullmatch(r"\d+", parts[-1].strip()):
            numbers.insert(0, int(parts.pop()))
        folder = ":".join(parts)
        if folder and numbers and numbers[0] >= 1:
            return DatasetSpec("synthetic", folder, n=numbers[0], size=numbers[1] if len(numbers) == 2 else None)
    raise ConfigError(f"unknown dataset {spec!r}; pass {_SPEC_USAGE}")


def dataset_from_spec(spec: str) -> list[Sample]:
    """Samples named by a short string, as the command line takes them.

    Parameters
    ----------
    spec : str
        ``potsdam:ROOT[:SPLIT][:BANDS]``, ``vaihingen:ROOT[:SPLIT]`` or
        ``synthetic:FOLDER:N[:SIZE]`` (see :func:`parse_dataset`). SPLIT
        defaults to ``train``, BANDS to ``rgb``.

    Returns
    -------
    list of Sample

    Raises
    ------
    geoseg.errors.ConfigError
        If the string has none of these forms (a ``ValueError``; the message
        shows the usage).
    DatasetNotFoundError
        If the dataset is not where the string says.

    Examples
    --------
    >>> dataset_from_spec("mnist:/data")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    geoseg.errors.ConfigError: unknown dataset 'mnist:/data'; pass 'potsdam:ROOT[:SPLIT][:BANDS]', ...
    """
    return parse_dataset(spec).load()


def potsdam_bands_for(names: Sequence[str]) -> PotsdamBands | None:
    """The Potsdam imagery that holds the bands `names` (a model's), by meaning; None if none does.

    Examples
    --------
    >>> potsdam_bands_for(("nir", "red", "green")), potsdam_bands_for(("red", "green", "blue"))
    ('irrg', 'rgb')
    """
    want = {_meaning(n) for n in names}
    for suffix, choice in (("RGB", "rgb"), ("IRRG", "irrg"), ("RGBIR", "rgbir")):
        if want <= set(_POTSDAM_BAND_NAMES[suffix]):
            return choice  # type: ignore[return-value]
    return None


# ---------------------------------------------------------------------------
# Windows: training, validation, statistics
# ---------------------------------------------------------------------------
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
