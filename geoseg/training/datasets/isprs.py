"""ISPRS Potsdam and Vaihingen: the official 2D semantic labelling tiles, found by their names wherever they unpack.

:func:`potsdam` and :func:`vaihingen` return the samples of an official
train/test split that are present under a folder; :func:`potsdam_bands_for`
says which Potsdam imagery holds a model's bands.

Both datasets are read by one finder from a small table each (:class:`_Layout`):
archive folders, the official names of tiles, references and eroded
references, the imagery per band choice, the official splits, and the
messages that say what is missing.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

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

_POTSDAM_BAND_NAMES: dict[str, tuple[str, ...]] = {
    "RGB": ("red", "green", "blue"),
    "RGBIR": ("red", "green", "blue", "nir"),
    "IRRG": ("nir", "red", "green"),
}


@dataclass(frozen=True)
class _Imagery:
    """One kind of imagery of a dataset: the archive folder it unpacks into, a tile's file, the bands to read."""

    folder: str  # the archive's folder: preferred where a file name occurs twice
    file: str  # file name of tile ``{t}``
    bands: tuple[int, ...] | None  # 1-based bands to read, in this order; None for all
    band_names: tuple[str, ...]  # what the file's bands hold, in file order


@dataclass(frozen=True)
class _Layout:
    """One ISPRS dataset as its archives unpack: official tiles, file names, folders, and what to say when missing.

    File names hold ``{t}``, a tile id as :attr:`spellings` writes it. The
    messages are :meth:`str.format` templates of the fields that
    :func:`_find` passes (``name``, ``split``, ``root``, ``count``,
    ``image``, ``label``, ``image_dir``, ``image_path``, ``label_dir``,
    ``first_label_dir``, ``labels``, ``hint``).
    """

    name: str  # "Potsdam"
    train: tuple[Any, ...]  # official training tiles
    test: tuple[Any, ...]  # official test tiles
    spellings: Callable[[Any], tuple[str, ...]]  # a tile id as file names write it; the first names the sample
    sample: str  # the sample's name
    imagery: dict[str, tuple[_Imagery, ...]]  # per band choice; the first found wins
    label: str  # the colour-coded reference
    eroded: str  # the eroded ("noBoundary") reference
    label_folders: tuple[str, ...]  # reference archive folders, preferred first
    eroded_folders: tuple[str, ...]  # eroded reference archive folders, preferred first
    test_prefers_last: bool  # test tiles prefer the folders in reverse order
    package: str | None  # the image archive's folder, beside which the reference archives unpack
    holds: str  # what a root holds, for the message when it is no folder
    no_labels: str  # message: images found but no reference
    no_tiles: str  # message: no image found

    def tiles(self, split: Split) -> tuple[Any, ...]:
        return {"train": self.train, "test": self.test, "all": self.train + self.test}[split]

    def prefer(self, folders: tuple[str, ...], tile: Any) -> tuple[str, ...]:
        """`folders` in the order a tile prefers them."""
        return folders[::-1] if self.test_prefers_last and tile in self.test else folders


def _potsdam_tokens(tile: str) -> tuple[str, ...]:
    a, b = tile.split("_")
    return (f"{int(a)}_{int(b)}", f"{int(a):02d}_{int(b):02d}")


def _as_written(tile: Any) -> tuple[str, ...]:
    return (str(tile),)


_RGB, _RGBIR, _IRRG = (_POTSDAM_BAND_NAMES[k] for k in ("RGB", "RGBIR", "IRRG"))
# Potsdam imagery per band choice: the first found wins.
_POTSDAM_IMAGES: dict[str, tuple[_Imagery, ...]] = {
    "rgb": (
        _Imagery("2_Ortho_RGB", "top_potsdam_{t}_RGB.tif", None, _RGB),
        _Imagery("4_Ortho_RGBIR", "top_potsdam_{t}_RGBIR.tif", (1, 2, 3), _RGBIR),
    ),
    "rgbir": (_Imagery("4_Ortho_RGBIR", "top_potsdam_{t}_RGBIR.tif", None, _RGBIR),),
    "irrg": (
        _Imagery("4_Ortho_RGBIR", "top_potsdam_{t}_RGBIR.tif", (4, 1, 2), _RGBIR),
        _Imagery("3_Ortho_IRRG", "top_potsdam_{t}_IRRG.tif", None, _IRRG),
    ),
}
_POTSDAM = _Layout(
    name="Potsdam",
    train=POTSDAM_TRAIN,
    test=POTSDAM_TEST,
    spellings=_potsdam_tokens,
    sample="top_potsdam_{t}",
    imagery=_POTSDAM_IMAGES,
    label="top_potsdam_{t}_label.tif",
    eroded="top_potsdam_{t}_label_noBoundary.tif",
    # 5_Labels_all (2018 release) covers all 38 tiles; 5_Labels_for_participants the 24 training tiles.
    label_folders=("5_Labels_all", "5_Labels_for_participants"),
    eroded_folders=(
        "5_Labels_all_noBoundary",
        "5_Labels_for_participants_no_Boundary",
        "5_Labels_for_participants_noBoundary",
    ),
    test_prefers_last=False,
    package=None,
    holds="the unpacked ISPRS archives",
    no_labels=(
        "found {count} {name} {split} image(s) under {root} but no reference labels: expected {label} anywhere "
        "under it (e.g. {first_label_dir}); the test-tile labels ship in {labels[0]}.zip ({labels[1]}.zip holds "
        "the 24 training tiles only){hint}"
    ),
    no_tiles=(
        "no {name} {split} tiles found under {root}: expected {image} and {label} anywhere under it (e.g. in "
        "{image_dir} and {label_dir}); pass the folder that holds the unpacked archives{hint}"
    ),
)
_VAIHINGEN = _Layout(
    name="Vaihingen",
    train=VAIHINGEN_TRAIN,
    test=VAIHINGEN_TEST,
    spellings=_as_written,
    sample="top_mosaic_09cm_area{t}",
    imagery={"irrg": (_Imagery("top", "top_mosaic_09cm_area{t}.tif", None, ("nir", "red", "green")),)},
    label="top_mosaic_09cm_area{t}.tif",  # the image's name: told apart by folder, else by pixels
    eroded="top_mosaic_09cm_area{t}_noBoundary.tif",
    label_folders=("gts_for_participants", "ISPRS_semantic_labeling_Vaihingen_ground_truth_COMPLETE"),
    eroded_folders=("gts_eroded_for_participants", "ISPRS_semantic_labeling_Vaihingen_ground_truth_eroded_COMPLETE"),
    test_prefers_last=True,  # test areas take the references of the COMPLETE release
    package="ISPRS_semantic_labeling_Vaihingen",
    holds="top/",
    no_labels=(
        "found {count} {name} {split} image(s) under {root} but no reference labels: expected a colour-coded "
        "{label} besides the image anywhere under it (e.g. {first_label_dir}); the test references ship in "
        "{labels[1]}.zip, the training ones in {labels[0]}{hint}"
    ),
    no_tiles=(
        "no {name} {split} areas found under {root}: expected {image} (image and colour-coded reference) anywhere "
        "under it (e.g. {image_path} and {label_dir}); pass the folder that holds the unpacked archives{hint}"
    ),
)
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


def _find(layout: _Layout, root: PathLike, split: Split, bands: str) -> list[Sample]:
    """The samples of `layout` whose image (of imagery `bands`) and reference lie under `root`, found by name."""
    _check_split(split)
    if bands not in layout.imagery:
        raise ConfigError(f"bands must be one of {sorted(layout.imagery)}, got {bands!r}")
    p = _check_root(root, layout.name, layout.holds)
    if p.name == layout.package:  # the reference archives unpack beside the image archive's folder
        roots = [p, *(p.parent / d for d in (*layout.label_folders, *layout.eroded_folders))]
        found = _Found(roots, base=p.parent)
    else:
        found = _Found([p])
    tiles = layout.tiles(split)
    samples, images_found = [], 0
    for tile in tiles:
        spellings = layout.spellings(tile)
        hit = _find_image(found, layout, layout.imagery[bands], spellings)
        if hit is None:
            continue
        image, imagery, labels = hit
        images_found += 1
        label = _pick(labels, layout.prefer(layout.label_folders, tile))
        if label is None:
            continue
        eroded = found.pick([layout.eroded.format(t=t) for t in spellings], layout.prefer(layout.eroded_folders, tile))
        name = layout.sample.format(t=spellings[0])
        samples.append(
            Sample(image, label, "rgb", name, eroded=eroded, bands=imagery.bands, band_names=imagery.band_names)
        )
    if not samples:
        first, imagery = tiles[0], layout.imagery[bands][0]
        message = layout.no_labels if images_found else layout.no_tiles
        raise DatasetNotFoundError(
            message.format(
                name=layout.name,
                split=split,
                root=p,
                count=images_found,
                image=imagery.file.format(t=first),
                label=layout.label.format(t=first),
                image_dir=p / imagery.folder,
                image_path=p / imagery.folder / imagery.file.format(t=first),
                label_dir=p / layout.label_folders[0],
                first_label_dir=p / layout.prefer(layout.label_folders, first)[0],
                labels=layout.label_folders,
                hint=found.unzip_hint(),
            )
        )
    _log_found(layout.name, split, samples, len(tiles), p)
    return samples


def _find_image(
    found: _Found, layout: _Layout, choices: Sequence[_Imagery], spellings: Sequence[str]
) -> tuple[Path, _Imagery, list[tuple[Path, tuple[str, ...]]]] | None:
    """A tile's image, its imagery (the first of `choices` found) and the candidates for its reference."""
    for imagery in choices:
        hits = found.candidates([imagery.file.format(t=t) for t in spellings])
        if imagery.file == layout.label:
            # Images and references share their names: the image's folder, a reference folder, else the
            # pixels tell them apart; among the images, the shallowest wins.
            folder, label_folders = imagery.folder.lower(), {d.lower() for d in layout.label_folders}
            images, labels = [], []
            for path, rel in hits:
                if folder in rel:
                    images.append((path, rel))
                elif label_folders & set(rel) or _looks_like_colour_label(path):
                    labels.append((path, rel))
                else:
                    images.append((path, rel))
            image = _pick(images)
        else:
            image = _pick(hits, [imagery.folder])
            labels = found.candidates([layout.label.format(t=t) for t in spellings])
        if image is not None:
            return image, imagery, labels
    return None


def _log_found(dataset: str, split: str, samples: Sequence[Sample], expected: int, root: Path) -> None:
    eroded = sum(s.eroded is not None for s in samples)
    log.info(
        "%s %s: %d of %d tiles under %s, %d with an official eroded (noBoundary) reference",
        dataset, split, len(samples), expected, root, eroded,
    )  # fmt: skip


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
    return _find(_POTSDAM, root, split, bands)


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
    return _find(_VAIHINGEN, root, split, "irrg")


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
