"""Validated, immutable run settings."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from .errors import ConfigError
from .remote import is_remote
from .tiling import DEFAULT_OVERLAP, TILE_MULTIPLE

__all__ = [
    "DEFAULT_OVERLAP",
    "ENGINES",
    "PRECISIONS",
    "TILE_MULTIPLE",
    "Engine",
    "Precision",
    "RunConfig",
    "RunOptions",
    "Scheduler",
    "check_tile",
    "config_error",
    "parse_bands",
]

#: Numeric precision of the forward passes: ``auto`` picks per device (see :mod:`geoseg.predict.engine`).
Precision = Literal["auto", "fp32", "bf16", "fp16", "int8"]
PRECISIONS: tuple[str, ...] = get_args(Precision)
#: What runs the forward passes: torch, ONNX Runtime, or ``auto`` (see :func:`geoseg.predict.runtime.choose_engine`).
Engine = Literal["auto", "torch", "onnx"]
ENGINES: tuple[str, ...] = get_args(Engine)

_SCHEDULER = re.compile(r"^(threads|processes|synchronous|local(:\d+)?|tcp://\S+|tls://\S+)$")


def check_tile(v: int) -> int:
    """`v` if it is a valid tile size, else a ValueError that suggests the nearest one."""
    if v % TILE_MULTIPLE:
        nearest = round(v / TILE_MULTIPLE) * TILE_MULTIPLE or TILE_MULTIPLE
        raise ValueError(f"tile size must be a multiple of {TILE_MULTIPLE} (the encoder's stride); try {nearest}")
    return v


def _check_scheduler(v: str) -> str:
    if not _SCHEDULER.match(v):
        raise ValueError("use threads, processes, synchronous, local:N or tcp://HOST:PORT")
    return v


def _check_device(v: str) -> str:
    if not re.match(r"^(auto|cpu|cuda(:\d+)?)$", v):
        raise ValueError("use auto, cpu, cuda or cuda:N")
    return v


def _check_overlap(v: int) -> int:
    if v % 2:
        raise ValueError(f"overlap must be even; try {v + 1}")
    return v


#: Where the blocks run: ``threads``, ``processes``, ``synchronous``, ``local:N`` or a Dask scheduler's address.
Scheduler = Annotated[str, AfterValidator(_check_scheduler)]


def _scene(value: Any) -> Any:
    """Keep a URL or GDAL path as the string given (a ``Path`` would fold ``//`` and lose the scheme)."""
    return value if isinstance(value, str) and is_remote(value) else Path(value) if isinstance(value, str) else value


#: A local path, or an ``http(s)://`` URL, ``s3://bucket/key`` or GDAL ``/vsi…`` path kept as a string.
Scene = Annotated[Path | str, BeforeValidator(_scene)]


def _outdir(value: Any) -> Any:
    """Keep an ``s3://bucket/prefix`` as the string given; refuse other URLs; local folders become paths."""
    if isinstance(value, str) and is_remote(value):
        if not value.lower().startswith("s3://") or value.lower() == "s3://":
            raise ValueError("outputs go to a local folder or to s3://bucket[/prefix]")
        return value
    return Path(value) if isinstance(value, str) else value


#: A local folder, or an ``s3://bucket/prefix`` kept as a string (see :mod:`geoseg.objects`).
OutDir = Annotated[Path | str, BeforeValidator(_outdir)]


class RunOptions(BaseModel):
    """How a scene is mapped: the options of ``geoseg run`` beside the scene, model and output folder.

    A regional job's ``run:`` section is exactly this. Sizes are in pixels,
    `simplify` in metres, `min_area` in square metres. `tile` defaults to the
    tile size stored in the model; `simplify` and `min_area` default (None) to
    one pixel and 16 pixels of the scene, and 0 keeps the exact pixel
    polygons.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    tile: Annotated[int, AfterValidator(check_tile)] | None = Field(default=None, ge=32)
    overlap: Annotated[int, AfterValidator(_check_overlap)] = Field(default=DEFAULT_OVERLAP, ge=0)
    batch: int | None = Field(default=None, ge=1)
    chunk: int | None = Field(default=None, ge=32)
    device: Annotated[str, AfterValidator(_check_device)] = "auto"
    precision: Precision = "auto"
    engine: Engine = "auto"
    compile: bool = False
    bands: tuple[int, ...] | None = None
    simplify: float | None = Field(default=None, ge=0)
    min_area: float | None = Field(default=None, ge=0)
    keep_intermediate: bool = False
    confidence: bool = False
    preview: bool = False


class RunConfig(RunOptions):
    """Settings of one ``geoseg run``: a scene, a model, an output folder and the :class:`RunOptions`.

    `scene` is a local file, or an ``http(s)://`` URL, ``s3://bucket/key`` or
    GDAL ``/vsi…`` path (see :mod:`geoseg.remote`), kept as the string given.
    `outdir` is a local folder or an ``s3://bucket/prefix`` (kept as the
    string given). `model` is a checkpoint file; the command line also takes installed
    model names and URLs and turns them into a file with
    :func:`geoseg.models.resolve_model` first. `name` is the stem of the
    output files; None takes the scene's file name less its raster suffix
    (a regional job names a STAC item's outputs after the item's id).
    """

    scene: Scene
    model: Path
    outdir: OutDir | None = None
    name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._+-]*$", max_length=200)
    overwrite: bool = False
    scheduler: Scheduler = "threads"
    workers: int | None = Field(default=None, ge=1)

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
