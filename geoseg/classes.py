"""The land-cover class table: ids, names, colours and the ISPRS RGB label codec.

One :class:`ClassTable` object owns everything that depends on the classes, so
outputs (colour tables, styles, attribute values) and label decoding can never
disagree.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["ISPRS", "NODATA", "ClassTable", "LandCoverClass"]

#: Class value written for pixels without data (scene nodata, alpha, mask).
NODATA = 255


@dataclass(frozen=True)
class LandCoverClass:
    """One class: integer id, human name and display colour (R, G, B)."""

    id: int
    name: str
    color: tuple[int, int, int]

    @property
    def hex(self) -> str:
        """Colour as ``#RRGGBB``."""
        return "#{:02X}{:02X}{:02X}".format(*self.color)


@dataclass(frozen=True)
class ClassTable:
    """An ordered table of classes with ids ``0..n-1``.

    Examples
    --------
    >>> ISPRS.names[1]
    'building'
    >>> ISPRS.encode_rgb(np.array([[1, 255]], dtype=np.uint8)).tolist()
    [[[0, 0, 255], [0, 0, 0]]]
    """

    classes: tuple[LandCoverClass, ...]

    def __post_init__(self) -> None:
        ids = [c.id for c in self.classes]
        if ids != list(range(len(ids))):
            raise ValueError(f"class ids must be 0..{len(ids) - 1} in order, got {ids}")
        if len(ids) >= NODATA:
            raise ValueError(f"at most {NODATA} classes fit a uint8 raster, got {len(ids)}")
        colors = [c.color for c in self.classes]
        if len(set(colors)) != len(colors):
            raise ValueError(f"class colours must be distinct to decode RGB labels, got {colors}")

    def __len__(self) -> int:
        return len(self.classes)

    def __iter__(self) -> Iterator[LandCoverClass]:
        return iter(self.classes)

    def __getitem__(self, class_id: int) -> LandCoverClass:
        return self.classes[class_id]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.classes)

    @property
    def colors(self) -> tuple[tuple[int, int, int], ...]:
        return tuple(c.color for c in self.classes)

    def colormap(self) -> dict[int, tuple[int, int, int, int]]:
        """GDAL colour table: one RGBA entry per class, transparent black for nodata."""
        cmap = {c.id: (*c.color, 255) for c in self.classes}
        cmap[NODATA] = (0, 0, 0, 0)
        return cmap

    def encode_rgb(self, labels: np.ndarray, *, ignore_color: Sequence[int] = (0, 0, 0)) -> np.ndarray:
        """Class ids ``(H, W)`` to an RGB-coded label image ``(H, W, 3)``.

        Ids outside the table (nodata, ignore) become `ignore_color`.
        """
        lut = np.zeros((256, 3), dtype=np.uint8)
        lut[:] = np.asarray(ignore_color, dtype=np.uint8)
        for c in self.classes:
            lut[c.id] = c.color
        return lut[np.asarray(labels, dtype=np.uint8)]

    def decode_rgb(self, rgb: np.ndarray, *, ignore_value: int = NODATA) -> np.ndarray:
        """RGB-coded label image ``(H, W, 3)`` to class ids; unknown colours become `ignore_value`.

        ISPRS eroded ground truth marks object boundaries black; black is not a
        class colour, so boundaries decode to `ignore_value`.
        """
        rgb = np.asarray(rgb)
        if rgb.ndim != 3 or rgb.shape[-1] < 3:
            raise ValueError(f"expected an (H, W, 3) RGB label image, got shape {rgb.shape}")
        packed = (
            rgb[..., 0].astype(np.uint32) << 16 | rgb[..., 1].astype(np.uint32) << 8 | rgb[..., 2].astype(np.uint32)
        )
        out = np.full(packed.shape, ignore_value, dtype=np.uint8)
        for c in self.classes:
            r, g, b = c.color
            out[packed == (r << 16 | g << 8 | b)] = c.id
        return out

    def to_dict(self) -> list[dict[str, Any]]:
        """JSON-ready description (used in checkpoints and run reports)."""
        return [{"id": c.id, "name": c.name, "color": c.hex} for c in self.classes]

    @classmethod
    def from_dict(cls, items: Sequence[dict[str, Any]]) -> ClassTable:
        """Inverse of :meth:`to_dict`."""
        out = []
        for item in items:
            h = str(item["color"]).lstrip("#")
            out.append(
                LandCoverClass(int(item["id"]), str(item["name"]), (int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)))
            )
        return cls(tuple(out))


#: The six classes of the ISPRS 2D semantic labelling benchmark (Potsdam, Vaihingen).
ISPRS = ClassTable(
    (
        LandCoverClass(0, "impervious surfaces", (255, 255, 255)),
        LandCoverClass(1, "building", (0, 0, 255)),
        LandCoverClass(2, "low vegetation", (0, 255, 255)),
        LandCoverClass(3, "tree", (0, 255, 0)),
        LandCoverClass(4, "car", (255, 255, 0)),
        LandCoverClass(5, "clutter", (255, 0, 0)),
    )
)
