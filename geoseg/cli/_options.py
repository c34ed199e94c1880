"""Options shared by several commands, defined once so their meaning and help stay the same."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

min_area_option = click.option(
    "--min-area",
    type=click.FloatRange(min=0),
    default=None,
    help="Minimum mapping unit in m²: smaller regions merge into the neighbour they share most edge with "
    "[default: 16 pixels; 0 = keep every region].",
)
simplify_option = click.option(
    "--simplify",
    type=click.FloatRange(min=0),
    default=None,
    help="Simplify polygon boundaries by this many metres, keeping shared edges shared "
    "[default: one pixel; 0 = exact pixel edges].",
)


def stop_on_sigterm() -> None:
    """Let SIGTERM end the command as Ctrl-C does: clean up, say how to resume, exit 130.

    systemd, schedulers and the QGIS plugin stop a run with SIGTERM; without
    this, Python dies at once, leaving temporary files and worker processes.
    """
    import signal

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the record's extra fields."""

    _STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        out.update({k: v for k, v in vars(record).items() if k not in self._STANDARD})
        if record.exc_info:
            out["traceback"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def _log_to(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Add a log handler once both options are known (file or stderr, text or JSON)."""
    state = ctx.meta.setdefault("geoseg.log", {})
    state[param.name] = value
    if {"log_file", "log_json"} <= set(state) and (state["log_file"] or state["log_json"]):
        path, as_json = state["log_file"], state["log_json"]
        try:
            handler: logging.Handler = logging.FileHandler(path, encoding="utf-8") if path else logging.StreamHandler()
        except OSError as exc:
            raise click.BadParameter(f"cannot write {path}: {exc.strerror or exc}", param_hint="--log-file") from None
        handler.setFormatter(
            JsonFormatter() if as_json else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        )
        handler.setLevel(logging.INFO)
        root = logging.getLogger("geoseg")
        for h in root.handlers:  # the terminal keeps the level -v chose
            h.setLevel(h.level or root.level or logging.WARNING)
        root.addHandler(handler)
        root.setLevel(min(root.level or logging.WARNING, logging.INFO))
        if not path:  # JSON on stderr replaces the human-readable warnings there
            root.handlers[:] = [handler]
        ctx.call_on_close(handler.close)
    return value


def logs_json(ctx: click.Context | None = None) -> bool:
    """Whether this command was given ``--log-json`` (it then also logs progress and results as JSON events)."""
    ctx = ctx or click.get_current_context()
    return bool(ctx.meta.get("geoseg.log", {}).get("log_json"))


def log_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """``--log-file PATH`` (append the run's log there) and ``--log-json`` (one JSON object per line)."""
    f = click.option(
        "--log-json",
        is_flag=True,
        expose_value=False,
        callback=_log_to,
        help="Log as JSON lines (for log collectors), to --log-file or else to stderr.",
    )(f)
    return click.option(
        "--log-file",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        expose_value=False,
        callback=_log_to,
        help="Append an INFO-level log (scene starts, outcomes, retries, timings) to this file.",
    )(f)
