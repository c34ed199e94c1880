"""geoseg's outputs as real clients see them: GDAL's command-line tools, rio-cogeo and headless QGIS.

One small synthetic scene is run once per module; every test reads its outputs
with an external program. GDAL and QGIS come from Debian packages (``gdal-bin``,
``python3-gdal``, ``python3-qgis``, ``qgis-providers``; ``.ci/run`` installs them
where it can); each test skips with the reason when its program is absent.
QGIS runs in Debian's ``/usr/bin/python3`` (the project's Python cannot import
``qgis``) from a helper script that prints one JSON dict.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS

from geoseg.config import RunConfig
from geoseg.pipeline import RunResult, run
from geoseg.predict.checkpoint import init_checkpoint
from geoseg.synthetic import SceneSpec, write_scene

#: The ISPRS class table every client must show: id -> (name, colour).
ISPRS_CLASSES = {
    0: ("impervious surfaces", "#ffffff"),
    1: ("building", "#0000ff"),
    2: ("low vegetation", "#00ffff"),
    3: ("tree", "#00ff00"),
    4: ("car", "#ffff00"),
    5: ("clutter", "#ff0000"),
}
LANDCOVER_FIELDS = {"class_id", "class_name", "area_m2", "perimeter_m", "mean_confidence"}
SYSTEM_PYTHON = "/usr/bin/python3"
#: GDAL/OGR diagnostics on stderr ("Warning 1: ...", "ERROR 1: ...").
GDAL_DIAGNOSTIC = re.compile(r"^(Warning|ERROR) \d+:", re.MULTILINE)
#: Where the reviewer finds the QGIS rendering after a run.
REVIEW_PNG = Path("/tmp/qgis_render.png")


def rgb(hex_colour: str) -> tuple[int, int, int]:
    h = hex_colour.lstrip("#")
    return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)


def system_env() -> dict[str, str]:
    """The environment for Debian's GDAL and Python, without the venv's GDAL/PROJ/Python settings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"GDAL_DATA", "PROJ_LIB", "PROJ_DATA", "GDAL_DRIVER_PATH", "PYTHONPATH", "PYTHONHOME"}
    }
    env.pop("VIRTUAL_ENV", None)
    return env


def run_tool(args: list[str], *, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command-line client; by default require success and no GDAL warnings or errors on stderr."""
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=system_env(), check=False)
    if check:
        assert proc.returncode == 0, f"{' '.join(args)} exited {proc.returncode}:\n{proc.stderr}{proc.stdout}"
        diagnostics = [line for line in proc.stderr.splitlines() if GDAL_DIAGNOSTIC.match(line)]
        assert not diagnostics, f"{' '.join(args)} complained:\n" + "\n".join(diagnostics)
    return proc


needs_gdal_cli = pytest.mark.skipif(
    not (shutil.which("gdalinfo") and shutil.which("ogrinfo")),
    reason="GDAL command-line tools (gdalinfo, ogrinfo) are not on PATH; install Debian's gdal-bin",
)


@functools.cache
def qgis_missing() -> str | None:
    """Why headless QGIS cannot run here, or None when it can."""
    if not Path(SYSTEM_PYTHON).exists():
        return f"{SYSTEM_PYTHON} is absent (QGIS's Python bindings come with the system Python)"
    try:
        proc = subprocess.run(
            [SYSTEM_PYTHON, "-c", "import qgis.core"],
            capture_output=True,
            text=True,
            timeout=60,
            env=system_env(),
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{SYSTEM_PYTHON} -c 'import qgis.core' failed: {exc}"
    if proc.returncode:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return f"{SYSTEM_PYTHON} cannot import qgis ({last}); install Debian's python3-qgis and qgis-providers"
    return None


@functools.cache
def validate_gpkg_script() -> Path | None:
    """GDAL's validate_gpkg.py sample, wherever this system's GDAL put it."""
    found = shutil.which("validate_gpkg.py")
    if found:
        return Path(found)
    places = [*Path("/usr/lib").glob("python3*/dist-packages/osgeo_utils/samples")]
    places += [Path("/usr/share/gdal"), Path("/usr/share/doc/python3-gdal"), Path("/usr/local/share/gdal")]
    for place in places:
        hits = sorted(place.rglob("validate_gpkg.py")) if place.is_dir() else []
        if hits:
            return hits[0]
    return None


def rio_command() -> list[str] | None:
    """The ``rio`` CLI of this Python's environment (rio-cogeo adds ``rio cogeo``)."""
    beside = Path(sys.executable).with_name("rio")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("rio")
    return [found] if found else None


# -- the outputs under test ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def styled_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained FCN-8s / ResNet-18 whose seed makes it predict several classes on the scene.

    The conftest ``fcn_model`` (seed 1) predicts only low vegetation and car
    here; seed 6 gives impervious surfaces, building, tree and car, so the
    rendering shows the building blue and the tree green.
    """
    path = tmp_path_factory.mktemp("client-model") / "fcn18-seed6.pt"
    init_checkpoint(path, arch="fcn", encoder="resnet18", in_channels=3, seed=6)
    return path


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory, styled_model: Path) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("clients")
    scene = root / "scene.tif"
    write_scene(SceneSpec(width=900, height=700, pixel_size=0.1, seed=3), scene)
    res: RunResult = run(
        RunConfig(scene=scene, model=styled_model, outdir=root / "out", tile=256, overlap=32, confidence=True)
    )
    with rasterio.open(scene) as ds:
        crs, transform, size = ds.crs, ds.transform, (ds.width, ds.height)
    return {"res": res, "scene": scene, "crs": crs, "transform": transform, "size": size, **res.outputs}


# -- GDAL command line ---------------------------------------------------------------------------


def gdalinfo(path: Path) -> dict[str, Any]:
    return json.loads(run_tool(["gdalinfo", "-json", str(path)]).stdout)


@needs_gdal_cli
def test_gdalinfo_reads_class_cog(outputs: dict[str, Any]) -> None:
    """The class raster is a paletted COG with the ISPRS colours, category names, nodata 255 and overviews."""
    info = gdalinfo(outputs["classes"])
    assert info["driverShortName"] == "GTiff"
    assert info["metadata"]["IMAGE_STRUCTURE"]["LAYOUT"] == "COG"
    assert info["size"] == list(outputs["size"])
    assert CRS.from_wkt(info["coordinateSystem"]["wkt"]) == outputs["crs"]
    assert info["geoTransform"] == pytest.approx(list(outputs["transform"].to_gdal()))
    assert any(f.endswith(".classes.tif.aux.xml") for f in info["files"]), info["files"]
    (band,) = info["bands"]
    assert band["type"] == "Byte"
    assert band["noDataValue"] == 255
    assert band["colorInterpretation"] == "Palette"
    assert band.get("overviews"), "no overviews in the class COG"
    entries = band["colorTable"]["entries"]
    for cid, (_, colour) in ISPRS_CLASSES.items():
        assert tuple(entries[cid]) == (*rgb(colour), 255), f"colour table entry {cid}"
    assert band.get("categories", [])[: len(ISPRS_CLASSES)] == [n for n, _ in ISPRS_CLASSES.values()]


@needs_gdal_cli
def test_gdalinfo_reads_confidence_cog(outputs: dict[str, Any]) -> None:
    info = gdalinfo(outputs["confidence"])
    assert info["driverShortName"] == "GTiff"
    assert info["metadata"]["IMAGE_STRUCTURE"]["LAYOUT"] == "COG"
    assert info["size"] == list(outputs["size"])
    assert CRS.from_wkt(info["coordinateSystem"]["wkt"]) == outputs["crs"]
    (band,) = info["bands"]
    assert band.get("overviews"), "no overviews in the confidence COG"


def ogrinfo_layers(text: str) -> dict[str, dict[str, Any]]:
    """Parse ``ogrinfo -so`` text (GDAL 3.6's ogrinfo has no ``-json``): name -> geometry, count, srs, fields."""
    layers: dict[str, dict[str, Any]] = {}
    for block in re.split(r"^Layer name: ", text, flags=re.MULTILINE)[1:]:
        name, _, body = block.partition("\n")
        layer: dict[str, Any] = {"fields": {}}
        if m := re.search(r"^Geometry: (.+)$", body, re.MULTILINE):
            layer["geometry"] = m.group(1).strip()
        if m := re.search(r"^Feature Count: (\d+)$", body, re.MULTILINE):
            layer["count"] = int(m.group(1))
        if m := re.search(r"^Geometry Column = (\S+)$", body, re.MULTILINE):
            layer["geometry_column"] = m.group(1)
        if m := re.search(r"^Layer SRS WKT:\n(.*?)\n(?=Data axis|FID Column|Geometry Column|\w+: )", body, re.S | re.M):
            layer["srs"] = m.group(1).strip()
        columns = re.split(r"^(?:FID|Geometry) Column = .*$", body, flags=re.MULTILINE)[-1]
        for m in re.finditer(r"^(\w+): (\S+) \(", columns, re.MULTILINE):
            layer["fields"][m.group(1)] = m.group(2)
        layers[name.strip()] = layer
    return layers


@needs_gdal_cli
def test_ogrinfo_reads_geopackage(outputs: dict[str, Any]) -> None:
    """Layer ``landcover`` (Polygon, one feature per polygon, the documented fields), tables classes and runs."""
    gpkg = str(outputs["landcover"])
    listing = run_tool(["ogrinfo", "-ro", "-so", gpkg]).stdout
    names = dict(re.findall(r"^\d+: (\S+) \(([^)]*)\)$", listing, re.MULTILINE))
    assert names.get("landcover") == "Polygon", listing
    assert {"classes", "runs"} <= names.keys(), listing
    layers = ogrinfo_layers(run_tool(["ogrinfo", "-ro", "-so", gpkg, "landcover", "classes", "runs"]).stdout)
    lc = layers["landcover"]
    assert lc["geometry"] == "Polygon"
    assert lc["count"] == outputs["res"].n_polygons
    assert lc["fields"].keys() >= LANDCOVER_FIELDS, lc["fields"]
    assert lc["fields"]["class_id"].startswith("Integer"), "class_id must be an integer field (QGIS categories)"
    assert CRS.from_wkt(lc["srs"]) == outputs["crs"]
    assert layers["classes"]["count"] == len(ISPRS_CLASSES)
    assert {"class_id", "class_name"} <= layers["classes"]["fields"].keys()
    assert layers["runs"]["count"] >= 1


@needs_gdal_cli
def test_ogr_can_open_layer_styles(outputs: dict[str, Any]) -> None:
    """QGIS reads the embedded style through OGR's ``layer_styles`` layer, so OGR must be able to open it.

    GDAL's GeoPackage driver does not expose a table that is missing from
    ``gpkg_contents``; QGIS then finds no style (and tries to create the table).
    """
    gpkg = str(outputs["landcover"])
    proc = run_tool(["ogrinfo", "-ro", "-so", gpkg, "layer_styles"], check=False)
    assert proc.returncode == 0, (
        f"OGR cannot open the layer_styles table:\n{proc.stdout.strip()}\n{proc.stderr.strip()}"
    )
    styles = ogrinfo_layers(proc.stdout)["layer_styles"]
    assert styles["count"] >= 1
    assert {"f_table_schema", "f_table_name", "f_geometry_column", "styleQML", "useAsDefault"} <= styles[
        "fields"
    ].keys()
    rows = run_tool(
        [
            "ogrinfo",
            "-ro",
            "-q",
            gpkg,
            "-sql",
            "SELECT f_geometry_column FROM layer_styles"
            " WHERE f_table_name = 'landcover' AND f_table_schema = '' AND useAsDefault = 1",
        ]
    ).stdout
    assert re.search(r"f_geometry_column \(String\) = geom$", rows, re.MULTILINE), rows


@needs_gdal_cli
def test_ogrinfo_spatialite_says_geometries_valid(outputs: dict[str, Any]) -> None:
    gpkg = str(outputs["landcover"])
    probe = run_tool(
        ["ogrinfo", "-ro", "-q", gpkg, "-sql", "SELECT spatialite_version()", "-dialect", "SQLite"], check=False
    )
    if probe.returncode or "spatialite_version" not in probe.stdout:
        pytest.skip(f"this GDAL's SQLite dialect has no SpatiaLite functions (ST_IsValid): {probe.stderr.strip()}")
    sql = "SELECT COUNT(*) AS n_total, SUM(CASE WHEN ST_IsValid(geom) = 1 THEN 1 ELSE 0 END) AS n_valid FROM landcover"
    out = run_tool(["ogrinfo", "-ro", "-q", gpkg, "-sql", sql, "-dialect", "SQLite"]).stdout
    total = int(re.search(r"n_total \(\w+\) = (\d+)", out).group(1))  # type: ignore[union-attr]
    valid = int(re.search(r"n_valid \(\w+\) = (\d+)", out).group(1))  # type: ignore[union-attr]
    assert total == outputs["res"].n_polygons
    assert valid == total, f"{total - valid} of {total} polygons are invalid according to SpatiaLite"


def test_validate_gpkg(outputs: dict[str, Any]) -> None:
    """GDAL's GeoPackage validator (extra checks, warnings as errors) accepts the file."""
    script = validate_gpkg_script()
    if script is None:
        pytest.skip("GDAL's validate_gpkg.py was not found (Debian's python3-gdal ships it)")
    python = SYSTEM_PYTHON if Path(SYSTEM_PYTHON).exists() else sys.executable
    proc = run_tool(
        [python, str(script), "-k", "--extra", "--warning-as-error", str(outputs["landcover"])], check=False
    )
    assert proc.returncode == 0, f"validate_gpkg.py rejected the GeoPackage:\n{proc.stdout}{proc.stderr}"


# -- rio-cogeo -----------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["classes", "confidence"])
def test_rio_cogeo_validate(outputs: dict[str, Any], key: str) -> None:
    """``rio cogeo validate --strict`` (warnings count as errors) calls the file a valid COG.

    The command exits 0 either way, so its message is checked.
    """
    rio = rio_command()
    if rio is None:
        pytest.skip("the rio command (rasterio + rio-cogeo, a dev dependency) is not installed")
    path = str(outputs[key])
    proc = subprocess.run(
        [*rio, "cogeo", "validate", "--strict", path], capture_output=True, text=True, timeout=60, check=False
    )
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text
    assert f"{path} is a valid cloud optimized GeoTIFF" in text, text


# -- headless QGIS -------------------------------------------------------------------------------

QGIS_PROBE = textwrap.dedent(
    '''
    """Open geoseg's outputs in headless QGIS and print what QGIS sees as one JSON dict."""
    import json
    import os
    import sys
    import traceback

    gpkg, cog, png, raster_png, profile = sys.argv[1:6]
    out = {"ok": False, "messages": []}


    def hexa(colour):
        return colour.name().lower()


    def jsonable(value):
        return value if isinstance(value, (int, float, str, bool, type(None))) else str(value)


    try:
        from qgis.core import (
            Qgis,
            QgsApplication,
            QgsMapRendererSequentialJob,
            QgsMapSettings,
            QgsRasterLayer,
            QgsRenderContext,
            QgsVectorLayer,
        )
        from qgis.PyQt.QtCore import QSize
        from qgis.PyQt.QtGui import QColor

        app = QgsApplication([], False, profile)
        QgsApplication.setPrefixPath("/usr", True)
        app.initQgis()
        QgsApplication.messageLog().messageReceived.connect(
            lambda msg, tag, level: out["messages"].append({"tag": tag, "level": int(level), "message": msg})
        )
        out["qgis_version"] = Qgis.QGIS_VERSION

        # -- the polygons and their embedded default style
        lc = QgsVectorLayer(gpkg + "|layername=landcover", "landcover", "ogr")
        v = out["vector"] = {"valid": lc.isValid()}
        v["renderer_on_open"] = lc.renderer().type() if lc.renderer() else None
        message, ok = lc.loadDefaultStyle()
        v["default_style_loaded"], v["default_style_message"] = bool(ok), message
        renderer = lc.renderer()
        v["renderer"] = renderer.type()
        v["geometry_type"] = int(lc.geometryType())
        v["feature_count"] = lc.featureCount()
        v["crs"] = lc.crs().authid()
        v["fields"] = {f.name(): f.typeName() for f in lc.fields()}
        if renderer.type() == "categorizedSymbol":
            v["class_attribute"] = renderer.classAttribute()
            v["categories"] = [
                {
                    "value": jsonable(c.value()),
                    "label": c.label(),
                    "color": hexa(c.symbol().color()),
                    "render": c.renderState(),
                }
                for c in renderer.categories()
            ]
        # Every feature must be GEOS-valid and get a symbol (category values must match the field's values).
        ctx = QgsRenderContext()
        renderer.startRender(ctx, lc.fields())
        invalid, unsymbolised, n = [], [], 0
        for feature in lc.getFeatures():
            n += 1
            geom = feature.geometry()
            if geom.isNull() or not geom.isGeosValid():
                invalid.append(feature.id())
            if renderer.symbolForFeature(feature, ctx) is None:
                unsymbolised.append(feature.id())
        renderer.stopRender(ctx)
        v.update(features_read=n, n_invalid=len(invalid), invalid_fids=invalid[:20])
        v.update(n_unsymbolised=len(unsymbolised), unsymbolised_fids=unsymbolised[:20])

        # -- the class raster: colour table and .qml sidecar
        ras = QgsRasterLayer(cog, "classes", "gdal")
        r = out["raster"] = {"valid": ras.isValid(), "crs": ras.crs().authid()}

        def palette(layer):
            ren = layer.renderer()
            info = {"type": ren.type() if ren else None}
            if ren is not None and ren.type() == "paletted":
                classes = ren.classes()
                info["n_classes"] = len(classes)
                info["classes"] = [
                    {"value": c.value, "color": hexa(c.color), "label": c.label} for c in classes[:16]
                ]
            return info

        r["on_open"] = palette(ras)
        message, ok = ras.loadDefaultStyle()
        r["default_style_loaded"], r["default_style_message"] = bool(ok), message
        r["after_default_style"] = palette(ras)

        # -- render: polygons over the raster, then the raster alone
        def render(layers, path):
            settings = QgsMapSettings()
            settings.setLayers(layers)
            settings.setDestinationCrs(lc.crs())
            settings.setExtent(lc.extent())
            settings.setOutputSize(QSize(800, 600))
            settings.setBackgroundColor(QColor(128, 128, 128))
            job = QgsMapRendererSequentialJob(settings)
            job.start()
            job.waitForFinished()
            image = job.renderedImage()
            return {"saved": bool(image.save(path, "PNG")), "errors": [e.message for e in job.errors()]}

        out["render"] = render([lc, ras], png)
        out["render_raster"] = render([ras], raster_png)
        out["ok"] = True
    except Exception:
        out["error"] = traceback.format_exc()

    print(json.dumps(out), flush=True)
    sys.stderr.flush()
    os._exit(0)  # QGIS may crash while tearing down; the report is already out
    '''
)


@pytest.fixture(scope="module")
def qgis_report(outputs: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run the QGIS probe once; its JSON report plus the paths of the two renderings and its stderr."""
    reason = qgis_missing()
    if reason:
        pytest.skip(reason)
    work = tmp_path_factory.mktemp("qgis")
    script = work / "qgis_probe.py"
    script.write_text(QGIS_PROBE)
    png, raster_png = work / "qgis_render.png", work / "qgis_render_raster.png"
    # Keep QGIS's settings, caches and profile out of the home folder.
    xdg = {f"XDG_{kind}_HOME": str(work / f"xdg-{kind.lower()}") for kind in ("CONFIG", "CACHE", "DATA")}
    xdg["XDG_RUNTIME_DIR"] = str(work / "xdg-runtime")
    for folder in xdg.values():
        Path(folder).mkdir(mode=0o700)
    env = system_env() | xdg | {"QT_QPA_PLATFORM": "offscreen"}
    args = [
        SYSTEM_PYTHON,
        str(script),
        str(outputs["landcover"]),
        str(outputs["classes"]),
        str(png),
        str(raster_png),
        str(work / "profile"),
    ]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120, env=env, check=False)
    lines = proc.stdout.strip().splitlines()
    assert lines, f"the QGIS probe printed nothing (exit {proc.returncode}):\n{proc.stderr}"
    report = json.loads(lines[-1])
    assert report["ok"], f"the QGIS probe failed:\n{report.get('error')}\n{proc.stderr}"
    if png.exists():
        with contextlib.suppress(OSError):  # only a convenience for reviewers
            shutil.copyfile(png, REVIEW_PNG)
    return {**report, "png": png, "raster_png": raster_png, "stderr": proc.stderr}


def test_qgis_loads_embedded_vector_style(qgis_report: dict[str, Any]) -> None:
    """QGIS applies the GeoPackage's default style: categories on the integer class_id, ISPRS colours."""
    v = qgis_report["vector"]
    assert v["valid"]
    assert v["geometry_type"] == 2, "QGIS does not see polygons"
    assert v["default_style_loaded"], (
        f"QGIS found no default style in the GeoPackage (message {v['default_style_message']!r}, "
        f"log {qgis_report['messages']})"
    )
    assert v["renderer_on_open"] == "categorizedSymbol", "the default style is not applied when the layer opens"
    assert v["renderer"] == "categorizedSymbol"
    assert v["class_attribute"] == "class_id"
    assert v["fields"]["class_id"].lower().startswith("integer")
    cats = v["categories"]
    # QGIS 3.22 keeps category values as strings; they must be the field's integers ("1", not "1.0").
    assert [str(c["value"]) for c in cats] == [str(i) for i in ISPRS_CLASSES]
    assert [int(c["value"]) for c in cats] == list(ISPRS_CLASSES)
    assert [c["label"] for c in cats] == [n for n, _ in ISPRS_CLASSES.values()]
    assert [c["color"] for c in cats] == [c for _, c in ISPRS_CLASSES.values()]
    assert all(c["render"] for c in cats)
    assert v["n_unsymbolised"] == 0, f"{v['n_unsymbolised']} features match no category: {v['unsymbolised_fids']}"


def test_qgis_reads_all_features_valid(qgis_report: dict[str, Any], outputs: dict[str, Any]) -> None:
    v = qgis_report["vector"]
    assert v["feature_count"] == v["features_read"] == outputs["res"].n_polygons
    assert v["n_invalid"] == 0, f"GEOS-invalid polygons (fids): {v['invalid_fids']}"
    assert CRS.from_user_input(v["crs"]) == outputs["crs"]


def test_qgis_shows_class_raster_paletted(qgis_report: dict[str, Any], outputs: dict[str, Any]) -> None:
    """The class COG opens paletted with the six classes (from the .qml sidecar), before and after loadDefaultStyle."""
    r = qgis_report["raster"]
    assert r["valid"]
    assert CRS.from_user_input(r["crs"]) == outputs["crs"]
    assert r["default_style_loaded"], f"QGIS did not load the .qml sidecar: {r['default_style_message']!r}"
    for stage in ("on_open", "after_default_style"):
        pal = r[stage]
        assert pal["type"] == "paletted", f"{stage}: renderer {pal['type']}"
        assert pal["n_classes"] == len(ISPRS_CLASSES), f"{stage}: legend lists {pal['n_classes']} values"
        assert [(int(c["value"]), c["color"], c["label"]) for c in pal["classes"]] == [
            (i, colour, name) for i, (name, colour) in ISPRS_CLASSES.items()
        ], stage


def test_qgis_logs_no_warnings(qgis_report: dict[str, Any]) -> None:
    """Neither QGIS's message log nor GDAL (on the probe's stderr) complains about the outputs."""
    complaints = [m for m in qgis_report["messages"] if m["level"] >= 1]  # Qgis.Warning and worse
    assert not complaints, complaints
    gdal = [line for line in qgis_report["stderr"].splitlines() if GDAL_DIAGNOSTIC.match(line)]
    assert not gdal, gdal


def read_png(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB of a PNG (rasterio's PNG driver; it is not georeferenced)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(path) as ds:
            return np.moveaxis(ds.read()[:3], 0, -1)


def colour_pixels(img: np.ndarray, colour: str, tol: int = 6) -> int:
    return int((np.abs(img.astype(np.int16) - rgb(colour)).max(axis=-1) <= tol).sum())


def test_qgis_renders_styled_map(qgis_report: dict[str, Any], outputs: dict[str, Any]) -> None:
    """The styled polygons over the paletted raster render in the class colours, matching the raster alone."""
    for key in ("render", "render_raster"):
        assert qgis_report[key]["saved"], f"{key}: QGIS could not save the PNG"
        assert not qgis_report[key]["errors"], qgis_report[key]["errors"]
    img, ras = read_png(qgis_report["png"]), read_png(qgis_report["raster_png"])
    assert img.shape == (600, 800, 3)
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 5, "the rendering is (nearly) a single colour"
    res = outputs["res"]
    total = max(sum(res.class_pixels.values()), 1)
    present = {cid: name for cid, (name, _) in ISPRS_CLASSES.items() if res.class_pixels.get(name, 0) / total >= 0.01}
    assert {"building", "tree"} <= set(present.values()), (
        f"the model predicted {res.class_pixels}; the styled_model seed was chosen to give building and tree"
    )
    for cid, name in present.items():
        colour = ISPRS_CLASSES[cid][1]
        expected = res.class_pixels[name] / total * img.shape[0] * img.shape[1]
        n = colour_pixels(img, colour)
        assert n >= 0.25 * expected, f"{name} ({colour}): {n} pixels in the rendering, ~{expected:.0f} expected"
        assert colour_pixels(ras, colour) >= 0.25 * expected, f"{name} ({colour}) missing in the raster rendering"
    # The polygons cover the raster exactly: apart from their thin outlines the two renderings agree.
    same = (np.abs(img.astype(np.int16) - ras.astype(np.int16)).max(axis=-1) <= 6).mean()
    assert same >= 0.85, f"the polygon and raster renderings agree on only {same:.0%} of the pixels"
