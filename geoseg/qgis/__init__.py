"""The QGIS plugin shipped with geoseg, and installing it into a QGIS profile.

The plugin (``geoseg/qgis/plugin/``, installed as the folder ``geoseg_processing``)
is a Processing provider whose algorithms run the ``geoseg`` command; it imports
nothing of geoseg. This module only copies it: standard library, no QGIS.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import zipfile
from pathlib import Path

from ..errors import GeosegIOError

__all__ = ["PLUGIN_NAME", "geoseg_command", "install_plugin", "plugin_source", "profiles_dir", "zip_plugin"]

#: The plugin's folder name in a QGIS profile (and the ZIP's top folder).
PLUGIN_NAME = "geoseg_processing"
_SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", "geoseg.json")


def plugin_source() -> Path:
    """The plugin's folder inside the installed geoseg package."""
    return Path(__file__).with_name("plugin")


def profiles_dir() -> Path:
    """Where QGIS 3 keeps its user profiles on this system.

    Linux: ``$XDG_DATA_HOME/QGIS/QGIS3/profiles`` (``~/.local/share/...``);
    macOS: ``~/Library/Application Support/QGIS/QGIS3/profiles``; Windows:
    ``%APPDATA%\\QGIS\\QGIS3\\profiles``.
    """
    if sys.platform == "win32":
        base = Path(os.environ.get("APPDATA") or Path.home() / "AppData" / "Roaming")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "QGIS" / "QGIS3" / "profiles"


def geoseg_command() -> str:
    """What runs this geoseg: the ``geoseg`` script beside this Python, else this Python (``-m geoseg``)."""
    folder = Path(sys.executable).parent
    for name in ("geoseg", "geoseg.exe"):
        if (folder / name).is_file():
            return str(folder / name)
    return sys.executable


def _enable(profile: Path) -> None:
    """Mark the plugin enabled in the profile's QGIS3.ini (what the Plugin Manager's checkbox writes)."""
    ini = profile / "QGIS" / "QGIS3.ini"
    text = ini.read_text(encoding="utf-8") if ini.is_file() else ""
    line = f"{PLUGIN_NAME}=true"
    section = re.search(r"^\[PythonPlugins\][^\n]*\n(.*?)(?=^\[|\Z)", text, re.M | re.S)
    if section is None:
        text = (text.rstrip("\n") + "\n\n" if text.strip() else "") + f"[PythonPlugins]\n{line}\n"
    else:
        body = re.sub(rf"^{PLUGIN_NAME}=.*\n?", "", section.group(1), flags=re.M)
        text = text[: section.start(1)] + line + "\n" + body + text[section.end(1) :]
    ini.parent.mkdir(parents=True, exist_ok=True)
    ini.write_text(text, encoding="utf-8")


def install_plugin(profile: str = "default", *, root: str | os.PathLike[str] | None = None) -> Path:
    """Copy the plugin into a QGIS profile, enabled, recording this geoseg's command for it.

    Parameters
    ----------
    profile : str
        The QGIS profile's name.
    root : path, optional
        The folder holding the profiles [default: :func:`profiles_dir`].

    Returns
    -------
    Path
        The installed plugin folder (a previous copy is replaced).

    Raises
    ------
    GeosegIOError
        The profile's folder cannot be written.
    """
    profile_dir = Path(root) if root is not None else profiles_dir()
    profile_dir = profile_dir / profile
    target = profile_dir / "python" / "plugins" / PLUGIN_NAME
    try:
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(plugin_source(), target, ignore=_SKIP)
        record = {"executable": geoseg_command()}
        (target / "geoseg.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        _enable(profile_dir)
    except OSError as exc:
        raise GeosegIOError(
            f"cannot install the QGIS plugin into {target}: {exc.strerror or exc}; "
            "pass --profiles-dir to choose another QGIS profiles folder"
        ) from None
    return target


def zip_plugin(path: str | os.PathLike[str]) -> Path:
    """Write the plugin as a ZIP for QGIS's Plugin Manager ("Install from ZIP"); returns the ZIP's path.

    The ZIP records no geoseg command: the plugin finds geoseg on PATH or through its setting.
    """
    path = Path(path)
    source = plugin_source()
    files = sorted(p for p in source.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    files = [p for p in files if p.suffix != ".pyc" and p.name != "geoseg.json"]
    tmp = path.with_name(f".{path.name}.part")
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
            for file in files:
                zf.write(file, f"{PLUGIN_NAME}/{file.relative_to(source).as_posix()}")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise GeosegIOError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path
