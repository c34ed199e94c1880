"""The models folder and its index: what is installed, under which name, and which model is the default.

The folder holds one ``<name>.pt`` checkpoint per model and an ``index.json``
(see :mod:`geoseg.models`). Every edit reads the index, changes it and writes
it back atomically while holding an advisory lock on ``index.lock``, so
concurrent installs and removals never lose each other's entries.
:func:`install` validates a checkpoint before it registers it, copying a
file or downloading a URL (:mod:`geoseg.models.download`) into the folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._files import sha256_file, write_text
from ..errors import (
    CheckpointError,
    ChecksumError,
    ConfigError,
    GeosegError,
    GeosegIOError,
    ModelExistsError,
    ModelNotFoundError,
)
from .download import ProgressCallback, _check_sha256, _download, _is_url, _split_url, _url_filename

if TYPE_CHECKING:
    from ..predict.spec import ModelSpec

__all__ = [
    "HOME_ENV",
    "InstalledModel",
    "_find_by_source",
    "_installed_names",
    "_model",
    "_name_from",
    "_read_index",
    "get",
    "install",
    "list_models",
    "models_dir",
    "remove",
    "set_default",
]

#: Environment variable naming geoseg's data folder (models live in its ``models`` subfolder).
HOME_ENV = "GEOSEG_HOME"

_INDEX = "index.json"
_LOCK = "index.lock"
_FORMAT = 1
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class InstalledModel:
    """One model in the models folder.

    Attributes
    ----------
    name : str
        Name to pass to ``geoseg run --model``.
    path : Path
        The installed checkpoint file.
    sha256 : str
        SHA-256 of the file (hex), as :func:`geoseg.predict.checkpoint.model_hash` computes it.
    source : str
        Where it came from: an absolute path or a URL (without its ``#sha256=`` fragment).
    installed : str
        Installation time, ISO 8601 in UTC.
    arch, encoder : str
        Architecture and encoder from the checkpoint's model description.
    bands, classes : tuple of str
        Input band names and output class names, in order.
    is_default : bool
        Whether ``geoseg run`` uses it when no model is given.
    """

    name: str
    path: Path
    sha256: str
    source: str
    installed: str
    arch: str
    encoder: str
    bands: tuple[str, ...]
    classes: tuple[str, ...]
    is_default: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (path as a string, tuples as lists)."""
        d = asdict(self)
        d["path"] = str(self.path)
        d["bands"], d["classes"] = list(self.bands), list(self.classes)
        return d


def models_dir() -> Path:
    """The models folder: ``$GEOSEG_HOME/models``, else ``<user data folder>/geoseg/models``.

    The folder is not created here; installing the first model creates it.
    """
    home = os.environ.get(HOME_ENV, "").strip()
    if home:
        return Path(home).expanduser() / "models"
    import platformdirs

    return platformdirs.user_data_path("geoseg") / "models"


# -- the index --------------------------------------------------------------------------------------------------------


def _empty_index() -> dict[str, Any]:
    return {"format": _FORMAT, "default": None, "models": {}}


def _read_index(folder: Path) -> dict[str, Any]:
    path = folder / _INDEX
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return _empty_index()
    except OSError as exc:
        raise GeosegIOError(f"cannot read the model index {path}: {exc.strerror or exc}") from exc
    try:
        index = json.loads(text)
        if not isinstance(index, dict) or not isinstance(index.get("models"), dict):
            raise ValueError("not a geoseg model index")
    except ValueError as exc:
        raise GeosegIOError(
            f"the model index {path} is damaged ({exc}); delete it and install the models again"
        ) from exc
    if index.get("default") not in index["models"]:
        index["default"] = None
    return index


def _write_index(folder: Path, index: dict[str, Any]) -> None:
    write_text(folder / _INDEX, json.dumps(index, indent=2, sort_keys=True) + "\n")


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[dict[str, Any]]:
    """Hold the index lock; yields the current index (write it back with :func:`_write_index`)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        lock = open(folder / _LOCK, "a+b")  # noqa: SIM115 - closed below, after unlocking
    except OSError as exc:
        raise _folder_error(folder, exc) from exc
    with lock:
        try:
            import fcntl
        except ImportError:  # no advisory locks (Windows): index writes stay atomic, just not serialised
            yield _read_index(folder)
            return
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            yield _read_index(folder)
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def _folder_error(folder: Path, exc: OSError) -> GeosegIOError:
    return GeosegIOError(
        f"cannot write to the models folder {folder}: {exc.strerror or exc}; set {HOME_ENV} to a writable folder"
    )


def _model(folder: Path, index: dict[str, Any], name: str) -> InstalledModel:
    e = index["models"][name]
    return InstalledModel(
        name=name,
        path=folder / str(e.get("file", f"{name}.pt")),
        sha256=str(e.get("sha256", "")),
        source=str(e.get("source", "")),
        installed=str(e.get("installed", "")),
        arch=str(e.get("arch", "")),
        encoder=str(e.get("encoder", "")),
        bands=tuple(e.get("bands", ())),
        classes=tuple(e.get("classes", ())),
        is_default=index.get("default") == name,
    )


def _installed_names(index: dict[str, Any]) -> str:
    names = sorted(index["models"])
    return ", ".join(names) if names else "none"


def _not_installed(name: str, index: dict[str, Any]) -> ModelNotFoundError:
    return ModelNotFoundError(
        f"no installed model named {name!r}; installed: {_installed_names(index)} (geoseg model list)"
    )


# -- queries and edits ------------------------------------------------------------------------------------------------


def list_models() -> list[InstalledModel]:
    """Installed models, sorted by name."""
    folder = models_dir()
    index = _read_index(folder)
    return [_model(folder, index, name) for name in sorted(index["models"])]


def get(name: str) -> InstalledModel:
    """The installed model called `name`.

    Raises
    ------
    ModelNotFoundError
        No model of that name is installed (the message lists those that are).
    """
    folder = models_dir()
    index = _read_index(folder)
    if name not in index["models"]:
        raise _not_installed(name, index)
    return _model(folder, index, name)


def set_default(name: str) -> InstalledModel:
    """Make `name` the model ``geoseg run`` uses when no model is given."""
    folder = models_dir()
    with _locked(folder) as index:
        if name not in index["models"]:
            raise _not_installed(name, index)
        index["default"] = name
        _write_index(folder, index)
        return _model(folder, index, name)


def remove(name: str) -> InstalledModel:
    """Delete the installed model `name` (its file and its index entry); returns what was removed."""
    folder = models_dir()
    with _locked(folder) as index:
        if name not in index["models"]:
            raise _not_installed(name, index)
        removed = _model(folder, index, name)
        try:
            removed.path.unlink(missing_ok=True)
        except OSError as exc:
            raise GeosegIOError(f"cannot delete {removed.path}: {exc.strerror or exc}") from exc
        del index["models"][name]
        if index["default"] == name:
            index["default"] = None
        _write_index(folder, index)
        return removed


# -- installing -------------------------------------------------------------------------------------------------------


def _check_name(name: str) -> str:
    if not _NAME.match(name):
        raise ConfigError(
            f"invalid model name {name!r}: use letters, digits, '.', '_' and '-', starting with a letter or digit"
        )
    return name


def _name_from(text: str) -> str:
    """A valid model name made from a file stem (invalid characters become '-')."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).lstrip("._-") or "model"


def _default_name(spec: ModelSpec, stem: str) -> str:
    if spec.name and spec.name != "model" and _NAME.match(spec.name):
        return spec.name
    return _name_from(stem)


def _find_by_source(folder: Path, index: dict[str, Any], source: str, sha256: str | None) -> str | None:
    """Name of an installed model downloaded from `source` (with that SHA-256, when given) whose file is present."""
    for name, e in sorted(index["models"].items()):
        if e.get("source") != source or (sha256 is not None and e.get("sha256") != sha256):
            continue
        if (folder / str(e.get("file", ""))).is_file():
            return name
    return None


def install(
    source: str | os.PathLike[str],
    *,
    name: str | None = None,
    default: bool = False,
    overwrite: bool = False,
    sha256: str | None = None,
    progress: ProgressCallback | None = None,
) -> InstalledModel:
    """Copy or download a geoseg checkpoint into the models folder and register it.

    Parameters
    ----------
    source : str or path-like
        A checkpoint file, or an ``http(s)://`` or ``file://`` URL. A URL may end
        in ``#sha256=<hex>`` to give the expected checksum.
    name : str, optional
        Name to install it under (letters, digits, ``.``, ``_``, ``-``) [default:
        the name stored in the checkpoint, else the file stem].
    default : bool
        Make it the model ``geoseg run`` uses when no model is given. Installing
        never changes the default otherwise, not even for the first model.
    overwrite : bool
        Replace an installed model of the same name; for a URL also download it
        again even if it is already installed.
    sha256 : str, optional
        Expected SHA-256 (hex) of the file; a mismatch deletes the copy and raises.
    progress : callable, optional
        ``progress(bytes_done, bytes_total_or_None)``, called while a URL downloads.

    Returns
    -------
    InstalledModel

    Raises
    ------
    CheckpointError
        `source` is not a geoseg checkpoint (nothing is installed).
    ModelExistsError
        `name` is taken and `overwrite` is False.
    ChecksumError
        The file's SHA-256 is not the expected one (nothing is installed).
    GeosegIOError
        The file or URL cannot be read, or the models folder cannot be written.

    Notes
    -----
    A URL already installed from the same address (and with the same SHA-256,
    when one is given) is not downloaded again: that model is returned.
    """
    from ..predict.runtime import read_spec  # checkpoints and geoseg .onnx graphs

    expected = _check_sha256(sha256) if sha256 else None
    if name is not None:
        _check_name(name)
    folder = models_dir()
    local: Path | None = None
    url: str | None = None
    spec: ModelSpec | None = None
    if isinstance(source, str) and _is_url(source):
        url, fragment_sha = _split_url(source)
        if expected and fragment_sha and expected != fragment_sha:
            raise ConfigError(
                f"the SHA-256 given ({expected}) differs from the URL's #sha256= ({fragment_sha}); drop one of them"
            )
        expected = expected or fragment_sha
        origin = url
        filename = _url_filename(url)
        index = _read_index(folder)
        found = None if overwrite else _find_by_source(folder, index, url, expected)
        if found is not None and name in (None, found):
            return set_default(found) if default else _model(folder, index, found)
        if found is not None:  # the same download under another name: copy the file already here
            local = folder / str(index["models"][found]["file"])
    else:
        local = Path(source).expanduser()
        if not local.is_file():
            what = "is a folder, not a checkpoint file" if local.is_dir() else "not found"
            raise GeosegIOError(
                f"checkpoint {local} {what}; pass a geoseg checkpoint (.pt), a geoseg .onnx graph or an http(s):// URL"
            )
        spec = read_spec(local)  # refuse anything that is not a geoseg checkpoint before writing anything
        origin = str(local.resolve())
        filename = local.name
        name = name or _default_name(spec, local.stem)
    if name is not None and not overwrite and name in _read_index(folder)["models"]:
        raise _exists(name)

    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmpdir = Path(tempfile.mkdtemp(prefix=".install-", dir=folder))
    except OSError as exc:
        raise _folder_error(folder, exc) from exc
    try:
        tmp = tmpdir / filename
        if local is not None:
            shutil.copyfile(local, tmp)
            digest = sha256_file(tmp)
        else:
            assert url is not None
            digest = _download(url, tmp, progress)
        if expected is not None and digest != expected:
            raise ChecksumError(
                f"{origin} has SHA-256 {digest} but {expected} was expected; the file is corrupt or the checksum "
                "is wrong, nothing was installed"
            )
        if spec is None:
            try:
                spec = read_spec(tmp)
            except CheckpointError as exc:
                raise CheckpointError(f"{origin}: {exc}") from None
        name = name or _default_name(spec, Path(filename).stem)
        with _locked(folder) as index:
            if name in index["models"] and not overwrite:
                raise _exists(name)
            dest = folder / f"{name}{'.onnx' if filename.lower().endswith('.onnx') else '.pt'}"
            os.replace(tmp, dest)
            index["models"][name] = {
                "file": dest.name,
                "sha256": digest,
                "installed": datetime.now(UTC).isoformat(timespec="seconds"),
                "source": origin,
                "arch": spec.arch,
                "encoder": spec.encoder,
                "bands": list(spec.bands),
                "classes": list(spec.classes.names),
            }
            if default:
                index["default"] = name
            _write_index(folder, index)
            return _model(folder, index, name)
    except OSError as exc:
        if isinstance(exc, GeosegError):
            raise
        raise _folder_error(folder, exc) from exc
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def _exists(name: str) -> ModelExistsError:
    return ModelExistsError(
        f"a model named {name!r} is already installed; pass --overwrite to replace it or --name to choose another name"
    )
