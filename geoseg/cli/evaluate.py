"""``geoseg evaluate``: ISPRS scores of a model on test images, through the full pipeline."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.option("-m", "--model", required=True, help="Checkpoint path or installed model name.")
@click.option("--dataset", default=None, help="potsdam:ROOT or vaihingen:ROOT (their test split), synthetic:FOLDER:N.")
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
@click.option("--overlap", type=int, default=64, show_default=True)
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
    overlap: int,
    device: str,
    quiet: bool,
) -> None:
    """Score MODEL on test images: confusion matrix, OA, per-class F1 and IoU, mean F1 and mIoU.

    Every image runs through the same pipeline as `geoseg run`. Four ISPRS
    protocols are reported: all labelled pixels or boundaries eroded, with all
    six classes or without clutter. Writes OUTDIR/evaluation.json and
    OUTDIR/confusion.png.
    """
    from rich.console import Console
    from rich.table import Table

    from .. import datasets
    from ..errors import ConfigError
    from ..evaluate import evaluate as run_evaluation
    from ..library import resolve_model
    from ..metrics import format_rows
    from ..predict.checkpoint import read_spec

    if (dataset is None) == (not images or not labels):
        raise ConfigError("give either --dataset or both --images and --labels")
    if dataset is not None:
        kind, _, rest = dataset.partition(":")
        if kind in ("potsdam", "vaihingen") and rest.count(":") == 0:
            dataset = f"{dataset}:test"  # the official test tiles unless a split is named
        samples = datasets.dataset_from_spec(dataset)
    else:
        samples = datasets.pairs(
            list(images),
            list(labels),
            label_kind=label_kind,  # type: ignore[arg-type]
            index_offset=index_offset,
            ignore_value=ignore_value,
        )
    path = resolve_model(model)
    console = Console(stderr=True)
    if quiet:
        result = run_evaluation(path, samples, outdir, tile=tile, overlap=overlap, device=device)
    else:
        from ._progress import RunProgress

        with RunProgress(f"evaluate {len(samples)} image(s)") as bar:
            result = run_evaluation(
                path, samples, outdir, tile=tile, overlap=overlap, device=device, progress=bar.update
            )
    classes = read_spec(path).classes
    if not quiet:
        main = result.scores[result.primary]
        table = Table(title=f"{result.primary} ({main.matrix.sum():,} pixels scored)", show_edge=False)
        for col in ("class", "F1 %", "IoU %", "precision %", "recall %"):
            table.add_column(col, justify="left" if col == "class" else "right")
        for row in format_rows(main, classes):
            table.add_row(*row)
        console.print(table)
        summary = Table(title="protocols", show_edge=False)
        for col in ("protocol", "OA %", "mean F1 %", "mIoU %"):
            summary.add_column(col, justify="left" if col == "protocol" else "right")
        for name, s in result.scores.items():
            summary.add_row(name, *(f"{100 * v:.2f}" for v in (s.overall_accuracy, s.mean_f1, s.miou)))
        console.print(summary)
    p = result.scores[result.primary]
    console.print(
        f"{result.primary}: OA {100 * p.overall_accuracy:.2f} %, mean F1 {100 * p.mean_f1:.2f} %, "
        f"mIoU {100 * p.miou:.2f} % -> {result.report}, {result.confusion_png}"
    )
