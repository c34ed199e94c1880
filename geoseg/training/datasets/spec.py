"""Datasets named by a short string, as the command line takes them, and synthetic scenes rendered as a dataset.

:func:`parse_dataset` reads ``potsdam:ROOT[:SPLIT][:BANDS]``,
``vaihingen:ROOT[:SPLIT]`` or ``synthetic:FOLDER:N[:SIZE]`` into a
:class:`DatasetSpec`, whose :meth:`~DatasetSpec.load` finds the samples;
:func:`synthetic` renders scenes of :mod:`geoseg.synthetic` with exact labels.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
from rasterio.crs import CRS
from rasterio.errors import RasterioIOError

from ...classes import NODATA
from ...errors import ConfigError, GeosegError
from .isprs import _POTSDAM_IMAGES, PotsdamBands, Split, potsdam, vaihingen
from .samples import PathLike, Sample, _open

__all__ = ["DatasetSpec", "dataset_from_spec", "parse_dataset", "synthetic"]

log = logging.getLogger(__name__)


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
    from ...synthetic import SceneSpec, write_scene
    from ...synthetic.spec import _BAND_NAMES

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
