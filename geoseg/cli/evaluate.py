"""``geoseg evaluate``: ISPRS scores of a model on test images, through the full pipeline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click


def _bands(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, ...] | None:
    """``--bands 4,1,2`` -> ``(4, 1, 2)``; a malformed list is a usage error (exit 2)."""
    from ..config import parse_bands
    from ..errors import ConfigError

    try:
        return parse_bands(value)
    except ConfigError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command()
@click.option("-m", "--model", required=True, help="Checkpoint path or installed model name.")
@click.option(
    "--dataset",
    default=None,
    help="potsdam:ROOT[:SPLIT][:BANDS], vaihingen:ROOT[:SPLIT] (the test split unless one is named), "
    "synthetic:FOLDER:N. Potsdam imagery defaults to the model's bands.",
)
@click.option("--images", multiple=True, type=click.Path(path_type=Path), help="Test images (files or a folder).")
@click.option("--labels", multiple=True, type=click.Path(path_type=Path), help="Reference labels (files or a folder).")
@click.option("--label-kind", type=click.Choice(["auto", "rgb", "index"]), default="auto", show_default=True)
@click.option("--index-offset", type=int, default=0, show_default=True, help="Index labels: class = value - offset.")
@click.option("--ignore-value", type=int, default=255, show_default=True, help="Index labels: raw value to ignore.")
@click.option(
    "-o",
    "--outdir",
    type=click.Path(path_type=Path),
    default=Path("evaluation"),
    show_default=True,
    help="Report, confusion matrix and class rasters go here.",
)
@click.option("--tile", type=int, default=None, help="Tile size [default: the model's].")
@click.option(
    "--overlap", type=int, default=None, help="Pixels shared by neighbouring tiles [default: tile/4, at most 64]."
)
@click.option(
    "--bands",
    callback=_bands,
    default=None,
    help="1-based image bands in the model's order, e.g. 4,1,2 [default: matched by meaning where the dataset "
    "knows it (ISPRS), else all].",
)
@click.option("--device", default="auto", show_default=True)
@click.option("-q", "--quiet", is_flag=True, help="Only the summary line.")
def evaluate(
    model: str,
    dataset: str | None,
    images: tuple[Path, ...],
    labels: tuple[Path, ...],
    label_kind: str,
    index_offset: int,
    ignore_value: int,
    outdir: Path,
    tile: int | None,
    overlap: int | None,
    bands: tuple[int, ...] | None,
    device: str,
    quiet: bool,
) -> None:
    """Score MODEL on test images: confusion matrix, OA, per-class F1 and IoU, mean F1 and mIoU.

    Every image runs through the same pipeline as `geoseg run`. Four ISPRS
    protocols are reported: all labelled pixels or boundaries eroded, with all
    six classes or without clutter; each says which reference it used (full
    labels, official eroded references, or geoseg's 3-px erosion). Writes
    OUTDIR/evaluation.json and OUTDIR/confusion.png.
    """
    from rich.console import Console
    from rich.table import Table

    from ..errors import ConfigError
    from ..models import resolve_model
    from ..predict.runtime import read_spec
    from ..training import datasets
    from ..training.evaluate import dataset_samples
    from ..training.evaluate import evaluate as run_evaluation
    from ..training.metrics import format_rows

    if (dataset is None) == (not images or not labels):
        raise ConfigError("give either --dataset or both --images and --labels")
    path = resolve_model(model)
    spec = read_spec(path)
    if dataset is not None:
        samples = dataset_samples(dataset, spec.bands)
    else:
        samples = datasets.pairs(
            list(images),
            list(labels),
            label_kind=label_kind,  # type: ignore[arg-type]
            index_offset=index_offset,
            ignore_value=ignore_value,
        )
    console = Console(stderr=True)
    options: dict[str, Any] = {"tile": tile, "overlap": overlap, "device": device, "bands": bands}
    if quiet:
        result = run_evaluation(path, samples, outdir, **options)
    else:
        from ._progress import RunProgress

        with RunProgress(f"evaluate {len(samples)} image(s)") as bar:
            result = run_evaluation(path, samples, outdir, progress=bar.update, **options)
    primary = result.protocols[result.primary]
    if not quiet:
        main = result.scores[result.primary]
        table = Table(
            title=f"{result.primary} — {primary.reference_text}, {primary.images} image(s), "
            f"{main.matrix.sum():,} pixels scored",
            show_edge=False,
        )
        for col in ("class", "F1 %", "IoU %", "precision %", "recall %"):
            table.add_column(col, justify="left" if col == "class" else "right")
        for row in format_rows(main, spec.classes):
            table.add_row(*row)
        console.print(table)
        summary = Table(title="protocols", show_edge=False)
        for col in ("protocol", "reference", "images", "OA %", "mean F1 %", "mIoU %"):
            summary.add_column(col, justify="left" if col in ("protocol", "reference") else "right")
        for name, s in result.scores.items():
            protocol = result.protocols[name]
            miou = f"{100 * s.miou:.2f}"
            if s.predicted_absent:  # mmseg counts predicted-but-absent classes as 0
                miou += f" (mmseg {100 * s.miou_mmseg:.2f})"
            summary.add_row(
                name,
                protocol.reference_label,
                str(protocol.images),
                f"{100 * s.overall_accuracy:.2f}",
                f"{100 * s.mean_f1:.2f}",
                miou,
            )
        console.print(summary)
        # one line per reference: what it is and how many images it covers
        for p in {p.reference: p for p in result.protocols.values()}.values():
            console.print(
                f"reference '{p.reference_label}': {p.reference_text}, {p.images} image(s)",
                markup=False,
                soft_wrap=True,
            )
        bands_used = {(tuple(e["bands_used"]), tuple(e["band_names"] or ())) for e in result.per_image}
        for used, names in sorted(bands_used):
            meaning = f" ({','.join(names)})" if names else ""
            console.print(
                f"bands fed to the model ({','.join(spec.bands)}): {','.join(map(str, used))}{meaning}", markup=False
            )
    top = result.scores[result.primary]
    console.print(
        f"{result.primary} ({primary.reference_text}, {primary.images} image(s)): OA "
        f"{100 * top.overall_accuracy:.2f} %, mean F1 {100 * top.mean_f1:.2f} %, mIoU {100 * top.miou:.2f} % -> "
        f"{result.report}, {result.confusion_png}",
        markup=False,
        soft_wrap=True,  # one line that scripts can grep, whatever the terminal width
    )
