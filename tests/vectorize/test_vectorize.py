import numpy as np
import pytest
import rasterio.features
import shapely
from affine import Affine
from pyproj import CRS
from scipy import ndimage

from geoseg.classes import ISPRS, NODATA
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

    import geoseg.vectorize.polygons as vec

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


# -- empty cells (all nodata) -------------------------------------------------------------------

CELL = 64  # vector cells in these tests (the real VECTOR_CELL is 2048): a 3 x 4 grid of cells
H, W = 3 * CELL - 20, 4 * CELL - 9  # a partial last row and column, as in real scenes
PIXEL_AREA = 0.25  # write_tif's 0.5 m pixels

EMPTY_CELLS = {
    "first": [(0, 0)],
    "last": [(2, 3)],
    "left column": [(y, 0) for y in range(3)],
    "right column": [(y, 3) for y in range(3)],
    "whole row": [(1, x) for x in range(4)],
    "last row": [(2, x) for x in range(4)],
    "all but one": [(y, x) for y in range(3) for x in range(4) if (y, x) != (1, 2)],
    "checkerboard": [(y, x) for y in range(3) for x in range(4) if (y + x) % 2],
}


def with_empty_cells(cells: list[tuple[int, int]], seed: int = 11) -> np.ndarray:
    cls = class_raster(H, W, seed=seed)
    cls[: H // 5, : W // 4] = 2  # no nodata corner here: only the named cells are empty
    for y, x in cells:
        cls[y * CELL : (y + 1) * CELL, x * CELL : (x + 1) * CELL] = NODATA
    return cls


@pytest.fixture
def small_cells(monkeypatch):
    import geoseg.vectorize.cells

    monkeypatch.setattr(geoseg.vectorize.cells, "VECTOR_CELL", CELL)
    return CELL


@pytest.mark.parametrize("labelled", [False, True])
def test_a_block_without_valid_pixels_gives_no_polygons_and_no_edges(labelled):
    from geoseg.vectorize import clean_block, split_block

    cls = np.full((30, 40), NODATA, np.uint8)
    bp = polygonize_block(cls, np.zeros_like(cls) if labelled else None, Rect(60, 80, 90, 120), (2, 2))
    assert len(bp) == 0 and all((e == 0).all() for e in bp.edges.values())
    for cleaned in (bp, clean_block(bp, 1.0, 16)):
        pieces, inside = split_block(cleaned)
        assert len(pieces) == 0 and len(inside) == 0
        assert all((e == 0).all() and len(e) == len(bp.edges[k]) for k, e in pieces.edges.items())


@pytest.mark.parametrize("where", list(EMPTY_CELLS))
@pytest.mark.parametrize("cleaning", ["exact", "default"])
def test_vectorize_raster_with_empty_cells(small_cells, make_tif, tmp_path, where, cleaning):
    """A cell holding no valid pixel, wherever it lies, must not end the run (it raised IndexError)."""
    import pyogrio

    from geoseg.vectorize import vectorize_raster

    cls = with_empty_cells(EMPTY_CELLS[where])
    path = make_tif(cls, nodata=NODATA)
    kw = {"min_area": 0, "simplify": 0} if cleaning == "exact" else {}
    res = vectorize_raster(path, tmp_path / "out.gpkg", workers=1, **kw)
    df = pyogrio.read_dataframe(res.path, layer="landcover")
    geoms = df.geometry.values
    assert len(df) == res.n_polygons > 0 and shapely.is_valid(geoms).all()
    valid_area = (cls != NODATA).sum() * PIXEL_AREA
    assert shapely.union_all(geoms).area == pytest.approx(valid_area, rel=1e-9)  # no gaps
    assert shapely.area(geoms).sum() == pytest.approx(valid_area, rel=1e-9)  # no overlaps
    reference = cls if cleaning == "exact" else sieved(cls, 1000, res.cleaning.min_pixels)
    for c in range(6):
        assert res.class_areas[ISPRS.names[c]] == pytest.approx((reference == c).sum() * PIXEL_AREA, rel=1e-12)
    if cleaning == "exact":
        ref = [v for _, v in rasterio.features.shapes(cls, connectivity=4) if v != NODATA]
        assert len(df) == len(ref)
        for c in range(6):
            assert df.area_m2[df.class_id == c].sum() == pytest.approx((cls == c).sum() * PIXEL_AREA, rel=1e-9)


def test_empty_cells_in_worker_processes(small_cells, make_tif, tmp_path):
    """Empty cells' results cross process boundaries (pickled) and give the same polygons as in-process."""
    import pyogrio

    from geoseg.vectorize import vectorize_raster

    path = make_tif(with_empty_cells(EMPTY_CELLS["checkerboard"] + EMPTY_CELLS["whole row"]), nodata=NODATA)
    one = vectorize_raster(path, tmp_path / "one.gpkg", workers=1)
    two = vectorize_raster(path, tmp_path / "two.gpkg", workers=2)
    a, b = (pyogrio.read_dataframe(r.path, layer="landcover") for r in (one, two))
    assert len(a) == len(b) > 0 and shapely.equals_exact(a.geometry.values, b.geometry.values, tolerance=0).all()
    assert one.class_areas == two.class_areas


def test_vectorize_cli_on_a_raster_with_a_collar_of_empty_cells(tmp_path):
    """At the real cell size (2048 px): only the middle of a 4608 x 2200 map holds classes."""
    from click.testing import CliRunner

    from geoseg.cli import main
    from tests.conftest import write_tif

    cls = np.full((2200, 4608), NODATA, np.uint8)
    cls[2100:2150, 2100:2400] = class_raster(50, 300, seed=2)  # in cells (1, 1) and (1, 2) only
    cls[2100:2150, 2100:2400][cls[2100:2150, 2100:2400] == NODATA] = 0
    path = write_tif(tmp_path / "collar.classes.tif", cls, nodata=NODATA)
    result = CliRunner().invoke(main, ["vectorize", str(path), "--min-area", "0", "--simplify", "0"])
    assert result.exit_code == 0, result.output
    assert "Land cover" in result.output and "polygons" in result.output
    import pyogrio

    df = pyogrio.read_dataframe(tmp_path / "collar.landcover.gpkg", layer="landcover")
    assert len(df) == sum(1 for _, v in rasterio.features.shapes(cls, connectivity=4) if v != NODATA)
    assert df.area_m2.sum() == pytest.approx((cls != NODATA).sum() * PIXEL_AREA, rel=1e-9)


def sparse_bigtiff(path, size: int, patch: tuple[int, int, int]) -> np.ndarray:
    """A tiled, sparse BigTIFF of `size`² pixels, all nodata but one square ``(row, col, side)`` of classes."""
    row, col, side = patch
    data = class_raster(side, side, seed=5)
    data[data == NODATA] = 1
    profile = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "count": 1,
        "dtype": "uint8",
        "nodata": NODATA,
        "crs": "EPSG:32633",
        "transform": Affine(0.5, 0, 500000.0, 0, -0.5, 5800000.0),
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
        "compress": "deflate",
        "BIGTIFF": "YES",
        "SPARSE_OK": "TRUE",
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1, window=rasterio.windows.Window(col, row, side, side))
    return data


@pytest.mark.parametrize(
    "size,patch",
    [
        (6144, (2560, 2560, 512)),  # 3 x 3 cells, only the middle one valid
        pytest.param(50_000, (30_000, 12_000, 512), marks=pytest.mark.slow),  # 25 x 25 cells
    ],
)
def test_sparse_bigtiff_with_one_valid_patch(tmp_path, size, patch):
    import pyogrio

    from geoseg.vectorize import vectorize_raster

    path = tmp_path / "sparse.classes.tif"
    data = sparse_bigtiff(path, size, patch)
    res = vectorize_raster(path, workers=2)
    df = pyogrio.read_dataframe(res.path, layer="landcover")
    assert shapely.is_valid(df.geometry.values).all()
    assert df.area_m2.sum() == pytest.approx(data.size * PIXEL_AREA, rel=1e-9)
    assert sum(res.class_areas.values()) == pytest.approx(data.size * PIXEL_AREA, rel=1e-12)
    x0, y0, x1, y1 = shapely.total_bounds(df.geometry.values)
    row, col, side = patch
    assert (x0, y1) == (500000.0 + 0.5 * col, 5800000.0 - 0.5 * row)  # in place on the scene grid
    assert (x1 - x0, y1 - y0) == (0.5 * side, 0.5 * side)


def test_run_cli_on_a_scene_whose_left_half_is_nodata(tmp_path, fcn_model):
    """The hostile-input sweep's scene: 4096 x 2048, nodata 0, left 2048 columns 0 (one empty vector cell)."""
    import json

    from click.testing import CliRunner

    from geoseg.cli import main
    from tests.conftest import smooth_image, write_tif

    img = np.zeros((3, 2048, 4096), np.uint8)
    img[:, :, 2048:] = np.maximum(smooth_image(2048, 2048, seed=3), 1)
    scene = write_tif(tmp_path / "halfnodata.tif", img, nodata=0)
    args = ["run", str(scene), "--model", str(fcn_model), "--tile", "256", "--overlap", "32", "-q"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    with rasterio.open(tmp_path / "halfnodata.classes.tif") as ds:
        classes = ds.read(1)
    assert (classes[:, :2048] == NODATA).all() and (classes[:, 2048:] != NODATA).all()
    report = json.loads((tmp_path / "halfnodata.run.json").read_text())
    for c in report["classes"]:  # the report's areas are the class COG's
        assert c["pixels"] == (classes == c["id"]).sum()
        assert c["area_m2"] == pytest.approx(c["pixels"] * PIXEL_AREA, abs=1e-3)
    import pyogrio

    df = pyogrio.read_dataframe(tmp_path / "halfnodata.landcover.gpkg", layer="landcover")
    assert shapely.total_bounds(df.geometry.values)[0] == 500000.0 + 0.5 * 2048  # nothing in the empty half
    assert df.area_m2.sum() == pytest.approx(2048 * 2048 * PIXEL_AREA, rel=1e-9)


@pytest.mark.parametrize("nodata", [255, None])
def test_vectorize_refuses_a_class_raster_without_a_classified_pixel(tmp_path, nodata):
    """An all-nodata class raster (a wrong file, a failed map) is one line and exit 1, not an empty layer."""
    from tests.conftest import invoke, write_tif

    path = write_tif(tmp_path / "empty.classes.tif", np.full((300, 200), NODATA, np.uint8), nodata=nodata)
    code, out = invoke("vectorize", path)
    assert code == 1 and "Traceback" not in out, out
    assert "empty.classes.tif has no classified pixels (all nodata); nothing to vectorize" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.classes.tif"]
