"""``geoseg model``: create and import self-describing checkpoints, and manage the installed models."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..errors import ConfigError, OutputExistsError
from ..predict.spec import ARCHITECTURES, ENCODERS

if TYPE_CHECKING:
    from ..models import InstalledModel


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
    """Create, import and install model checkpoints.

    \b
    geoseg model install model.pt --default    copy a checkpoint into the models folder
    geoseg model list                          the installed models
    geoseg run scene.tif                       runs the default model
    """


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


@model.command("export")
@click.argument("source")
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=None,
    help="The .onnx file to write [default: the model library's engine cache, where `geoseg run --model SOURCE` "
    "finds it].",
)
@click.option("--int8", is_flag=True, help="Quantise to int8, calibrated on --calibrate imagery.")
@click.option(
    "--calibrate",
    multiple=True,
    metavar="SCENES|DATASET",
    help="Imagery for int8 calibration (repeatable): GeoTIFFs, folders of them, or a dataset such as "
    "potsdam:ROOT[:SPLIT] or vaihingen:ROOT.",
)
@click.option(
    "--tiles",
    type=click.IntRange(2, 4096),
    default=32,
    show_default=True,
    help="Tiles read: half calibrate, half check.",
)
@click.option(
    "--min-agreement",
    type=float,
    default=0.995,
    show_default=True,
    help="Fraction of held-out pixels whose int8 class must equal fp32's, or nothing is written.",
)
@click.option("--force", is_flag=True, help="Write the int8 graph even below --min-agreement.")
@click.option(
    "--static-tile",
    type=int,
    default=None,
    metavar="PX",
    help="Fix the input to 1 x bands x PX x PX, for tools that need static shapes [default: dynamic].",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing output.")
@click.option("-q", "--quiet", is_flag=True, help="No progress messages.")
def export(
    source: str,
    output: Path | None,
    int8: bool,
    calibrate: tuple[str, ...],
    tiles: int,
    min_agreement: float,
    force: bool,
    static_tile: int | None,
    overwrite: bool,
    quiet: bool,
) -> None:
    """Export SOURCE (a checkpoint or installed model) as a self-describing ONNX graph.

    The graph carries geoseg's model description and the metadata the QGIS plugins
    Deepness and GeoDeep read, so `geoseg run --model m.onnx` and those plugins run it
    with nothing beside it. With --int8 the graph is calibrated on real imagery and
    checked against fp32 on held-out tiles before it is written.

    \b
    geoseg model export m.pt -o m.onnx
    geoseg model export m.pt --int8 --calibrate scenes/      (then used by geoseg run on CPU)
    """
    from .._files import sha256_file
    from ..models import resolve_model
    from ..predict.runtime import cached_graph, is_onnx

    if calibrate and not int8:
        raise click.UsageError("--calibrate is for --int8 graphs; add --int8")
    if int8 and not calibrate:
        raise click.UsageError(
            "--int8 needs real imagery to calibrate on: --calibrate SCENE.tif, a folder, or potsdam:ROOT"
        )
    if int8 and static_tile:
        raise click.UsageError("--static-tile applies to fp32 exports; export the int8 graph with dynamic shapes")
    path = resolve_model(source)
    if output is None:
        if is_onnx(path):
            raise click.UsageError(f"{path.name} is already an ONNX graph; pass -o to write a quantised copy")
        output = cached_graph(sha256_file(path), "int8" if int8 else "fp32")
        output.parent.mkdir(parents=True, exist_ok=True)
        overwrite = True  # the cache holds one graph per checkpoint and precision
    _check_output(output, overwrite)
    if not int8:
        if is_onnx(path):
            raise click.UsageError(f"{path.name} is already an ONNX graph")
        from ..predict.onnx_export import export_onnx

        spec = export_onnx(path, output, tile=static_tile)
        click.echo(f"wrote {output} ({spec.arch}/{spec.encoder}, fp32, {output.stat().st_size / 1e6:.1f} MB)")
        return
    from ..predict.onnx_int8 import quantize_int8

    def say(msg: str) -> None:
        if not quiet:
            click.echo(msg, err=True)

    cal = quantize_int8(
        path, output, calibrate=calibrate, tiles=tiles, min_agreement=min_agreement, force=force, progress=say
    )
    kept = ", ".join(cal.kept_float)
    click.echo(
        f"wrote {output} (int8, {output.stat().st_size / 1e6:.1f} MB): {cal.agreement:.3%} of "
        f"{cal.heldout_pixels:,} held-out pixels agree with fp32 ({cal.method} calibration on "
        f"{cal.calibration_tiles} tiles, checked on {cal.heldout_tiles}); kept in float: {kept}"
    )


class _DownloadBar:
    """A rich download bar on stderr, shown from the first progress call (a model already here shows nothing)."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.progress: Any = None
        self.task: Any = None

    def __call__(self, done: int, total: int | None) -> None:
        if self.progress is None:
            from rich.console import Console
            from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

            self.progress = Progress(
                TextColumn(f"[bold]download[/] {self.title}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                console=Console(stderr=True),
            )
            self.progress.start()
            self.task = self.progress.add_task("download", total=total)
        self.progress.update(self.task, completed=done, total=total)

    def close(self, failed: bool) -> None:
        if self.progress is not None:
            if failed:  # a failed download leaves only its error message on the terminal
                self.progress.live.transient = True
            self.progress.stop()


@contextlib.contextmanager
def download_progress(title: str, quiet: bool) -> Iterator[Callable[[int, int | None], None] | None]:
    """Yields a progress callback for :func:`geoseg.models.install` (None when `quiet`)."""
    if quiet:
        yield None
        return
    bar = _DownloadBar(title)
    failed = True
    try:
        yield bar
        failed = False
    finally:
        bar.close(failed)


def _describe(m: InstalledModel) -> str:
    return f"{m.arch}/{m.encoder}, {','.join(m.bands)}"


@model.command("install")
@click.argument("source")
@click.option("--name", default=None, help="Name to install it under [default: the checkpoint's name or file stem].")
@click.option("--default", "make_default", is_flag=True, help="Use it when `geoseg run` is given no --model.")
@click.option("--overwrite", is_flag=True, help="Replace an installed model of the same name (and download again).")
@click.option(
    "--sha256", default=None, metavar="HEX", help="Expected SHA-256 of the file (or end a URL in #sha256=HEX)."
)
@click.option("-q", "--quiet", is_flag=True, help="No download progress bar.")
def install(
    source: str, name: str | None, make_default: bool, overwrite: bool, sha256: str | None, quiet: bool
) -> None:
    """Copy or download SOURCE, a geoseg checkpoint file or an http(s):// URL, into the models folder.

    The models folder is $GEOSEG_HOME/models, else the user data folder; installed models
    run by name: `geoseg run scene.tif --model NAME`.
    """
    from ..models import registry

    title = source.split("#")[0].rstrip("/").rsplit("/", 1)[-1] or source
    with download_progress(title, quiet or "://" not in source) as progress:
        m = registry.install(
            source, name=name, default=make_default, overwrite=overwrite, sha256=sha256, progress=progress
        )
    click.echo(f"installed {m.name} ({_describe(m)}) -> {m.path}" + (" [default]" if m.is_default else ""))


@model.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_(as_json: bool) -> None:
    """List the installed models (* marks the default)."""
    from ..models import registry

    models = registry.list_models()
    if as_json:
        click.echo(json.dumps([m.to_dict() for m in models], indent=2))
        return
    if not models:
        click.echo("no models installed (geoseg model install CKPT)")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(show_edge=False)
    table.add_column("name", no_wrap=True)
    table.add_column("default", justify="center", no_wrap=True)
    table.add_column("model", no_wrap=True)
    table.add_column("bands", overflow="fold")
    table.add_column("classes", justify="right", no_wrap=True)
    table.add_column("sha256", no_wrap=True)
    table.add_column("source", overflow="fold")
    for m in models:
        table.add_row(
            m.name,
            "*" if m.is_default else "",
            f"{m.arch}/{m.encoder}",
            ",".join(m.bands),
            str(len(m.classes)),
            m.sha256[:12],
            m.source,
        )
    console = Console()
    if not console.is_terminal:  # piped into a file or another program: do not crop long sources
        console.width = 240
    console.print(table)


@model.command("remove")
@click.argument("name")
def remove(name: str) -> None:
    """Delete the installed model NAME."""
    from ..models import registry

    m = registry.remove(name)
    click.echo(f"removed {m.name} ({m.path})" + ("; no default model is set now" if m.is_default else ""))


@model.command("default")
@click.argument("name")
def default(name: str) -> None:
    """Make the installed model NAME the one `geoseg run` uses without --model."""
    from ..models import registry

    m = registry.set_default(name)
    click.echo(f"default model: {m.name} ({_describe(m)}) -> {m.path}")
