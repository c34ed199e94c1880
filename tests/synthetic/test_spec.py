"""Tests for geoseg.synthetic.spec: validation and georeferencing of a SceneSpec."""

from __future__ import annotations

import pytest

from geoseg.errors import ConfigError
from geoseg.synthetic import SceneSpec


@pytest.mark.parametrize(
    "kwargs",
    [
        {"width": 0, "height": 10},
        {"width": 10, "height": 10, "pixel_size": -0.1},
        {"width": 10, "height": 10, "bands": "rgbx"},
        {"width": 10, "height": 10, "dtype": "float32"},
        {"width": 10, "height": 10, "nodata": 256},
        {"width": 10, "height": 10, "dtype": "uint16", "nodata": -1},
        {"width": 10, "height": 10, "origin": (0.0, "north")},
    ],
)
def test_bad_spec_is_refused(kwargs: dict) -> None:
    with pytest.raises(ConfigError, match="SceneSpec"):
        SceneSpec(**kwargs)


def test_spec_georeferencing() -> None:
    spec = SceneSpec(100, 50, pixel_size=0.3, origin=[1000, 2000], bands="rgbn")  # type: ignore[arg-type]
    assert spec.count == 4
    assert spec.origin == (1000.0, 2000.0) and hash(spec) == hash(
        SceneSpec(100, 50, 0.3, origin=(1e3, 2e3), bands="rgbn")
    )
    assert spec.transform @ (0, 0) == (1000.0, 2000.0)
    assert spec.transform @ (100, 50) == pytest.approx((1030.0, 1985.0))
