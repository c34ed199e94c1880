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

The modules, each importable on its own:

* :mod:`~geoseg.training.datasets.samples` -- :class:`Sample`, reading
  images and labels, band meanings;
* :mod:`~geoseg.training.datasets.isprs` -- Potsdam and Vaihingen;
* :mod:`~geoseg.training.datasets.folders` -- image/label pairs;
* :mod:`~geoseg.training.datasets.spec` -- dataset strings and synthetic
  scenes;
* :mod:`~geoseg.training.datasets.sampling` -- training and validation
  windows;
* :mod:`~geoseg.training.datasets.stats` -- normalisation and class balance.

A dataset that is missing raises :class:`~geoseg.errors.DatasetNotFoundError`,
one that cannot be used as given :class:`~geoseg.errors.DatasetError`.
"""

from __future__ import annotations

from ...errors import DatasetError, DatasetNotFoundError
from .folders import pairs
from .isprs import (
    POTSDAM_TEST,
    POTSDAM_TRAIN,
    VAIHINGEN_TEST,
    VAIHINGEN_TRAIN,
    PotsdamBands,
    Split,
    potsdam,
    potsdam_bands_for,
    vaihingen,
)
from .samples import BAND_MEANINGS, LabelKind, PathLike, Sample, match_bands, read_image, read_labels
from .sampling import WindowSampler, grid_windows
from .spec import DatasetSpec, dataset_from_spec, parse_dataset, synthetic
from .stats import band_stats, class_pixels

__all__ = [
    "BAND_MEANINGS",
    "POTSDAM_TEST",
    "POTSDAM_TRAIN",
    "VAIHINGEN_TEST",
    "VAIHINGEN_TRAIN",
    "DatasetError",
    "DatasetNotFoundError",
    "DatasetSpec",
    "LabelKind",
    "PathLike",
    "PotsdamBands",
    "Sample",
    "Split",
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
