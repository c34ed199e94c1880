"""Tests for geoseg.synthetic.render: determinism, window independence, realism, nodata, windows."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

import geoseg
from geoseg.errors import ConfigError
from geoseg.synthetic import CLASS_NAMES, SceneSpec, render_window
from geoseg.synthetic.town import _cell_objects

ROOT = Path(geoseg.__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def scene_2048() -> tuple[np.ndarray, np.ndarray]:
    """A 2048 x 2048 RGB scene at 0.1 m (about 205 m square)."""
    return render_window(SceneSpec(2048, 2048, pixel_size=0.1, seed=0), 0, 0, 2048, 2048)


def _digest(image: np.ndarray, label: np.ndarray) -> str:
    return hashlib.sha256(image.tobytes() + label.tobytes()).hexdigest()


# -- determinism ----------------------------------------------------------------------------
def test_same_spec_gives_identical_arrays() -> None:
    spec = SceneSpec(600, 500, pixel_size=0.12, seed=42)
    first = render_window(spec, 0, 0, 500, 600)
    _cell_objects.cache_clear()  # rebuild the layout from scratch
    second = render_window(spec, 0, 0, 500, 600)
    assert first[0].tobytes() == second[0].tobytes()
    assert first[1].tobytes() == second[1].tobytes()


def test_fresh_interpreter_reproduces_the_scene() -> None:
    # A different hash seed and an empty cache must not change a single byte.
    spec = SceneSpec(300, 260, pixel_size=0.1, seed=7)
    expected = _digest(*render_window(spec, 20, 10, 200, 250))
    code = (
        "import hashlib; from geoseg.synthetic import SceneSpec, render_window\n"
        "i, l = render_window(SceneSpec(300, 260, pixel_size=0.1, seed=7), 20, 10, 200, 250)\n"
        "print(hashlib.sha256(i.tobytes() + l.tobytes()).hexdigest())\n"
    )
    env = dict(os.environ, PYTHONHASHSEED="12345", PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == expected


def test_different_seeds_differ() -> None:
    a_img, a_lab = render_window(SceneSpec(512, 512, seed=1), 0, 0, 512, 512)
    b_img, b_lab = render_window(SceneSpec(512, 512, seed=2), 0, 0, 512, 512)
    assert (a_img != b_img).mean() > 0.5
    assert (a_lab != b_lab).mean() > 0.2


# -- window independence --------------------------------------------------------------------
@pytest.mark.parametrize(
    "spec",
    [
        SceneSpec(2600, 2400, pixel_size=0.1, seed=0),  # streets aligned with the pixel grid
        SceneSpec(2600, 2400, pixel_size=0.05, seed=3, bands="rgbn", dtype="uint16", nodata=0),  # rotated grid
        SceneSpec(2600, 2400, pixel_size=0.3, seed=7, bands="irrg", nodata=255),
    ],
    ids=["aligned-rgb", "rotated-rgbn-uint16-nodata", "coarse-irrg"],
)
def test_windows_assemble_to_the_same_bytes(spec: SceneSpec) -> None:
    r0, c0, height, width = 0, 1151, 700, 900  # touches the scene's top edge (nodata collar)
    image, label = render_window(spec, r0, c0, height, width)
    image2 = np.zeros_like(image)
    label2 = np.zeros_like(label)
    step_r, step_c = 173, 181
    tiles = [(r, c) for r in range(0, height, step_r) for c in range(0, width, step_c)]
    for r, c in reversed(tiles):  # order must not matter either
        h, w = min(step_r, height - r), min(step_c, width - c)
        part_img, part_lab = render_window(spec, r0 + r, c0 + c, h, w)
        image2[:, r : r + h, c : c + w] = part_img
        label2[r : r + h, c : c + w] = part_lab
    assert image.tobytes() == image2.tobytes()
    assert label.tobytes() == label2.tobytes()


def test_large_window_equals_its_pieces() -> None:
    # render_window cuts windows larger than its chunk size internally.
    spec = SceneSpec(1400, 1300, pixel_size=0.15, seed=5)
    image, label = render_window(spec, 100, 50, 1200, 1300)
    piece_img, piece_lab = render_window(spec, 100 + 511, 50 + 700, 300, 401)
    assert np.array_equal(image[:, 511:811, 700:1101], piece_img)
    assert np.array_equal(label[511:811, 700:1101], piece_lab)


# -- content --------------------------------------------------------------------------------
def test_all_classes_present_with_plausible_shares(
    scene_2048: tuple[np.ndarray, np.ndarray],
) -> None:
    _, label = scene_2048
    shares = np.bincount(label.ravel(), minlength=256)[: len(CLASS_NAMES)] / label.size
    named = dict(zip(CLASS_NAMES, shares.round(4), strict=True))
    for name in ("impervious surfaces", "building", "low vegetation", "tree"):
        assert named[name] >= 0.05, named
    assert named["car"] >= 0.002, named
    assert named["clutter"] > 0, named
    assert shares.sum() == pytest.approx(1.0)  # no nodata without spec.nodata


def test_colour_alone_does_not_solve_it(scene_2048: tuple[np.ndarray, np.ndarray]) -> None:
    image, label = scene_2048
    x = image[:, ::3, ::3].reshape(3, -1).T.astype(np.float32)
    y = label[::3, ::3].ravel()
    means = np.stack([x[y == k].mean(axis=0) for k in range(len(CLASS_NAMES))])
    # Nearest class mean, fitted on the very pixels it is scored on (an optimistic classifier).
    dist = ((x[:, None, :] - means[None]) ** 2).sum(axis=-1)
    accuracy = (dist.argmin(axis=1) == y).mean()
    # About 0.47 here (0.34-0.53 over seeds); without shadows, grey roofs and
    # textures it rises to about 0.71, so the bound is tighter than 0.85.
    assert accuracy < 0.65, accuracy
    # Grey roofs look like roads: many building pixels are nearer the impervious mean.
    building = dist[y == 1]
    assert (building[:, 0] < building[:, 1]).mean() > 0.15


def test_pixel_size_keeps_real_world_sizes() -> None:
    fine = SceneSpec(1600, 1600, pixel_size=0.05, seed=2)
    coarse = SceneSpec(400, 400, pixel_size=0.2, seed=2)
    fine_lab = render_window(fine, 0, 0, 1600, 1600)[1]
    coarse_lab = render_window(coarse, 0, 0, 400, 400)[1]
    # Same town, same place: the coarse pixel centres sit 2.5 cm from fine ones.
    assert (fine_lab[1::4, 1::4] == coarse_lab).mean() > 0.95
    for spec, lab in ((fine, fine_lab), (coarse, coarse_lab)):
        cars, n = ndimage.label(lab == 4)
        sizes = np.bincount(cars.ravel())[1:] * spec.pixel_size**2
        assert n >= 10
        assert 5.0 < np.median(sizes) < 11.0, np.median(sizes)  # m², a car is ~4.5 m x 1.8 m


def test_nir_is_high_on_vegetation() -> None:
    spec = SceneSpec(1024, 1024, seed=4, bands="rgbn")
    image, label = render_window(spec, 0, 0, 1024, 1024)
    ndvi = (image[3].astype(float) - image[0]) / (image[3].astype(float) + image[0] + 1)
    vegetation = np.isin(label, (2, 3))
    sealed = np.isin(label, (0, 1))
    assert np.median(ndvi[vegetation]) > 0.25
    assert np.median(ndvi[sealed]) < 0.1
    irrg = render_window(SceneSpec(1024, 1024, seed=4, bands="irrg"), 0, 0, 1024, 1024)[0]
    assert np.array_equal(irrg, image[[3, 0, 1]])


def test_uint16_is_reflectance_scaled() -> None:
    img8 = render_window(SceneSpec(256, 256, seed=9), 0, 0, 256, 256)[0].astype(float)
    img16 = render_window(SceneSpec(256, 256, seed=9, dtype="uint16"), 0, 0, 256, 256)[0]
    assert img16.dtype == np.uint16
    assert 2000 < img16.max() <= 12000
    assert np.abs(img16 / 10000.0 - img8 / 255.0).max() < 0.01


# -- nodata ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("dtype", "nodata"), [("uint8", 0), ("uint8", 255), ("uint16", 0)])
def test_label_is_nodata_exactly_where_all_bands_are(dtype: str, nodata: int) -> None:
    spec = SceneSpec(640, 480, seed=6, bands="rgbn", dtype=dtype, nodata=nodata)
    image, label = render_window(spec, 0, 0, 480, 640)
    empty = np.all(image == nodata, axis=0)
    assert np.array_equal(empty, label == 255)
    assert 0.01 < empty.mean() < 0.5


def test_no_nodata_without_spec_nodata() -> None:
    label = render_window(SceneSpec(400, 300, seed=6), 0, 0, 300, 400)[1]
    assert not (label == 255).any()


# -- validation -----------------------------------------------------------------------------
@pytest.mark.parametrize("window", [(-1, 0, 10, 10), (0, 0, 0, 10), (95, 0, 10, 10), (0, 95, 10, 10)])
def test_window_outside_scene_is_refused(window: tuple[int, int, int, int]) -> None:
    with pytest.raises(ConfigError, match="window"):
        render_window(SceneSpec(100, 100), *window)


def test_tiny_scene_renders() -> None:
    image, label = render_window(SceneSpec(1, 1, nodata=0), 0, 0, 1, 1)
    assert image.shape == (3, 1, 1) and label.shape == (1, 1)
    assert label[0, 0] != 255  # a collar thinner than half a pixel leaves the pixel valid
