"""Installed models: a per-user folder of geoseg checkpoints that ``geoseg run`` finds by name.

The folder is ``$GEOSEG_HOME/models`` when ``GEOSEG_HOME`` is set, else the
platform's user data folder (``~/.local/share/geoseg/models`` on Linux). It
holds one ``<name>.pt`` file per model and an ``index.json``::

    {"format": 1, "default": "unet-rgb",
     "models": {"unet-rgb": {"file": "unet-rgb.pt", "sha256": "...", "installed": "2024-...",
                             "source": "https://...", "arch": "unet", "encoder": "resnet34",
                             "bands": ["red", "green", "blue"], "classes": ["impervious surfaces", ...]}}}

The index is rewritten atomically (temporary file, then rename) while holding
an advisory lock on ``index.lock``, so concurrent installs never corrupt it.
Checkpoints are validated before they are registered, URLs are downloaded once
and checked against a SHA-256 when one is given.

This package does not import torch; functions that validate a checkpoint load
:mod:`geoseg.predict.checkpoint` when called.

The package has three parts:

* :mod:`~geoseg.models.registry` -- the models folder, its index and lock,
  :class:`InstalledModel`, and listing, installing, removing and choosing the
  default model;
* :mod:`~geoseg.models.download` -- URLs, downloads with progress and
  checksums, and the errors a network gives;
* :mod:`~geoseg.models.resolve` -- :func:`resolve_model`: a path, an installed
  name, a URL, ``$GEOSEG_MODEL`` or the default model.

Its errors live in :mod:`geoseg.errors` (:class:`~geoseg.errors.ModelNotFoundError`,
:class:`~geoseg.errors.ModelExistsError`, :class:`~geoseg.errors.ChecksumError`)
and are exported here as well.
"""

from __future__ import annotations

from ..errors import ChecksumError, ModelExistsError, ModelNotFoundError
from .download import ProgressCallback
from .registry import HOME_ENV, InstalledModel, get, install, list_models, models_dir, remove, set_default
from .resolve import MODEL_ENV, resolve_model

__all__ = [
    "HOME_ENV",
    "MODEL_ENV",
    "ChecksumError",
    "InstalledModel",
    "ModelExistsError",
    "ModelNotFoundError",
    "ProgressCallback",
    "get",
    "install",
    "list_models",
    "models_dir",
    "remove",
    "resolve_model",
    "set_default",
]
