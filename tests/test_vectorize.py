import numpy as np
import pytest
import rasterio.features
import shapely
from affine import Affine
from pyproj import CRS
from scipy import ndimage

from geoseg.classes import NODATA
from geoseg.tiling import Rect
from geoseg.vectorize import label_regions, measure, merge_blocks, polygonize_block, sieve, to_crs


def class_raster(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Blobby classes with holes, diagonal contacts, single pixels and a nodata corner."""
    rng = np.random.default_rng(seed)
    field = ndimage.zoom(rng.random((h // 6 + 2, w // 6 + 2)), 6, order=1)[:h, :w]
    cls = np.digitize(field, [0.2, 0.4, 0.55, 0.7, 0.8]).astype(np.uint8)
    speckle = rng.random((h, w)) < 0.01
    cls[speckle] = rng.integers(0, 6, speckle.sum())
    cls[: h // 5, : w // 4] = NODATA
    return cls


def blockwise(cls: np.ndarray, b: int):
    h, w = cls.shape
    conf = np.full_like(cls, 200)
    parts = {}
    for by in range((h + b - 1) // b):
        for bx in range((w + b - 1) // b):
            r = Rect(by * b, bx * b, min((by + 1) * b, h), min((bx + 1) * b, w))
            parts[(by, bx)] = polygonize_block(cls[r.slices()], conf[r.slices()], r, (by, bx))
    return merge_blocks(parts)


@pytest.mark.parametrize("block", [17, 64, 1000])
def test_blockwise_polygons_equal_whole_raster_polygonize(block):
    cls = class_raster(150, 131)
    polys = blockwise(cls, block)
    ref = [(shapely.geometry.shape(g), int(v)) for g, v in rasterio.features.shapes(cls, connectivity=4) if v != NODATA]
    assert len(polys) == len(ref)
    assert shapely.is_valid(polys.geoms).all()
    assert set(shapely.get_type_id(polys.geoms)) == {3}  # all Polygon
    # per class: identical pixel counts and exactly the same covered area
    for c in range(6):
        mine = polys.geoms[polys.classes == c]
        assert polys.pixels[polys.classes == c].sum() == (cls == c).sum()
        assert shapely.area(mine).sum() == pytest.approx((cls == c).sum(), abs=1e-9)
        theirs = shapely.union_all([g for g, v in ref if v == c])
        assert shapely.symmetric_difference(shapely.union_all(mine), theirs).area == pytest.approx(0, abs=1e-9)
    # no overlaps: areas add up to the area of the union
    assert shapely.union_all(polys.geoms).area == pytest.approx(shapely.area(polys.geoms).sum(), abs=1e-6)


def test_regions_cut_by_seams_are_merged():
    cls = np.zeros((40, 40), np.uint8)
    cls[10:30, 10:30] = 1  # one square spanning four 20-px blocks
    polys = blockwise(cls, 20)
    assert len(polys) == 2
    square = polys.geoms[polys.classes == 1][0]
    assert square.equals(shapely.box(10, 10, 30, 30))
    assert len(square.exterior.coords) == 5  # seam vertices removed


def test_to_crs_and_planar_measure():
    cls = np.zeros((4, 6), np.uint8)
    cls[1:3, 1:4] = 2
    polys = blockwise(cls, 100)
    t = Affine(0.5, 0, 500000.0, 0, -0.5, 5800000.0)
    geoms = to_crs(polys.geoms, t)
    area, perim, method = measure(geoms, CRS.from_epsg(32633))
    assert method == "planar"
    i = int(np.flatnonzero(polys.classes == 2)[0])
    assert area[i] == pytest.approx(6 * 0.25)
    assert perim[i] == pytest.approx(2 * (1.5 + 1.0))
    assert geoms[i].bounds == (500000.5, 5799998.5, 500002.0, 5799999.5)
    assert all(g.exterior.is_ccw and not any(r.is_ccw for r in g.interiors) for g in geoms)


def test_geodesic_measure_for_geographic_crs():
    # a 0.01 x 0.01 degree cell at the equator is about 1113 m x 1106 m
    g = np.array([shapely.box(0, 0, 0.01, 0.01)], dtype=object)
    area, _, method = measure(g, CRS.from_epsg(4326))
    assert method == "geodesic"
    assert area[0] == pytest.approx(1113.2 * 1105.7, rel=2e-3)


def sieved(cls: np.ndarray, b: int, min_pixels: int) -> np.ndarray:
    """Sieve a class raster processed in blocks of `b` pixels, then relabel it."""
    h, w = cls.shape
    parts, labels = {}, {}
    for by in range((h + b - 1) // b):
        for bx in range((w + b - 1) // b):
            r = Rect(by * b, bx * b, min((by + 1) * b, h), min((bx + 1) * b, w))
            parts[(by, bx)] = polygonize_block(
                cls[r.slices()], cls[r.slices()], r, (by, bx), geometry=False, adjacency=True
            )
            labels[(by, bx)] = label_regions(cls[r.slices()])[0]
    luts = sieve(parts, min_pixels)
    out = cls.copy()
    for k, p in parts.items():
        out[p.core.slices()] = luts[k][labels[k]]
    return out


def test_sieve_absorbs_into_the_longest_shared_edge():
    cls = np.zeros((10, 10), np.uint8)
    cls[:, 5:] = 1
    cls[4, 4] = 3  # touches class 0 on three sides, class 1 on one
    cls[0, 9] = 2  # corner pixel: class 1 on two sides
    out = sieved(cls, 100, 2)
    expected = cls.copy()
    expected[4, 4], expected[0, 9] = 0, 1
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("min_pixels", [2, 9, 40])
def test_sieve_is_block_invariant_and_leaves_nothing_small(min_pixels):
    cls = class_raster(150, 131, seed=4)
    whole = sieved(cls, 1000, min_pixels)
    for b in (17, 50):
        np.testing.assert_array_equal(sieved(cls, b, min_pixels), whole)
    assert (whole == NODATA).sum() == (cls == NODATA).sum() and (whole[cls == NODATA] == NODATA).all()
    labels, region_class = label_regions(whole)
    sizes = np.bincount(labels.ravel())[1:]
    for i in np.flatnonzero(sizes < min_pixels):
        ring = ndimage.binary_dilation(labels == i + 1, structure=ndimage.generate_binary_structure(2, 1))
        assert set(np.unique(whole[ring & (labels != i + 1)]).tolist()) <= {NODATA}  # only islands in nodata
    assert len(region_class) < len(label_regions(cls)[1])


@pytest.mark.parametrize("block", [17, 64])
def test_fast_path_without_labels_matches_the_labelled_path(block):
    """polygonize_block without confidence skips labelling; both must describe the same regions."""
    cls = class_raster(150, 131, seed=7)
    h, w = cls.shape
    fast, slow = {}, {}
    for by in range((h + block - 1) // block):
        for bx in range((w + block - 1) // block):
            r = Rect(by * block, bx * block, min((by + 1) * block, h), min((bx + 1) * block, w))
            f = polygonize_block(cls[r.slices()], None, r, (by, bx))
            s = polygonize_block(cls[r.slices()], np.zeros_like(cls[r.slices()]), r, (by, bx))
            order = np.argsort(f.anchor)
            sorder = np.argsort(s.anchor)
            np.testing.assert_array_equal(f.anchor[order], s.anchor[sorder])
            np.testing.assert_array_equal(f.classes[order], s.classes[sorder])
            np.testing.assert_array_equal(f.pixels[order], s.pixels[sorder])
            assert shapely.equals(f.geoms[order], s.geoms[sorder]).all()
            # edge labels name the same regions (numbering differs between the two paths)
            rank_f = np.zeros(len(f) + 1, int)
            rank_f[order + 1] = np.arange(1, len(f) + 1)
            rank_s = np.zeros(len(s) + 1, int)
            rank_s[sorder + 1] = np.arange(1, len(s) + 1)
            for side in ("top", "bottom", "left", "right"):
                np.testing.assert_array_equal(rank_f[f.edges[side]], rank_s[s.edges[side]])
            fast[(by, bx)], slow[(by, bx)] = f, s
    a, b = merge_blocks(fast), merge_blocks(slow)
    np.testing.assert_array_equal(a.anchor, b.anchor)
    assert shapely.equals(a.geoms, b.geoms).all()


@pytest.mark.parametrize("renumbered", [False, True])
def test_label_regions_are_each_class_s_connected_components_in_raster_order(monkeypatch, renumbered):
    """One-pass labelling gives the same regions as labelling every class mask with scipy."""
    import cc3d

    import geoseg.vectorize as vec

    if renumbered:  # a labeller numbering regions in another order must be renumbered, not trusted
        label = cc3d.connected_components

        def shuffled(data, **kw):
            lab = label(data, **kw)
            perm = np.random.default_rng(0).permutation(int(lab.max())) + 1
            return np.concatenate([[0], perm]).astype(lab.dtype)[lab]

        monkeypatch.setattr(vec.cc3d, "connected_components", shuffled)
    cls = class_raster(150, 131, seed=3)
    labels, region_class = label_regions(cls)
    assert labels.dtype == np.int32 and (labels == 0).sum() == (cls == NODATA).sum()
    n = 0
    for c in range(6):
        ref, k = ndimage.label(cls == c, structure=ndimage.generate_binary_structure(2, 1))
        n += k
        pairs = np.unique(np.column_stack([ref[ref > 0], labels[ref > 0]]), axis=0)
        assert len(pairs) == k == len(np.unique(pairs[:, 1]))  # one label per scipy region, and back
        assert (region_class[pairs[:, 1] - 1] == c).all()
    assert len(region_class) == n == labels.max()
    firsts = [np.flatnonzero(labels.ravel() == i)[0] for i in range(1, n + 1)]
    assert firsts == sorted(firsts)  # numbered in raster order of their first pixel
