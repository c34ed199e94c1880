"""``geoseg train``: a model from labelled imagery (ISPRS Potsdam/Vaihingen, image/label pairs, synthetic scenes).

This module assembles the data and the model description; the optimisation
itself is torch code in :mod:`geoseg.training.fit`. Importing it does not
import torch.

Every setting is a field of :class:`TrainConfig`, settable from a YAML file
and from the command line (a flag per field). The normalisation statistics
and class weights are computed from the training data and travel in the
checkpoint with the weights.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from ..classes import ISPRS
from ..config import Precision, check_tile, config_error
from ..errors import ConfigError
from ..predict.spec import Architecture

__all__ = ["TrainConfig", "TrainResult", "class_weights", "train"]

log = logging.getLogger(__name__)


class TrainConfig(BaseModel):
    """Settings of one training run (``geoseg train CONFIG.yaml``; every key is also a flag)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # -- data
    dataset: str | None = Field(
        default=None,
        description="potsdam:ROOT[:SPLIT][:BANDS], vaihingen:ROOT[:SPLIT] or synthetic:FOLDER:N (or images + labels)",
    )
    images: list[Path] | None = Field(default=None, description="image files or one folder (with labels)")
    labels: list[Path] | None = Field(default=None, description="label files or one folder, matched to images by name")
    label_kind: Literal["auto", "rgb", "index"] = Field(
        default="auto", description="labels: ISPRS colours or class indices"
    )
    index_offset: int = Field(default=0, description="index labels: class id = value - offset (1 for 0=ignore files)")
    ignore_value: int | None = Field(default=255, description="index labels: raw value to ignore")
    potsdam_bands: Literal["rgb", "rgbir", "irrg"] | None = Field(
        default=None, description="Potsdam imagery to train on [default: the dataset string's, else rgb]"
    )
    val: str = Field(
        default="auto",
        description="validation: auto (the dataset's other split, else the training images), none, or a dataset",
    )
    val_images: list[Path] | None = Field(default=None, description="validation image files or one folder")
    val_labels: list[Path] | None = Field(
        default=None, description="validation label files or one folder (read like --labels)"
    )
    val_windows: int = Field(default=64, ge=1, description="most validation windows per epoch")
    # -- model
    output: Path = Field(default=Path("model.pt"), description="checkpoint to write (best validation mIoU)")
    name: str | None = Field(default=None, description="model name stored in the checkpoint")
    arch: Architecture = "unet"
    encoder: str = "resnet34"
    encoder_weights: Literal["imagenet", "none"] = Field(default="none", description="imagenet needs internet access")
    # -- optimisation
    tile: Annotated[int, AfterValidator(check_tile)] = Field(
        default=512, ge=32, description="training window size in pixels (multiple of 32)"
    )
    batch: int = Field(default=8, ge=1)
    epochs: int = Field(default=20, ge=1)
    steps_per_epoch: int = Field(default=100, ge=1)
    lr: float = Field(default=1e-3, gt=0)
    weight_decay: float = Field(default=1e-4, ge=0)
    dice_weight: float = Field(default=1.0, ge=0, description="weight of the Dice term next to cross-entropy")
    class_balance: bool = Field(default=True, description="weight the cross-entropy by inverse class frequency")
    augment: bool = True
    device: str = "auto"
    precision: Precision = Field(
        default="auto", description="auto: AMP on CUDA; bf16 on CPUs with native bf16, else fp32"
    )
    max_minutes: float | None = Field(
        default=None, gt=0, description="stop after this long (the best checkpoint is kept)"
    )
    seed: int = 0
    resume: bool = Field(default=False, description="continue from <output>.state")
    gsd: float | None = Field(default=None, gt=0, description="pixel size in metres, if the images do not say")

    @classmethod
    def build(cls, config: str | os.PathLike[str] | None = None, **overrides: Any) -> TrainConfig:
        """Settings from an optional YAML file, then `overrides` (None values are ignored).

        Raises
        ------
        ConfigError
            The YAML cannot be read or a setting is wrong; the message names the key.
        """
        data: dict[str, Any] = {}
        if config is not None:
            try:
                loaded = yaml.safe_load(Path(config).read_text())
            except OSError as exc:
                raise ConfigError(f"cannot read {config}: {exc.strerror or exc}") from exc
            except yaml.YAMLError as exc:
                raise ConfigError(f"{config} is not valid YAML: {str(exc).splitlines()[0]}") from exc
            if not isinstance(loaded, dict):
                raise ConfigError(f"{config} must hold a mapping of settings, got {type(loaded).__name__}")
            data.update({str(k).replace("-", "_"): v for k, v in loaded.items()})
        data.update({k: v for k, v in overrides.items() if v is not None})
        try:
            cfg = cls(**data)
        except ValidationError as exc:
            raise config_error(exc) from None
        if cfg.dataset is None and not (cfg.images and cfg.labels):
            raise ConfigError(
                "no training data: give dataset (potsdam:ROOT, vaihingen:ROOT, synthetic:DIR:N) or images + labels"
            )
        if bool(cfg.val_images) != bool(cfg.val_labels):
            raise ConfigError("give both val_images and val_labels (--val-images DIR --val-labels DIR), or neither")
        if cfg.val_images and cfg.val != "auto":
            raise ConfigError(f"give val ({cfg.val!r}) or val_images + val_labels, not both")
        return cfg


@dataclass
class TrainResult:
    """A finished training: the checkpoint and how it got there."""

    checkpoint: Path
    best_miou: float
    best_epoch: int
    epochs_run: int
    stopped_early: bool
    seconds: float
    samples: int
    history: list[dict[str, Any]] = field(default_factory=list)


def class_weights(pixels: np.ndarray, *, clip: tuple[float, float] = (0.2, 5.0)) -> tuple[float, ...]:
    """Median-frequency balancing: ``median(freq) / freq_c``, clipped; classes absent from the data get 1.

    Examples
    --------
    >>> class_weights(np.array([800, 100, 100, 0]))  # 0.1 / 0.8 = 0.125, clipped to 0.2
    (0.2, 1.0, 1.0, 1.0)
    """
    pixels = np.asarray(pixels, dtype=np.float64)
    present = pixels > 0
    if not present.any():
        return tuple(1.0 for _ in pixels)
    freq = pixels / pixels.sum()
    w = np.ones_like(freq)
    w[present] = np.median(freq[present]) / freq[present]
    return tuple(float(v) for v in np.clip(w, *clip) * present + (~present))


def _pairs(cfg: TrainConfig, images: list[Path], labels: list[Path]) -> list[Any]:
    from . import datasets

    return datasets.pairs(
        images, labels, label_kind=cfg.label_kind, index_offset=cfg.index_offset, ignore_value=cfg.ignore_value
    )


def _potsdam_bands(cfg: TrainConfig, spec: Any, what: str) -> Any:
    """The Potsdam imagery to read: the dataset string's, or --potsdam-bands; both must agree."""
    if spec.kind != "potsdam":
        return None
    if spec.bands and cfg.potsdam_bands and spec.bands != cfg.potsdam_bands:
        raise ConfigError(
            f"{what} {spec.kind}:...:{spec.bands} names Potsdam bands {spec.bands} but potsdam_bands is "
            f"{cfg.potsdam_bands}; give one of them"
        )
    return spec.bands or cfg.potsdam_bands or "rgb"


def _samples(cfg: TrainConfig) -> tuple[list[Any], list[Any], str]:
    """Training samples, validation samples, and where the validation samples come from (for the log)."""
    from . import datasets

    if cfg.dataset is None:
        assert cfg.images and cfg.labels
        train_samples, spec = _pairs(cfg, cfg.images, cfg.labels), None
    else:
        spec = datasets.parse_dataset(cfg.dataset)
        if cfg.potsdam_bands and spec.kind != "potsdam":
            raise ConfigError(f"potsdam_bands applies to Potsdam datasets, not {cfg.dataset!r}; leave it out")
        train_samples = spec.load(split="train", bands=_potsdam_bands(cfg, spec, "dataset"))
    if cfg.val_images and cfg.val_labels:
        return train_samples, _pairs(cfg, cfg.val_images, cfg.val_labels), "the validation folders"
    if cfg.val == "none":
        return train_samples, [], "nothing"
    if cfg.val != "auto":
        val_spec = datasets.parse_dataset(cfg.val)
        bands = _potsdam_bands(cfg, val_spec, "val") if spec is None else _potsdam_bands(cfg, spec, "dataset")
        return train_samples, val_spec.load(split="test", bands=bands), cfg.val
    if spec is not None and spec.kind != "synthetic" and (spec.split or "train") != "all":
        other: datasets.Split = "test" if (spec.split or "train") == "train" else "train"
        try:
            held_out = datasets.DatasetSpec(spec.kind, spec.root, other, spec.bands).load(
                bands=_potsdam_bands(cfg, spec, "dataset")
            )
            return train_samples, held_out, f"the {other} split"
        except datasets.DatasetNotFoundError:
            pass  # its references are not installed
    log.warning(
        "validating on the training images: the best checkpoint is chosen by how well it fits them, not by how "
        "well it generalises; give validation data (--val-images DIR --val-labels DIR, or --val DATASET)"
    )
    return train_samples, train_samples, "the training images"


def _check_val_bands(train_samples: Sequence[Any], val_samples: Sequence[Any], n_bands: int) -> None:
    """Validation images must give the model the same bands as the training images."""
    names = train_samples[0].selected_band_names
    for s in val_samples:
        count, _, _ = _raster_facts(s.image)
        got = len(s.bands) if s.bands else count
        other = s.selected_band_names
        if got != n_bands or (names and other and names != other):
            what = ",".join(other) if other else f"{got} band(s)"
            raise ConfigError(
                f"validation image {s.image.name} gives {what} but the training images give "
                f"{','.join(names) if names else f'{n_bands} band(s)'}; validate on imagery with the same bands"
            )


def _raster_facts(path: Path) -> tuple[int, str, float | None]:
    """Band count, data type and pixel size (metres, if georeferenced in a projected CRS) of an image."""
    from .datasets.samples import _open  # tolerates PNGs without georeferencing, as datasets do

    with _open(path) as ds:
        gsd = None
        if ds.crs is not None and ds.crs.is_projected and not ds.transform.is_identity:
            gsd = float(abs(ds.transform.a))
        return ds.count, str(ds.dtypes[0]), gsd


def _val_windows(
    samples: Sequence[Any], size: int, limit: int
) -> Callable[[], Iterable[tuple[np.ndarray, np.ndarray]]]:
    """Up to `limit` windows spread evenly over the samples' grids, read lazily each time."""
    from . import datasets

    every = [(s, w) for s in samples for w in datasets.grid_windows(s, size=size)]
    if len(every) > limit:
        every = [every[int(i)] for i in np.linspace(0, len(every) - 1, limit).round()]

    def windows() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for sample, window in every:
            label = datasets.read_labels(sample, window)
            if (label != 255).any():
                yield datasets.read_image(sample, window).astype(np.float32), label.astype(np.int64)

    return windows


def train(cfg: TrainConfig, *, progress: Callable[[str, int, int, dict[str, Any]], None] | None = None) -> TrainResult:
    """Train the model `cfg` describes; the best checkpoint (validation mIoU) is written to ``cfg.output``.

    Raises
    ------
    ConfigError, DatasetError
        Wrong settings or unreadable data, with a message saying what to change.
    """
    from ..predict.spec import ModelSpec
    from . import datasets
    from .fit import FitOptions, fit

    t0 = time.perf_counter()
    train_samples, val_samples, val_source = _samples(cfg)
    if not train_samples:
        raise ConfigError("the training data holds no samples")
    first = train_samples[0]
    count, dtype, gsd = _raster_facts(first.image)
    n_bands = len(first.bands) if first.bands else count
    _check_val_bands(train_samples, val_samples, n_bands)
    names = first.selected_band_names or ModelSpec.default_bands(n_bands)
    log.info("validating on %d image(s) from %s", len(val_samples), val_source)
    mean, std = datasets.band_stats(train_samples, seed=cfg.seed)
    std = tuple(max(float(s), 1e-3) for s in std)
    weights = None
    if cfg.class_balance:
        pixels = datasets.class_pixels(train_samples, max_pixels=4_000_000, seed=cfg.seed)
        weights = class_weights(pixels)
    log.info("training on %d images (%s), normalisation mean %s std %s", len(train_samples), dtype, mean, std)
    spec = ModelSpec(
        arch=cfg.arch,
        encoder=cfg.encoder,
        in_channels=n_bands,
        bands=tuple(names),
        mean=tuple(mean),
        std=std,
        classes=ISPRS,
        tile_size=cfg.tile,
        gsd=cfg.gsd or gsd,
        pixel_dtype=dtype,
        encoder_weights=None if cfg.encoder_weights == "none" else cfg.encoder_weights,
        name=cfg.name or cfg.output.stem,
        extra={
            "training": {
                "dataset": cfg.dataset or f"{len(train_samples)} image/label pairs",
                "samples": [s.name for s in train_samples][:50],
                "validation": {"source": val_source, "samples": [s.name for s in val_samples][:50]},
                "class_weights": list(weights) if weights else None,
                "settings": cfg.model_dump(mode="json"),
            }
        },
    )
    sampler = datasets.WindowSampler(
        train_samples, size=cfg.tile, per_epoch=cfg.steps_per_epoch * cfg.batch, seed=cfg.seed, augment=cfg.augment
    )
    options = FitOptions(
        epochs=cfg.epochs,
        steps_per_epoch=cfg.steps_per_epoch,
        batch=cfg.batch,
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        dice_weight=cfg.dice_weight,
        class_weights=weights,
        device=cfg.device,
        precision=cfg.precision,
        max_minutes=cfg.max_minutes,
        seed=cfg.seed,
    )
    cfg.output.parent.mkdir(parents=True, exist_ok=True)
    val = _val_windows(val_samples, cfg.tile, cfg.val_windows) if val_samples else None
    result = fit(spec, sampler.epoch, val, cfg.output, options, resume=cfg.resume, progress=progress)
    return TrainResult(
        result.checkpoint,
        result.best_miou,
        result.best_epoch,
        result.epochs_run,
        result.stopped_early,
        time.perf_counter() - t0,
        len(train_samples),
        result.history,
    )
