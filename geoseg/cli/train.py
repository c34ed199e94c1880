"""``geoseg train``: train a model from a YAML file and/or flags (one flag per setting)."""

from __future__ import annotations

import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from ..training.train import TrainConfig


def _option_for(name: str, info: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A click option for one TrainConfig field: its type, choices and help come from the field."""
    flag = "--" + name.replace("_", "-")
    ann = info.annotation
    args = [a for a in typing.get_args(ann) if a is not type(None)]
    base = args[0] if args and typing.get_origin(ann) is not typing.Literal else ann
    help_text = info.description or ""
    if info.default is not None and not isinstance(info.default, bool):
        help_text += f" [default: {info.default}]"
    if typing.get_origin(ann) is typing.Literal:
        return click.option(flag, type=click.Choice(typing.get_args(ann)), default=None, help=help_text)
    if base is bool or ann is bool:
        return click.option(f"{flag}/--no-{flag[2:]}", default=None, help=help_text)
    if typing.get_origin(base) is list:
        return click.option(flag, multiple=True, type=click.Path(path_type=Path), default=None, help=help_text)
    if typing.get_origin(base) is typing.Literal:
        return click.option(flag, type=click.Choice(typing.get_args(base)), default=None, help=help_text)
    kind = {int: int, float: float, Path: click.Path(path_type=Path)}.get(base, str)
    return click.option(flag, type=kind, default=None, help=help_text)


def _with_config_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    for name, info in reversed(list(TrainConfig.model_fields.items())):
        fn = _option_for(name, info)(fn)
    return fn


@click.command(context_settings={"max_content_width": 110})
@click.argument("config", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "output_", type=click.Path(path_type=Path), default=None, help="Same as --output.")
@click.option("--install", "install_name", default=None, help="Install the trained model under this name.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
@_with_config_options
def train(config: Path | None, output_: Path | None, install_name: str | None, quiet: bool, **settings: Any) -> None:
    """Train a segmentation model; writes the best checkpoint (by validation mIoU).

    CONFIG is an optional YAML file of settings; flags override it. Data come
    from --dataset (potsdam:ROOT[:SPLIT][:BANDS], vaihingen:ROOT[:SPLIT],
    synthetic:FOLDER:N) or from --images/--labels (files or folders; GeoTIFF
    or PNG; labels in the ISPRS colours or as class indices). Validation data:
    the dataset's other split, --val-images/--val-labels, or --val DATASET.

    \b
    Examples:
      geoseg train --dataset potsdam:/data/potsdam:irrg --epochs 40 -o potsdam_irrg.pt
      geoseg train workflows/train_potsdam.yaml --max-minutes 60
      geoseg train --images img_dir/train --labels ann_dir/train --val-images img_dir/val \\
          --val-labels ann_dir/val --label-kind index --index-offset 1 --ignore-value 0
    """
    from rich.console import Console

    from ..training.train import train as run_training
    from ._progress import TrainProgress

    for key in ("images", "labels", "val_images", "val_labels"):
        settings[key] = list(settings[key]) or None
    if output_ is not None:
        settings["output"] = output_
    cfg = TrainConfig.build(config, **settings)
    console = Console(stderr=True)
    if quiet:
        result = run_training(cfg)
    else:
        with TrainProgress(cfg.output.name, console) as bar:
            result = run_training(cfg, progress=bar.update)
    if not quiet:
        how = "stopped at --max-minutes" if result.stopped_early else f"{result.epochs_run} epochs"
        console.print(
            f"best validation mIoU {result.best_miou:.4f} (epoch {result.best_epoch}), {how}, "
            f"{result.seconds / 60:.1f} min -> {result.checkpoint}"
        )
    if install_name:
        from ..models import install

        model = install(result.checkpoint, name=install_name, overwrite=True)
        if not quiet:
            console.print(f"installed {model.name} -> {model.path}")
