"""The run report (``<stem>.run.json``): what a run read, how, and what it wrote, as a typed record.

``geoseg run`` writes it last, after every other output; ``geoseg batch``
reads it back to decide whether a scene is current (same scene checksum,
model hash and output-relevant settings, outputs present). The JSON keeps
the field order below.

Examples
--------
>>> c = ClassRecord(id=4, name="car", color="#ffff00", pixels=120, area_m2=7.5)
>>> c.model_dump()
{'id': 4, 'name': 'car', 'color': '#ffff00', 'pixels': 120, 'area_m2': 7.5}
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from .._files import write_json

__all__ = [
    "ClassRecord",
    "CleaningRecord",
    "GridRecord",
    "ModelRecord",
    "RunReport",
    "SceneRecord",
    "read_report",
]


class _Record(BaseModel):
    # Reports written by other geoseg versions may carry more keys: they are ignored, not refused.
    model_config = ConfigDict(frozen=True, extra="ignore")


class SceneRecord(_Record):
    """The scene as read: its checksum identifies it (see :func:`geoseg.raster.file_checksum`)."""

    path: str
    checksum: str
    width: int
    height: int
    bands_used: list[int]
    dtype: str
    crs: str
    transform: list[float]
    pixel_size_m: list[float]
    mask: str


class ModelRecord(_Record):
    """The model that mapped it: its file's SHA-256 identifies it."""

    path: str
    sha256: str
    engine: str = "torch"
    graph: str | None = None
    name: str
    arch: str
    encoder: str
    bands: list[str]


class GridRecord(_Record):
    """Tiles, blocks and precision of the segmentation."""

    tile: int
    overlap: int
    stride: int
    tiles: list[int]
    tiles_run: int
    precision: str
    block: int
    blocks: list[int]
    resumed_blocks: int


class CleaningRecord(_Record):
    """The minimum mapping unit and the simplification applied to the map."""

    min_area_m2: float | int
    min_pixels: float | int
    simplify_m: float | int


class ClassRecord(_Record):
    """One class of the map: pixels in the class COG and their ground area (m²)."""

    id: int
    name: str
    color: str
    pixels: int
    area_m2: float | int


class RunReport(_Record):
    """Everything ``<stem>.run.json`` holds.

    `parameters` are the run's :class:`~geoseg.config.RunConfig` as JSON;
    `outputs` maps ``classes``, ``landcover`` (and ``confidence``,
    ``preview``) to the files written.
    """

    geoseg_version: str
    created: str
    scene: SceneRecord
    model: ModelRecord
    parameters: dict[str, Any]
    grid: GridRecord
    timings_s: dict[str, float | int]
    task_seconds: dict[str, float | int]
    throughput_mpx_s: float
    area_method: str
    cleaning: CleaningRecord
    polygons: int
    valid_pixels: int
    classes: list[ClassRecord]
    outputs: dict[str, str]
    versions: dict[str, str]

    @property
    def class_areas(self) -> dict[str, float]:
        """Ground area (m²) per class name."""
        return {c.name: float(c.area_m2) for c in self.classes}

    def write(self, path: str | os.PathLike[str]) -> Path:
        """Write the report as indented JSON, atomically."""
        return write_json(self.model_dump(mode="json"), path)


def read_report(path: str | os.PathLike[str]) -> RunReport | None:
    """The report at `path` (a file or an ``s3://`` object); None where missing, unreadable or not a run report."""
    from .. import objects

    try:
        if objects.is_remote_dir(os.fspath(path)):
            got = objects.read_bytes(os.fspath(path))
            return None if got is None else RunReport.model_validate(json.loads(got[0]))
        return RunReport.model_validate(json.loads(Path(path).read_text(encoding="utf-8")))
    except (OSError, ValueError, ValidationError):
        return None
