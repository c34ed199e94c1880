"""``geoseg run``: one scene to a class raster and land-cover polygons."""

from __future__ import annotations

from collections.abc import Callable

import click

from ..config import ENGINES, PRECISIONS, RunConfig, parse_bands
from ..errors import ConfigError
from ..tiling import DEFAULT_OVERLAP
from ._options import log_options, logs_json, min_area_option, simplify_option, stop_on_sigterm


@click.command()
@click.argument("scene")
@click.option(
    "-m",
    "--model",
    "model",
    default=None,
    metavar="MODEL",
    help="Checkpoint path, installed model name or URL [default: $GEOSEG_MODEL or the default installed model], "
    "see `geoseg model`.",
)
@click.option(
    "-o",
    "--outdir",
    default=None,
    help="Output folder, or s3://bucket/prefix (credentials and endpoint from the AWS_* settings) "
    "[default: the scene's folder].",
)
@click.option("--tile", type=int, default=None, help="Tile size in pixels, a multiple of 32 [default: the model's].")
@click.option(
    "--overlap",
    type=int,
    default=DEFAULT_OVERLAP,
    show_default=True,
    help="Pixels shared by neighbouring tiles (blended).",
)
@click.option("--batch", type=int, default=None, help="Tiles per forward pass [default: 1 on CPU, 8 on CUDA].")
@click.option(
    "--chunk",
    type=int,
    default=None,
    help="Target block size in pixels (rounded to whole tiles); sets memory use, not results "
    "[default: 1024 on CPU, 2048 on CUDA].",
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option(
    "--precision",
    type=click.Choice(PRECISIONS),
    default="auto",
    show_default=True,
    help="Inference precision: auto is bf16 on CUDA and on CPUs with native bf16, fp16 on older GPUs, else fp32; "
    "int8 (and auto, where one exists) runs the model's calibrated int8 graph (`geoseg model export --int8`).",
)
@click.option(
    "--engine",
    type=click.Choice(ENGINES),
    default="auto",
    show_default=True,
    help="torch, or onnx (ONNX Runtime; a checkpoint is exported once into the model library). auto: torch on "
    "CUDA and on CPUs with AMX, else the calibrated int8 graph where one exists. An .onnx model always runs onnx.",
)
@click.option(
    "--compile",
    "compile_model",
    is_flag=True,
    help="Compile the model with torch.compile: worth it on GPUs and for long runs (the first blocks wait "
    "for the compiler, ~40 s on a small CPU).",
)
@click.option("--bands", default=None, help="1-based scene bands in the model's order, e.g. 1,2,3.")
@simplify_option
@min_area_option
@click.option(
    "--scheduler",
    default="threads",
    show_default=True,
    help="threads, processes, synchronous, local:N (process cluster) or tcp://HOST:PORT.",
)
@click.option("--workers", type=int, default=None, help="Dask workers [default: one per core].")
@click.option("--confidence", is_flag=True, help="Also write <stem>.confidence.tif (0-255).")
@click.option("--preview", is_flag=True, help="Also write <stem>.preview.png: scene, class overlay, legend.")
@click.option("--keep-intermediate", is_flag=True, help="Keep the <stem>.zarr working store after success.")
@click.option("--overwrite", is_flag=True, help="Replace existing outputs.")
@log_options
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or summary.")
def run(
    scene: str,
    model: str | None,
    outdir: str | None,
    tile: int | None,
    overlap: int,
    batch: int | None,
    chunk: int | None,
    device: str,
    precision: str,
    engine: str,
    compile_model: bool,
    bands: str | None,
    simplify: float | None,
    min_area: float | None,
    scheduler: str,
    workers: int | None,
    confidence: bool,
    preview: bool,
    keep_intermediate: bool,
    overwrite: bool,
    quiet: bool,
) -> None:
    """Segment SCENE (a GeoTIFF, an http(s):// URL, s3://bucket/key or /vsi… path) into land-cover classes.

    Writes <stem>.classes.tif (COG, class ids, 255 = nodata),
    <stem>.landcover.gpkg (layer `landcover`) and <stem>.run.json into the output
    folder. An interrupted run resumes from its <stem>.zarr working store.
    With -o s3://bucket/prefix the working store lives there too, and each
    output appears there only complete, run.json last.
    Without --model it runs $GEOSEG_MODEL or the default installed model
    (`geoseg model install CKPT --default`).
    """
    from ..models import resolve_model
    from ..pipeline import run as run_pipeline
    from ..remote import scene_name
    from ._progress import JsonProgress, RunProgress, log_result, print_summary
    from .model import download_progress

    with download_progress((model or "model").split("#")[0].rsplit("/", 1)[-1], quiet) as download:
        model_path = resolve_model(model, progress=download)
    try:
        cfg = RunConfig.build(
            scene=scene,
            model=model_path,
            outdir=outdir,
            tile=tile,
            overlap=overlap,
            batch=batch,
            chunk=chunk,
            device=device,
            precision=precision,
            engine=engine,
            compile=compile_model,
            bands=parse_bands(bands),
            simplify=simplify,
            min_area=min_area,
            overwrite=overwrite,
            scheduler=scheduler,
            workers=workers,
            keep_intermediate=keep_intermediate,
            confidence=confidence,
            preview=preview,
        )
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    stop_on_sigterm()
    # --log-json: progress and the outputs also go to the log, for programs that drive geoseg
    events = JsonProgress() if logs_json() else None
    if quiet:
        result = run_pipeline(cfg, progress=events.update if events else None)
    else:
        with RunProgress(scene_name(scene)) as bar:
            result = run_pipeline(cfg, progress=_both(bar.update, events.update if events else None))
        print_summary(result)
    if events:
        events.finish()
        log_result(result.outputs, polygons=result.n_polygons, resumed_blocks=result.resumed_blocks)


def _both(
    first: Callable[[str, int, int], None], second: Callable[[str, int, int], None] | None
) -> Callable[[str, int, int], None]:
    if second is None:
        return first

    def progress(stage: str, done: int, total: int) -> None:
        first(stage, done, total)
        second(stage, done, total)

    return progress
