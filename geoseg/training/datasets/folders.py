"""Image/label pairs from two lists or two folders of rasters, matched by file name, and their label coding checked.

:func:`pairs` pairs any images with their reference labels (GeoTIFF, PNG...):
in order for lists, by file stem for folders, where a label's stem is the
image's with a role suffix (``_label``, ``_gt``, ``_noBoundary``...). When it
guesses that single-band labels hold class indices, it refuses files that
look like mmsegmentation's ISPRS coding (0 = ignore, 1..6), which would shift
every class by one.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
from rasterio.windows import Window

from ...classes import ISPRS, NODATA
from ...errors import ConfigError, DatasetError, DatasetNotFoundError
from .samples import LabelKind, PathLike, Sample, _open, _raster_shape

__all__ = ["pairs"]

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
