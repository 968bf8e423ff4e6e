"""The shared feature extractor: (size, size, channels) floats in [0, 1] → a 4-D feature map.

Every backbone ends with a ``ReLU`` layer named ``features`` (``FEATURES_LAYER``): Grad-CAM
differentiates the class logit with respect to its output, and the ONNX export computes Grad-CAM
in-graph from it. Only ONNX-friendly ops are used (Conv, BatchNormalization, Relu, MaxPool).
"""

from __future__ import annotations

import types
from pathlib import Path

import keras

from catalogs.inputs import ImageSpec
from models.config import BackboneConfig

FEATURES_LAYER = "features"
SMALL_CNN = "small_cnn"
D4_CNN = "d4_cnn"


def build_backbone(image: ImageSpec, cfg: BackboneConfig, name: str = "backbone") -> keras.Model:
    """A ``keras.Model`` named ``name`` whose last layer is ``ReLU(name="features")``.

    ``cfg.name == "small_cnn"``: per stage (one per entry of ``cfg.widths``) ``cfg.depths`` (two) 3×3 Conv2D
    (``padding="same"``, no bias) each followed by BatchNormalization and ReLU; a 2×2 max-pool
    precedes every stage but the first, so the map is ``size / 2**(len(widths) - 1)`` px wide.

    Any other name is a ``keras.applications`` constructor built with ``include_top=False,
    weights=None`` and, if ``cfg.weights`` is given, that local ``.weights.h5`` file loaded into
    it. A ReLU named ``features`` is appended (a no-op for ResNet/VGG/MobileNet, which already end
    in (bounded) ReLU). The application's own ``preprocess_input`` is NOT applied: inputs stay in
    [0, 1], as for every other model here.
    """
    shape = (image.size, image.size, image.channels)
    if cfg.name == SMALL_CNN:
        if cfg.weights is not None:
            raise ValueError("small_cnn is trained from scratch: BackboneConfig.weights must be None")
        return _small_cnn(shape, tuple(cfg.widths), _depths(cfg), name)
    if cfg.name == D4_CNN:
        if cfg.weights is not None:
            raise ValueError("d4_cnn is trained from scratch: BackboneConfig.weights must be None")
        return _d4_cnn(shape, tuple(cfg.widths), _depths(cfg), name)
    return _application(shape, cfg, name)


def _depths(cfg: BackboneConfig) -> tuple[int, ...]:
    depths = (2,) * len(cfg.widths) if cfg.depths is None else tuple(int(d) for d in cfg.depths)
    if len(depths) != len(cfg.widths) or any(d < 1 for d in depths):
        raise ValueError(f"depths gives the convolutions of each of the {len(cfg.widths)} stages (at least 1 each), "
                         f"got {cfg.depths}")
    return depths


def _stages(shape: tuple[int, int, int], widths: tuple[int, ...], depths: tuple[int, ...], name: str, block,
            end=lambda x: x) -> keras.Model:
    """The stage layout both from-scratch backbones share: per stage ``depths[i]`` ``block(x, width,
    prefix, first, last)`` (a 3×3 convolution, batch norm, ReLU), a 2×2 max-pool before every stage
    but the first; then ``end``."""
    min_size = 2 ** (len(widths) - 1)
    if shape[0] < min_size:
        raise ValueError(f"{len(widths)} stages need an image of at least {min_size} px, got {shape[0]}")
    inputs = keras.Input(shape=shape, name=f"{name}_input")
    x = inputs
    for stage, (width, depth) in enumerate(zip(widths, depths), start=1):
        if stage > 1:
            x = keras.layers.MaxPooling2D(2, name=f"stage{stage}_pool")(x)
        for conv in range(1, depth + 1):
            x = block(x, int(width), f"stage{stage}_conv{conv}", first=stage == 1 and conv == 1,
                      last=stage == len(widths) and conv == depth)
    return keras.Model(inputs, end(x), name=name)


def _small_cnn(shape: tuple[int, int, int], widths: tuple[int, ...], depths: tuple[int, ...], name: str) -> keras.Model:
    if not widths or any(int(w) < 1 for w in widths):
        raise ValueError(f"small_cnn needs at least one positive width, got {widths}")

    def block(x, width, prefix, first, last):
        x = keras.layers.Conv2D(width, 3, padding="same", use_bias=False, name=prefix)(x)
        # Momentum 0.9 (not 0.99): small catalogs give few steps per epoch, and the moving
        # statistics used at inference must catch up within a few epochs.
        x = keras.layers.BatchNormalization(momentum=0.9, name=f"{prefix}_bn")(x)
        return keras.layers.ReLU(name=FEATURES_LAYER if last else f"{prefix}_relu")(x)
    return _stages(shape, widths, depths, name, block)


def _d4_cnn(shape: tuple[int, int, int], widths: tuple[int, ...], depths: tuple[int, ...], name: str) -> keras.Model:
    """``small_cnn``'s stages with D4 convolutions (``models.equivariant``): ``widths`` count all
    8 copies (same multiply-adds as ``small_cnn`` of those widths), and the last stage's copies
    are max-pooled, so ``features`` has ``widths[-1] / 8`` channels and their global average is
    the same for all 8 rotations/flips of the input (exactly where every stage's map is even-sized
    before its pool, e.g. 64 or 96 px with 4 stages)."""
    from models.equivariant import ORDER, D4Conv2D, GroupPool, TiedBatchNorm

    if not widths or any(int(w) < ORDER or int(w) % ORDER for w in widths):
        raise ValueError(f"d4_cnn widths count 8 copies of each channel: positive multiples of {ORDER}, got {widths}")

    def block(x, width, prefix, first, last):
        x = D4Conv2D(width // ORDER, lifting=first, name=prefix)(x)
        x = TiedBatchNorm(momentum=0.9, name=f"{prefix}_bn")(x)  # momentum: as small_cnn's
        return keras.layers.ReLU(name=f"{prefix}_relu")(x)

    def end(x):  # the last ReLU, a no-op on pooled ReLU maps, is the named Grad-CAM target
        return keras.layers.ReLU(name=FEATURES_LAYER)(GroupPool(name="group_pool")(x))
    return _stages(shape, widths, depths, name, block, end)


def _application(shape: tuple[int, int, int], cfg: BackboneConfig, name: str) -> keras.Model:
    constructor = getattr(keras.applications, cfg.name, None)
    if constructor is None or isinstance(constructor, types.ModuleType) or not callable(constructor):
        available = sorted(
            n for n, v in vars(keras.applications).items()
            if n[:1].isupper() and callable(v) and not isinstance(v, types.ModuleType)
        )
        raise ValueError(
            f"unknown backbone {cfg.name!r}: use {SMALL_CNN!r}, {D4_CNN!r} or a keras.applications "
            f"constructor, one of {available}"
        )
    weights = None if cfg.weights is None else _weights_path(cfg.weights)  # fail before building
    app = constructor(include_top=False, weights=None, input_shape=shape)
    if weights is not None:
        _load_weights(app, weights)
    inputs = keras.Input(shape=shape, name=f"{name}_input")
    x = app(inputs)
    x = keras.layers.ReLU(name=FEATURES_LAYER)(x)
    return keras.Model(inputs, x, name=name)


def _weights_path(path: str) -> Path:
    p = Path(path).expanduser()
    if not p.name.endswith(".weights.h5"):
        raise ValueError(f"backbone weights must be a Keras '.weights.h5' file, got {str(p)!r}")
    if not p.is_file():
        raise FileNotFoundError(f"backbone weights file not found: {str(p)!r}")
    return p


def _load_weights(model: keras.Model, path: Path) -> None:
    """The one file read of the model builders: local backbone weights (never downloaded)."""
    model.load_weights(str(path))
