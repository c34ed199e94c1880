"""Which checkpoint ``geoseg run`` uses: :func:`resolve_model`.

A model is given as a checkpoint path, an installed model's name or an
``http(s)://`` URL (installed on first use and reused afterwards); without
one, ``$GEOSEG_MODEL`` is resolved the same way, else the default installed
model is used. When nothing matches, the one-line error says what is
installed and how to get a model.
"""

from __future__ import annotations

import os
import urllib.parse
from pathlib import Path

from ..errors import GeosegIOError, ModelExistsError, ModelNotFoundError
from .download import ProgressCallback, _split_url, _url_filename
from .registry import (
    InstalledModel,
    _find_by_source,
    _installed_names,
    _model,
    _name_from,
    _read_index,
    install,
    models_dir,
)

__all__ = ["MODEL_ENV", "resolve_model"]

#: Environment variable naming the model ``geoseg run`` uses without ``--model`` (path, name or URL).
MODEL_ENV = "GEOSEG_MODEL"


def _looks_like_path(text: str) -> bool:
    return "/" in text or os.sep in text or text.lower().endswith((".pt", ".pth", ".ckpt", ".safetensors", ".onnx"))


def _resolve(text: str, progress: ProgressCallback | None) -> Path:
    folder = models_dir()
    path = Path(text).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        raise ModelNotFoundError(f"{path} is a folder; pass a geoseg checkpoint file, an installed model name or a URL")
    index = _read_index(folder)
    if text in index["models"]:
        return _existing_file(_model(folder, index, text))
    if urllib.parse.urlsplit(text).scheme.lower() in ("http", "https"):
        url, sha = _split_url(text)
        found = _find_by_source(folder, index, url, sha)
        if found is not None:
            return _model(folder, index, found).path
        name = _name_from(Path(_url_filename(url)).stem)
        try:
            return install(text, name=name, progress=progress).path
        except ModelExistsError:
            raise ModelExistsError(
                f"cannot install {url} as {name!r}: another installed model has that name; install it under "
                f"another name with geoseg model install {url} --name NAME and pass that name"
            ) from None
    installed = _installed_names(index)
    if _looks_like_path(text):
        raise ModelNotFoundError(
            f"model file not found: {text}; pass a geoseg checkpoint, an installed model name "
            f"(installed: {installed}) or a URL"
        )
    raise ModelNotFoundError(
        f"no model file or installed model named {text}; installed: {installed} (geoseg model list)"
    )


def _existing_file(model: InstalledModel) -> Path:
    if not model.path.is_file():
        raise GeosegIOError(
            f"installed model {model.name!r} has lost its file {model.path}; reinstall it with "
            f"geoseg model install SOURCE --name {model.name} --overwrite, or geoseg model remove {model.name}"
        )
    return model.path


def resolve_model(model: str | os.PathLike[str] | None, *, progress: ProgressCallback | None = None) -> Path:
    """The checkpoint file ``geoseg run`` should use.

    Parameters
    ----------
    model : str, path-like or None
        An existing checkpoint file, an installed model name, or an
        ``http(s)://`` URL (installed on first use, named after the file
        stem, and reused afterwards). None means the ``GEOSEG_MODEL``
        environment variable (resolved the same way), else the default
        installed model.
    progress : callable, optional
        Download progress, as for :func:`install`.

    Returns
    -------
    Path
        A checkpoint file (not yet validated when it was given as a path).

    Raises
    ------
    ModelNotFoundError
        Nothing matches, or no model was given and none is the default; the
        one-line message says what is installed and how to get a model.
    """
    if model is not None:
        return _resolve(os.fspath(model), progress)
    env = os.environ.get(MODEL_ENV, "").strip()
    if env:
        try:
            return _resolve(env, progress)
        except ModelNotFoundError as exc:
            raise ModelNotFoundError(f"${MODEL_ENV}={env}: {exc}") from None
    folder = models_dir()
    index = _read_index(folder)
    if index["default"] is not None:
        return _existing_file(_model(folder, index, index["default"]))
    if index["models"]:
        raise ModelNotFoundError(
            "no model given and no default model set: pass --model NAME or choose a default with "
            f"geoseg model default NAME (installed: {_installed_names(index)})"
        )
    raise ModelNotFoundError(
        "no model given and no default model installed: train one (geoseg train), "
        "install one (geoseg model install CKPT --default), or run geoseg demo"
    )
