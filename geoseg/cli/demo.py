"""``geoseg demo``: synthetic data, a trained model and a mapped scene, offline, in a few minutes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click


@click.command()
@click.option(
    "-o",
    "--outdir",
    type=click.Path(path_type=Path),
    default=Path("geoseg-demo"),
    show_default=True,
    help="Folder for the data, the model and the map.",
)
@click.option(
    "--minutes",
    type=float,
    default=None,
    help="Stop training at this time budget instead of after the fixed seeded steps "
    "(faster on a slow machine; the result then depends on the machine's speed).",
)
@click.option("--no-install", is_flag=True, help="Do not install the model as 'demo'.")
@click.option("-q", "--quiet", is_flag=True, help="Only the closing summary.")
def demo(outdir: Path, minutes: float | None, no_install: bool, quiet: bool) -> None:
    """Run the whole pipeline on synthetic data: the first thing to try.

    Generates a synthetic training set and a separate test scene, trains a
    small model, maps the test scene with `geoseg run`, scores the map against
    the scene's ground truth, and installs the model as 'demo' (the default
    model if none is set), so `geoseg run scene.tif` works right after.
    Needs no internet and no GPU; about 7 minutes on 2 CPU cores.
    """
    from dataclasses import replace

    from rich.console import Console

    from ..demo import DemoSettings
    from ..demo import demo as run_demo
    from ._progress import TrainProgress

    settings = DemoSettings(install=not no_install)
    if minutes is not None:
        settings = replace(settings, max_minutes=minutes)
    console = Console(stderr=True)
    if quiet:
        result = run_demo(outdir, settings)
    else:
        console.print(f"[bold]geoseg demo[/] -> {outdir} (about 7 minutes on 2 CPU cores)")
        with TrainProgress("demo", console) as bar:

            def progress(stage: str, done: int, total: int, info: dict[str, Any]) -> None:
                if stage in ("train", "validate", "epoch"):
                    bar.update(stage, done, total, info)
                elif stage in ("data", "int8", "segment", "vectorize", "export", "evaluate"):
                    bar.update_stage(stage, done, total)

            result = run_demo(outdir, settings, progress=progress)
    console.print(
        f"\nheld-out scene, ISPRS protocol (boundaries eroded, 6 classes): mIoU {100 * result.miou:.1f} %, "
        f"overall accuracy {100 * result.overall_accuracy:.1f} %; "
        f"every pixel: mIoU {100 * result.miou_all_pixels:.1f} % "
        f"({result.seconds / 60:.1f} min in all, {result.train_minutes:.1f} min training)"
    )
    if not quiet:
        for name, iou in result.class_iou.items():
            console.print(f"  {name:<20} IoU {'–' if iou is None else f'{100 * iou:.1f} %'}")
    if result.int8_agreement is None:
        console.print("int8 graph: refused (below 99.5 % agreement with fp32 on held-out tiles); CPUs run torch")
    else:
        console.print(
            f"int8 graph: {100 * result.int8_agreement:.2f} % of held-out pixels agree with fp32; "
            "`geoseg run --engine auto` uses it on CPUs without AMX"
        )
    console.print("\noutputs:")
    for key, path in result.outputs.items():
        console.print(f"  {key:<10} {path}")
    console.print(f"  {'model':<10} {result.checkpoint}")
    console.print(
        f"  {'scores':<10} {outdir / 'evaluation' / 'evaluation.json'}, {outdir / 'evaluation' / 'confusion.png'}"
    )
    console.print(
        "\nIn QGIS: drag scene.tif, then map/scene.landcover.gpkg (it opens styled by class) and "
        "map/scene.classes.tif (paletted) onto the map."
    )
    if result.installed:
        how = "the default model" if result.default else "installed (not the default: one was already set)"
        console.print(f"The model is {how} as '{result.installed}': try `geoseg run {result.scene}`.")
