"""Validated, immutable run settings."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import ConfigError

__all__ = ["RunConfig", "config_error", "parse_bands"]

_SCHEDULER = re.compile(r"^(threads|processes|synchronous|local(:\d+)?|tcp://\S+|tls://\S+)$")


class RunConfig(BaseModel):
    """Settings of one ``geoseg run``.

    Sizes are in pixels, `simplify` in metres, `min_area` in square metres.
    `tile` defaults to the tile size stored in the model; `simplify` and
    `min_area` default (None) to one pixel and 16 pixels of the scene, and 0
    keeps the exact pixel polygons. `model` is a checkpoint file; the command
    line also takes installed model names and URLs and turns them into a file
    with :func:`geoseg.library.resolve_model` first.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    scene: Path
    model: Path
    outdir: Path | None = None
    tile: int | None = Field(default=None, ge=32)
    overlap: int = Field(default=64, ge=0)
    batch: int | None = Field(default=None, ge=1)
    chunk: int | None = Field(default=None, ge=32)
    device: str = "auto"
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    compile: bool = False
    bands: tuple[int, ...] | None = None
    simplify: float | None = Field(default=None, ge=0)
    min_area: float | None = Field(default=None, ge=0)
    overwrite: bool = False
    scheduler: str = "threads"
    workers: int | None = Field(default=None, ge=1)
    keep_intermediate: bool = False
    confidence: bool = False
    preview: bool = False

    @field_validator("tile")
    @classmethod
    def _tile_multiple(cls, v: int | None) -> int | None:
        if v is not None and v % 32:
            raise ValueError(
                f"tile size must be a multiple of 32 (the encoder's stride); try {round(v / 32) * 32 or 32}"
            )
        return v

    @field_validator("overlap")
    @classmethod
    def _overlap_even(cls, v: int) -> int:
        if v % 2:
            raise ValueError(f"overlap must be even; try {v + 1}")
        return v

    @field_validator("scheduler")
    @classmethod
    def _scheduler(cls, v: str) -> str:
        if not _SCHEDULER.match(v):
            raise ValueError("use threads, processes, synchronous, local:N or tcp://HOST:PORT")
        return v

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if not re.match(r"^(auto|cpu|cuda(:\d+)?)$", v):
            raise ValueError("use auto, cpu, cuda or cuda:N")
        return v

    @classmethod
    def build(cls, **values: Any) -> RunConfig:
        """Construct, turning validation errors into one-line :class:`ConfigError`."""
        try:
            return cls(**values)
        except ValidationError as exc:
            raise config_error(exc) from None


def config_error(exc: ValidationError) -> ConfigError:
    """A settings model's first validation error as one line naming the setting and the value given."""
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "settings"
    msg = err["msg"].removeprefix("Value error, ")
    given = err.get("input")
    got = "" if str(given) in msg else f" (got {given!r})"
    return ConfigError(f"invalid {where}: {msg}{got}")


def parse_bands(text: str | None) -> tuple[int, ...] | None:
    """``"1,2,3"`` -> ``(1, 2, 3)``.

    Examples
    --------
    >>> parse_bands("4, 1,2")
    (4, 1, 2)
    """
    if text is None or not text.strip():
        return None
    try:
        bands = tuple(int(b) for b in text.split(","))
    except ValueError:
        raise ConfigError(f"--bands takes 1-based band numbers separated by commas, e.g. 1,2,3; got {text!r}") from None
    if any(b < 1 for b in bands):
        raise ConfigError(f"band numbers start at 1; got {text!r}")
    return bands
