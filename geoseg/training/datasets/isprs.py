"""ISPRS Potsdam and Vaihingen: the official 2D semantic labelling tiles, found by their names wherever they unpack.

:func:`potsdam` and :func:`vaihingen` return the samples of an official
train/test split that are present under a folder; :func:`potsdam_bands_for`
says which Potsdam imagery holds a model's bands.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, get_args

import numpy as np
from rasterio.windows import Window

from ...classes import ISPRS
from ...errors import ConfigError, DatasetNotFoundError
from .samples import PathLike, Sample, _meaning, _open

__all__ = [
    "POTSDAM_TEST",
    "POTSDAM_TRAIN",
    "VAIHINGEN_TEST",
    "VAIHINGEN_TRAIN",
    "PotsdamBands",
    "Split",
    "potsdam",
    "potsdam_bands_for",
    "vaihingen",
]

log = logging.getLogger(__name__)

Split = Literal["train", "test", "all"]
PotsdamBands = Literal["rgb", "rgbir", "irrg"]

# Official ISPRS 2D semantic labelling splits, as in mmsegmentation's
# tools/dataset_converters/{potsdam,vaihingen}.py and torchgeo's Potsdam2D /
# Vaihingen2D (train = the tiles whose labels were released to participants).
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
_MAX_DEPTH = 6  # folder levels searched under an ISPRS root for the official file names


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
