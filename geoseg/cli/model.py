"""``geoseg model``: create and import self-describing checkpoints."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import ConfigError, OutputExistsError
from ..predict.spec import ARCHITECTURES, ENCODERS


def _floats(text: str, what: str, n: int) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"--{what} takes numbers separated by commas, got {text!r}") from None
    if len(values) == 1 and n > 1:
        values = values * n
    if len(values) != n:
        raise ConfigError(f"--{what} has {len(values)} values but --in-channels is {n}")
    return values


def _names(text: str | None, n: int) -> tuple[str, ...] | None:
    if not text:
        return None
    names = tuple(t.strip() for t in text.split(","))
    if len(names) != n:
        raise ConfigError(f"--band-names has {len(names)} names but --in-channels is {n}")
    return names


def _check_output(output: Path, overwrite: bool) -> None:
    if output.exists() and not overwrite:
        raise OutputExistsError(f"{output} already exists; pass --overwrite to replace it")


@click.group()
def model() -> None:
    """Create or import model checkpoints."""


@model.command("init")
@click.option("--arch", type=click.Choice(ARCHITECTURES), default="unet", show_default=True)
@click.option("--encoder", type=click.Choice(ENCODERS), default="resnet34", show_default=True)
@click.option("--in-channels", type=click.IntRange(1, 64), default=3, show_default=True)
@click.option(
    "--weights",
    type=click.Choice(["none", "imagenet"]),
    default="none",
    show_default=True,
    help="Encoder initialisation; imagenet downloads weights (needs internet).",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--band-names", default=None, help="Input band names in order, e.g. red,green,blue,nir.")
@click.option("--tile", "tile_size", type=int, default=512, show_default=True, help="Default tile size for runs.")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True)
@click.option("--overwrite", is_flag=True)
def init(
    arch: str,
    encoder: str,
    in_channels: int,
    weights: str,
    seed: int,
    band_names: str | None,
    tile_size: int,
    output: Path,
    overwrite: bool,
) -> None:
    """Write a new, untrained checkpoint (normalisation: ImageNet statistics in 8-bit units)."""
    from ..predict.checkpoint import init_checkpoint

    _check_output(output, overwrite)
    spec = init_checkpoint(
        output,
        arch=arch,
        encoder=encoder,
        in_channels=in_channels,
        weights=None if weights == "none" else weights,
        seed=seed,
        bands=_names(band_names, in_channels),
        tile_size=tile_size,
    )
    click.echo(f"wrote {output} ({spec.arch}/{spec.encoder}, {spec.in_channels} bands, {spec.num_classes} classes)")


@model.command("import")
@click.argument("state_dict", type=click.Path(path_type=Path))
@click.option("--arch", type=click.Choice(ARCHITECTURES), required=True)
@click.option("--encoder", required=True, help="Encoder name, e.g. resnet34.")
@click.option("--in-channels", type=click.IntRange(1, 64), required=True)
@click.option("--mean", required=True, help="Per-band mean in scene pixel units, e.g. 0,0,0.")
@click.option("--std", required=True, help="Per-band std in scene pixel units, e.g. 255,255,255.")
@click.option("--band-names", default=None, help="Input band names in order, e.g. red,green,blue.")
@click.option("--tile", "tile_size", type=int, default=512, show_default=True)
@click.option("--gsd", type=float, default=None, help="Training pixel size in metres.")
@click.option("--name", default=None, help="Model name [default: file stem].")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True)
@click.option("--overwrite", is_flag=True)
def import_(
    state_dict: Path,
    arch: str,
    encoder: str,
    in_channels: int,
    mean: str,
    std: str,
    band_names: str | None,
    tile_size: int,
    gsd: float | None,
    name: str | None,
    output: Path,
    overwrite: bool,
) -> None:
    """Wrap STATE_DICT, weights of a segmentation-models-pytorch model trained elsewhere."""
    from ..predict.checkpoint import import_state_dict

    _check_output(output, overwrite)
    spec = import_state_dict(
        state_dict,
        output,
        arch=arch,
        encoder=encoder,
        in_channels=in_channels,
        mean=_floats(mean, "mean", in_channels),
        std=_floats(std, "std", in_channels),
        bands=_names(band_names, in_channels),
        tile_size=tile_size,
        gsd=gsd,
        name=name,
    )
    click.echo(f"wrote {output} ({spec.arch}/{spec.encoder}, {spec.in_channels} bands)")
