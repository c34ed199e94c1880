"""Run the ``geoseg`` command for the Processing algorithms: find it, follow its JSON log, stop it.

Plain Python without QGIS: QGIS's own Python need not have geoseg or torch, so the
algorithms run geoseg as a separate process. With ``--log-json`` geoseg writes one
JSON object per line on stderr: log messages, ``event="progress"`` records with the
``fraction`` done, and one ``event="result"`` record naming the outputs. A user
error ends the command with exit status 1 and one line ``Error: <what to fix>``.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

#: Environment variable naming the geoseg executable (or its virtualenv, or a Python that has geoseg).
EXECUTABLE_ENV = "GEOSEG_EXECUTABLE"
#: Beside this module, ``geoseg qgis install`` records the geoseg that installed the plugin.
RECORD = Path(__file__).with_name("geoseg.json")
#: QGIS's environment points at its own Python, GDAL and PROJ; geoseg brings its own.
_FOREIGN_ENV = ("PYTHONHOME", "PYTHONPATH", "GDAL_DATA", "GDAL_DRIVER_PATH", "PROJ_LIB", "PROJ_DATA")
#: Seconds a stopped command gets to clean up after SIGTERM before it is killed.
STOP_GRACE = 30.0


class GeosegNotFound(Exception):
    """No geoseg command where the setting, the environment, the install record or PATH point."""


class CommandFailed(Exception):
    """geoseg ended with an error: ``str(exc)`` is its one-line message, ``exc.status`` its exit status.

    ``exc.result`` is the command's result record where it wrote one (a batch job
    with failed scenes still reports the others), else {}.
    """

    def __init__(self, message: str, status: int, result: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.result = result or {}


class Cancelled(Exception):
    """The command was stopped on request; it cleaned up and the same command resumes."""


def _command_for(candidate: str) -> list[str] | None:
    """The argv prefix that runs geoseg from `candidate`: the command, a virtualenv folder or a Python."""
    path = Path(candidate).expanduser()
    if path.is_dir():
        for sub in ("bin/geoseg", "Scripts/geoseg.exe", "geoseg", "geoseg.exe"):
            if (path / sub).is_file():
                return [str(path / sub)]
        return None
    if not path.is_file():
        found = shutil.which(candidate)
        if not found:
            return None
        path = Path(found)
    if path.name.lower().startswith("python"):
        return [str(path), "-m", "geoseg"]
    return [str(path)]


def find_executable(setting: str | None = None) -> list[str]:
    """The argv prefix that runs geoseg.

    Looks, in order, at ``$GEOSEG_EXECUTABLE``, the plugin setting `setting`, the
    geoseg that installed the plugin (``geoseg qgis install``) and ``geoseg`` on
    PATH (and ``~/.local/bin``). Each may name the ``geoseg`` command, its
    virtualenv folder or a Python interpreter that has geoseg installed.

    Raises
    ------
    GeosegNotFound
        With a message saying where to set the path.
    """
    named = [(f"${EXECUTABLE_ENV}", os.environ.get(EXECUTABLE_ENV, "")), ("the plugin setting", setting or "")]
    for origin, value in named:
        if value.strip():
            command = _command_for(value.strip())
            if command is None:
                raise GeosegNotFound(
                    f"{origin} names {value!r}, which is neither the geoseg command, its virtualenv folder "
                    "nor a Python; correct it (Processing options > Providers > geoseg)"
                )
            return command
    recorded = ""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        recorded = json.loads(RECORD.read_text(encoding="utf-8")).get("executable", "")
    for candidate in (recorded, "geoseg", str(Path.home() / ".local" / "bin" / "geoseg")):
        command = _command_for(candidate) if candidate else None
        if command:
            return command
    raise GeosegNotFound(
        "the geoseg command was not found: install geoseg (pip install geoseg) and set the path to its geoseg "
        f"executable or virtualenv in Processing options > Providers > geoseg (or ${EXECUTABLE_ENV})"
    )


def command_env() -> dict[str, str]:
    """This process's environment without QGIS's Python, GDAL and PROJ settings, with UTF-8 plain output."""
    env = {k: v for k, v in os.environ.items() if k not in _FOREIGN_ENV}
    env.update(PYTHONIOENCODING="utf-8", PYTHONUNBUFFERED="1", NO_COLOR="1", TERM="dumb")
    return env


def _popen_options() -> dict[str, Any]:
    if sys.platform == "win32":  # no console window flashing up behind QGIS
        return {"creationflags": getattr(subprocess, "CREATE_NO_WINDOW", 0)}
    return {}


def installed_models(command: Sequence[str], *, timeout: float = 30) -> list[dict[str, Any]]:
    """``geoseg model list --json``: the installed models (name, path, is_default, ...); [] if that fails."""
    try:
        proc = subprocess.run(
            [*command, "model", "list", "--json"],
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=timeout,
            env=command_env(),
            check=False,
            **_popen_options(),
        )
        models = json.loads(proc.stdout) if proc.returncode == 0 else []
    except (OSError, ValueError, subprocess.SubprocessError):
        return []
    return [m for m in models if isinstance(m, dict) and "name" in m]


def parse_line(line: str) -> dict[str, Any] | None:
    """The JSON object on a log line, or None for a plain text line."""
    text = line.strip()
    if not text.startswith("{"):
        return None
    try:
        record = json.loads(text)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def _stop(proc: subprocess.Popen[str]) -> None:
    """SIGTERM (geoseg then stops as on Ctrl-C, keeping its working store), a kill after STOP_GRACE."""
    with contextlib.suppress(OSError):
        if sys.platform == "win32":
            proc.terminate()
        else:
            proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_GRACE)
    except subprocess.TimeoutExpired:
        proc.kill()


def run(
    command: Sequence[str],
    args: Sequence[str],
    *,
    on_progress: Callable[[float, dict[str, Any]], None] | None = None,
    on_record: Callable[[dict[str, Any]], None] | None = None,
    on_text: Callable[[str], None] | None = None,
    is_cancelled: Callable[[], bool] = lambda: False,
    poll: float = 0.1,
) -> dict[str, Any]:
    """Run ``geoseg ARGS --log-json`` and follow it to the end.

    Parameters
    ----------
    command : sequence of str
        What runs geoseg (see :func:`find_executable`).
    args : sequence of str
        The subcommand and its options; ``--log-json`` is added.
    on_progress : callable, optional
        ``on_progress(fraction, record)`` for each progress record (fraction 0-1).
    on_record : callable, optional
        Every other JSON log record (``level``, ``message``, extra fields).
    on_text : callable, optional
        Lines that are not JSON (warnings of libraries), without the final ``Error:`` line.
    is_cancelled : callable
        Polled every `poll` seconds; once it returns True the command is stopped
        with SIGTERM and :class:`Cancelled` raised after it has cleaned up.

    Returns
    -------
    dict
        The command's ``event="result"`` record (``outputs`` and figures), {} if it wrote none.

    Raises
    ------
    CommandFailed
        The command ended with a non-zero status; the message is geoseg's one-line error.
    Cancelled
        `is_cancelled` said so.
    """
    with subprocess.Popen(
        [*command, *args, "--log-json"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        encoding="utf-8",
        errors="replace",
        env=command_env(),
        **_popen_options(),
    ) as proc:
        lines: queue.Queue[str | None] = queue.Queue()

        def pump() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, name="geoseg-output", daemon=True).start()
        result: dict[str, Any] = {}
        errors: list[str] = []
        cancelled = False
        try:
            while True:
                try:
                    line = lines.get(timeout=poll)
                except queue.Empty:
                    line = ""
                if line is None:
                    break
                if not cancelled and is_cancelled():
                    cancelled = True
                    threading.Thread(target=_stop, args=(proc,), name="geoseg-stop", daemon=True).start()
                if not line.strip():
                    continue
                record = parse_line(line)
                if record is None:
                    text = line.rstrip()
                    if text.startswith("Error: "):
                        errors.append(text[len("Error: ") :])
                    elif on_text:
                        on_text(text)
                elif record.get("event") == "progress":
                    if on_progress:
                        on_progress(float(record.get("fraction", 0.0)), record)
                elif record.get("event") == "result":
                    result = record
                elif on_record:
                    on_record(record)
        except BaseException:  # a failing callback must not leave geoseg running
            _stop(proc)
            raise
        status = proc.wait()
    if cancelled:
        raise Cancelled(
            "cancelled: geoseg stopped and kept its finished blocks; run again with the same parameters to resume"
        )
    if status != 0:
        message = errors[-1] if errors else f"geoseg exited with status {status}"
        raise CommandFailed(message, status, result)
    return result
