"""``geoseg info``: describe a scene or a model checkpoint."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from ..tiling import DEFAULT_OVERLAP


def _scene_info(path: str | Path, chunk: int, tile: int, overlap: int, model: Path | None) -> dict[str, Any]:
    from ..errors import SceneError
    from ..raster import band_meanings, open_scene, select_bands
    from ..remote import display_name
    from ..tiling import BlockPlan, TileGrid

    info = open_scene(path)
    grid = TileGrid(info.height, info.width, tile=tile, overlap=overlap)
    plan = BlockPlan.from_chunk(grid, chunk)
    meanings = band_meanings(info)
    mask = info.mask_kind + (f" (alpha band {','.join(map(str, info.alpha_bands))})" if info.alpha_bands else "")
    if info.data_alpha:
        mask += f"; band {','.join(map(str, info.data_alpha))} is tagged alpha but holds data: used as data"
    data: dict[str, Any] = {
        "kind": "scene",
        "path": display_name(info.path),
        "size": f"{info.width} x {info.height} px",
        "bands": info.count,
        "band_meaning": ", ".join(f"{b}={m or '?'}" for b, m in enumerate(meanings, start=1)),
        "descriptions": ",".join(d or "-" for d in info.descriptions),
        "colorinterp": ",".join(info.colorinterp),
        "dtype": info.dtype,
        "crs": info.crs_name,
        "pixel_size_m": f"{info.pixel_size_m[0]:.4g} x {info.pixel_size_m[1]:.4g}",
        "nodata": info.nodata,
        "mask": mask,
        "internal_blocks": f"{info.block_shapes[0][1]} x {info.block_shapes[0][0]}",
        "compression": info.compression,
        "tiles": f"{grid.shape[1]} x {grid.shape[0]} of {tile} px (overlap {overlap}, "
        f"{grid.recompute_factor:.2f}x pixels computed)",
        "blocks": f"{plan.shape[1]} x {plan.shape[0]} of {plan.block_size} px (--chunk {chunk})",
    }
    if model is not None:
        from ..predict.runtime import read_spec

        spec = read_spec(model)
        # the run's own choice (select_bands), so info shows exactly what `geoseg run` would feed
        try:
            bands = select_bands(info, None, spec.in_channels, spec.bands)
            data["model_bands"] = f"--bands {','.join(map(str, bands))} -> {spec.name} inputs {','.join(spec.bands)}"
        except SceneError as exc:
            data["model_bands"] = f"refused: {exc}"
    return data


def _model_info(path: Path) -> dict[str, Any]:
    from ..predict.runtime import read_spec

    spec = read_spec(path)
    return {
        "kind": "model",
        "path": str(path.resolve()),
        "name": spec.name,
        "architecture": f"{spec.arch} / {spec.encoder}",
        "input_bands": f"{spec.in_channels}: {','.join(spec.bands)}",
        "pixel_dtype": spec.pixel_dtype,
        "normalisation": f"mean {list(spec.mean)}, std {list(spec.std)}",
        "classes": ", ".join(f"{c.id}={c.name}" for c in spec.classes),
        "tile_size": spec.tile_size,
        "training_gsd_m": spec.gsd,
        "encoder_weights": spec.encoder_weights,
        "trained": spec.extra.get("trained"),
    }


@click.command()
@click.argument("path")
@click.option("--chunk", type=int, default=2048, show_default=True, help="Block size to show the layout for.")
@click.option("--tile", type=int, default=512, show_default=True, help="Tile size to show the layout for.")
@click.option("--overlap", type=int, default=DEFAULT_OVERLAP, show_default=True, help="Overlap to show the layout for.")
@click.option(
    "--model",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    default=None,
    help="Also show which scene bands `geoseg run` would feed this model.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def info(path: str, chunk: int, tile: int, overlap: int, model: Path | None, as_json: bool) -> None:
    """Describe PATH: a scene (size, bands and their meaning, CRS, pixel size, nodata, block layout) or a
    model checkpoint."""
    from ..errors import GeosegIOError
    from ..remote import is_remote

    local = Path(path)
    if not is_remote(path) and not local.exists():
        raise GeosegIOError(f"{path} not found; check the path")
    is_model = local.suffix.lower() in (".pt", ".pth", ".ckpt", ".safetensors", ".onnx")
    data = _model_info(local) if is_model else _scene_info(path, chunk, tile, overlap, model)
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    width = max(len(k) for k in data)
    for key, value in data.items():
        click.echo(f"{key.replace('_', ' '):<{width}}  {value}")
