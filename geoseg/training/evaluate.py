"""``geoseg evaluate``: score a model under the ISPRS protocol by running the full pipeline on test images.

Each test image goes through :func:`geoseg.pipeline.run` exactly as a user's
scene would (tiling, blending, seams), with exact output (no mapping unit, no
simplification); its class raster is compared with the reference labels.

Every score says which reference it used (:data:`REFERENCES`):

- ``full``: the full labels, every labelled pixel;
- ``official eroded``: the dataset's eroded ("noBoundary") references, whose
  black object boundaries are ignored;
- ``geoseg 3-px erosion``: the full labels with a band of radius 3 px around
  every boundary ignored (:func:`geoseg.training.metrics.erode_boundaries`, the ISPRS
  recipe), for images without an official eroded reference.

The protocols are ``full`` and ``eroded``, each with ``all classes`` or ``no
clutter`` (clutter left out of the means and OA). ``eroded`` uses the official
references when every image has one and geoseg's erosion when none has. When
only some have, the two are never pooled: ``eroded (official)`` scores the
images with an official reference, and ``eroded (geoseg 3 px)`` scores every
image with geoseg's erosion (the primary protocol then).

The model is fed the bands it was trained on *by meaning* where the dataset
knows what its bands hold (ISPRS, synthetic scenes): an IRRG model evaluated on
Potsdam RGBIR tiles reads bands 4, 1, 2. Images without georeferencing (PNG
crops, Vaihingen tiles) run on a stand-in grid: EPSG:3857 at the origin, where
its scale is 1, with the model's pixel size; only the class raster is used.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import rasterio
from rasterio.transform import from_origin

from ..classes import NODATA
from ..errors import ConfigError
from ..tiling import DEFAULT_OVERLAP
from . import datasets
from .datasets import Sample, read_image, read_labels
from .datasets.samples import _open
from .metrics import ConfusionMatrix, Scores, erode_boundaries, plot_confusion

__all__ = [
    "REFERENCES",
    "REFERENCE_LABELS",
    "EvaluationResult",
    "Protocol",
    "dataset_samples",
    "default_overlap",
    "evaluate",
]

log = logging.getLogger(__name__)

Reference = Literal["full", "official", "computed"]
#: What each reference a score can use is, as reports and the terminal say it.
REFERENCES: dict[str, str] = {
    "full": "full labels",
    "official": "official eroded (noBoundary) references",
    "computed": "geoseg's 3-px erosion of the full labels",
}
#: The same, short, for table columns.
REFERENCE_LABELS: dict[str, str] = {
    "full": "full labels",
    "official": "official eroded",
    "computed": "geoseg 3-px erosion",
}
_EROSION_RADIUS = 3  # px, the ISPRS recipe
_CLUTTER = (5,)

#: progress(stage, done, total); stages "images" and those of :func:`geoseg.pipeline.run`.
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class Protocol:
    """One scoring protocol: the reference it uses, the classes it leaves out, and how many images it scored."""

    name: str
    reference: Reference
    exclude: tuple[int, ...]
    images: int

    @property
    def reference_text(self) -> str:
        return REFERENCES[self.reference]

    @property
    def reference_label(self) -> str:
        return REFERENCE_LABELS[self.reference]


@dataclass
class EvaluationResult:
    """Scores per protocol over all images, the protocols, per-image scores, and the files written."""

    scores: dict[str, Scores]
    primary: str
    per_image: list[dict[str, Any]] = field(default_factory=list)
    report: Path | None = None
    confusion_png: Path | None = None
    seconds: float = 0.0
    protocols: dict[str, Protocol] = field(default_factory=dict)


def default_overlap(tile: int) -> int:
    """The overlap used when none is given: a quarter of the tile, even, at most 64 px.

    Examples
    --------
    >>> default_overlap(512), default_overlap(128), default_overlap(64)
    (64, 32, 16)
    """
    return min(DEFAULT_OVERLAP, tile // 4 // 2 * 2)


def _protocols(samples: Sequence[Sample]) -> dict[str, Protocol]:
    """The protocols for these samples: official and computed erosion are never pooled into one score."""
    n, official = len(samples), sum(s.eroded is not None for s in samples)
    eroded: list[tuple[str, Reference, int]]
    if official == n:
        eroded = [("eroded", "official", n)]
    elif official == 0:
        eroded = [("eroded", "computed", n)]
    else:
        eroded = [("eroded (official)", "official", official), ("eroded (geoseg 3 px)", "computed", n)]
    out = {}
    for name, ref, k in [("full", "full", n), *eroded]:
        for suffix, exclude in ((", all classes", ()), (", no clutter", _CLUTTER)):
            out[name + suffix] = Protocol(name + suffix, ref, exclude, k)
    return out


def dataset_samples(dataset: str, model_bands: Sequence[str]) -> list[Sample]:
    """The samples of a dataset string for scoring a model: the test split, and imagery that has its bands.

    A split named in the string wins (``potsdam:ROOT:all``); otherwise the
    test split is scored. For Potsdam without a BANDS suffix, the imagery is
    chosen by the model's band names (``nir, red, green`` -> ``irrg``, read
    from the RGBIR tiles as bands 4, 1, 2), or by their number where the names
    say nothing (3 -> ``rgb``, 4 -> ``rgbir``).

    Examples
    --------
    >>> dataset_samples("potsdam:/data/Potsdam", ("nir", "red", "green"))  # doctest: +SKIP
    """
    spec = datasets.parse_dataset(dataset)
    bands = None
    if spec.kind == "potsdam" and spec.bands is None:
        bands = datasets.potsdam_bands_for(model_bands) or {4: "rgbir"}.get(len(model_bands), "rgb")
    return spec.load(split="test", bands=bands)  # type: ignore[arg-type]


def _bands_for(sample: Sample, model_bands: Sequence[str], override: Sequence[int] | None) -> tuple[int, ...] | None:
    """The 1-based bands of the sample's image to feed the model: `override`, else by meaning, else the sample's."""
    if override:
        return tuple(override)
    return datasets.match_bands(sample, model_bands) or sample.bands


def _scene_for(
    sample: Sample, folder: Path, gsd: float, bands: tuple[int, ...] | None
) -> tuple[Path, tuple[int, ...] | None]:
    """A GeoTIFF the pipeline can run, and the bands to read: the image itself if georeferenced, else a stand-in.

    The stand-in holds every band of the image, so band numbers (and
    ``bands_used`` in the run report) stay those of the user's file; it
    carries the bands' meaning as band descriptions where the dataset knows it.
    """
    with _open(sample.image) as ds:  # PNG crops carry no georeferencing: no warning for that
        if ds.crs is not None and not ds.transform.is_identity and ds.driver == "GTiff":
            return Path(sample.image), bands
    data = read_image(replace(sample, bands=None))
    out = folder / f"{sample.name}.tif"
    profile = {
        "driver": "GTiff",
        "width": data.shape[2],
        "height": data.shape[1],
        "count": data.shape[0],
        "dtype": data.dtype.name,
        "crs": "EPSG:3857",
        "transform": from_origin(0.0, data.shape[1] * gsd, gsd, gsd),
        "tiled": True,
        "compress": "deflate",
        "photometric": "MINISBLACK",  # GDAL would call three uint8 bands red, green, blue, whatever they hold
    }
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(data)
        for k, name in enumerate(sample.band_names or (), start=1):
            if k <= data.shape[0]:
                dst.set_band_description(k, name)
    return out, bands


def evaluate(
    model: str | os.PathLike[str],
    samples: Sequence[Sample],
    outdir: str | os.PathLike[str],
    *,
    tile: int | None = None,
    overlap: int | None = None,
    chunk: int = 2048,
    device: str = "auto",
    batch: int | None = None,
    bands: Sequence[int] | None = None,
    progress: Progress | None = None,
) -> EvaluationResult:
    """Run `model` on every sample with the full pipeline and score it against the reference labels.

    Writes, in `outdir`: ``evaluation.json`` (every protocol with the
    reference it used, per class and per image, and the bands fed to the
    model), ``confusion.png`` (the primary protocol) and each image's class
    raster under ``<name>/``.

    Parameters
    ----------
    tile : int, optional
        Tile size; the model's by default.
    overlap : int, optional
        Pixels shared by neighbouring tiles; by default :func:`default_overlap`
        of the tile (64 for tiles of 256 px and more), so small-tile models run.
    bands : sequence of int, optional
        1-based bands of every image file to feed the model, in its order. By
        default they are matched by meaning where the dataset knows what its
        bands hold (:func:`geoseg.training.datasets.match_bands`), else the sample's.

    Raises
    ------
    ConfigError
        No samples, or a prediction that does not cover its reference.
    geoseg.errors.DatasetError
        The model's bands cannot be matched by meaning (the message says
        which bands the images hold and how to choose others).
    """
    from ..config import RunConfig
    from ..pipeline import run
    from ..predict.runtime import read_spec

    if not samples:
        raise ConfigError("nothing to evaluate: the dataset holds no test images")
    t0 = time.perf_counter()
    spec = read_spec(model)
    n = spec.num_classes
    tile_size = tile or spec.tile_size
    overlap = default_overlap(tile_size) if overlap is None else overlap
    # Bands first, for every image: a mismatch refuses before hours of inference.
    feed = [_bands_for(sample, spec.bands, bands) for sample in samples]
    protocols = _protocols(samples)
    if len({p.images for p in protocols.values()}) > 1:
        official = sum(s.eroded is not None for s in samples)
        log.warning(
            "%d of %d images have an official eroded (noBoundary) reference: they are scored against it as "
            "'eroded (official)', and every image against geoseg's 3-px erosion as 'eroded (geoseg 3 px)'",
            official, len(samples),
        )  # fmt: skip
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    scratch = outdir / ".stand-in"
    scratch.mkdir(exist_ok=True)
    totals: dict[Reference, ConfusionMatrix] = {}
    per_image: list[dict[str, Any]] = []
    try:
        for i, (sample, sample_bands) in enumerate(zip(samples, feed, strict=True)):
            scene, run_bands = _scene_for(sample, scratch, spec.gsd or 0.1, sample_bands)
            cfg = RunConfig(
                scene=scene,
                model=Path(model),
                outdir=outdir / sample.name,
                tile=tile,
                overlap=overlap,
                chunk=chunk,
                device=device,
                batch=batch,
                bands=run_bands,
                min_area=0,
                simplify=0,
                overwrite=True,
            )
            result = run(cfg, progress=progress)
            with rasterio.open(result.outputs["classes"]) as ds:
                pred = ds.read(1)
            full = read_labels(sample)
            if pred.shape != full.shape:
                raise ConfigError(
                    f"{sample.name}: prediction is {pred.shape} but the reference is {full.shape}; "
                    "the label must cover the image pixel for pixel"
                )
            references: dict[Reference, np.ndarray] = {"full": full}
            if sample.eroded is not None:
                references["official"] = read_labels(sample, eroded=True)
            if any(p.reference == "computed" for p in protocols.values()):
                references["computed"] = erode_boundaries(full, _EROSION_RADIUS)
            # pixels the scene marks as nodata have no prediction: they are not scored
            unscored = (pred == NODATA) & (full != NODATA)
            # what the run really read (the stand-in copy keeps the image's band numbers)
            used = tuple(result.report.scene.bands_used or run_bands or ())
            entry: dict[str, Any] = {
                "name": sample.name,
                "image": str(sample.image),
                "bands_used": list(used),
                "band_names": _names_of(sample, used),
                "pixels": int(pred.size),
                "unscored_nodata_pixels": int(unscored.sum()),
                "eroded_reference": REFERENCES["official" if sample.eroded is not None else "computed"],
                "eroded_reference_file": str(sample.eroded) if sample.eroded is not None else None,
                "seconds": round(result.timings["total"], 2),
            }
            matrices: dict[Reference, ConfusionMatrix] = {}
            for ref, labels in references.items():
                matrices[ref] = ConfusionMatrix(n)
                matrices[ref].update(pred, np.where(unscored, NODATA, labels))
                totals[ref] = totals[ref] + matrices[ref] if ref in totals else matrices[ref]
            for name, protocol in protocols.items():
                if protocol.reference in matrices:
                    sc = matrices[protocol.reference].scores(exclude=protocol.exclude)
                    entry[name] = {
                        "reference": protocol.reference_text,
                        "oa": _num(sc.overall_accuracy),
                        "mean_f1": _num(sc.mean_f1),
                        "miou": _num(sc.miou),
                        "miou_mmseg": _num(sc.miou_mmseg),
                    }
            per_image.append(entry)
            if progress:
                progress("images", i + 1, len(samples))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    scores = {name: totals[p.reference].scores(exclude=p.exclude) for name, p in protocols.items()}
    primary = "eroded, all classes" if "eroded, all classes" in protocols else "eroded (geoseg 3 px), all classes"
    report = {
        "model": {
            "path": str(Path(model).resolve()),
            "name": spec.name,
            "arch": spec.arch,
            "encoder": spec.encoder,
            "bands": list(spec.bands),
        },
        "settings": {
            "tile": tile_size,
            "overlap": overlap,
            "chunk": chunk,
            "bands": list(bands) if bands else "matched by meaning where known, else the dataset's",
        },
        "primary_protocol": primary,
        "references": {p.name: p.reference_text for p in protocols.values()},
        "protocols": {
            name: {"reference": protocols[name].reference_text, "images": protocols[name].images}
            | s.to_dict(spec.classes)
            for name, s in scores.items()
        },
        "images": per_image,
    }
    from .._files import write_json

    report_path = write_json(report, outdir / "evaluation.json")
    png = plot_confusion(
        scores[primary],
        outdir / "confusion.png",
        classes=spec.classes,
        title=f"{spec.name}: {primary} ({protocols[primary].reference_text})",
    )
    return EvaluationResult(scores, primary, per_image, report_path, png, time.perf_counter() - t0, protocols)


def _names_of(sample: Sample, bands: Sequence[int]) -> list[str] | None:
    names = sample.band_names
    if names is None or not bands or max(bands) > len(names):
        return None
    return [names[b - 1] for b in bands]


def _num(v: float) -> float | None:
    return None if v != v else round(float(v), 5)
