"""Model configuration: plain frozen dataclasses, saved inside every artifact (the sidecar JSON
next to each ``.keras`` file) and read back at inference, never re-declared elsewhere."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields


@dataclass(frozen=True)
class ImageSpec:
    """How a cutout becomes a model input, identically in training, export and annotation.

    The centre ``crop`` fraction of the (square-resized) cutout is kept, then resized to
    ``size``×``size``; pixels are scaled to [0, 1] (``x / 255``). Cropping by a *fraction* makes
    the same model serve GZ2's 424 px cutouts and the 224 px thumbnails of the shared sample.
    """

    size: int = 64
    crop: float = 0.5
    channels: int = 3
    scale: float = 1.0 / 255.0

    def __post_init__(self) -> None:
        if self.size < 16:
            raise ValueError(f"image size must be ≥ 16 px, got {self.size}")
        if not 0.1 <= self.crop <= 1.0:
            raise ValueError(f"crop must be a fraction in [0.1, 1], got {self.crop}")


@dataclass(frozen=True)
class BackboneConfig:
    """The shared feature extractor.

    ``name="small_cnn"`` (default) is a from-scratch CNN of ``widths``, two 3×3 convolutions
    per stage with batch norm and ReLU, max-pool between stages. Any other name is a
    ``keras.applications`` constructor (e.g. ``"ResNet50"``) built with ``weights=None``, or with a
    local weights file given in ``weights`` (nothing is downloaded).
    """

    name: str = "small_cnn"
    widths: tuple[int, ...] = (32, 64, 128, 128)
    weights: str | None = None


@dataclass(frozen=True)
class HeadConfig:
    """GAP → Dense(hidden) → ReLU → Dense(out): the form Grad-CAM is exported for in-graph."""

    hidden: int = 128
    dropout: float = 0.3


@dataclass(frozen=True)
class CaptionerConfig:
    embed_dim: int = 64
    units: int = 256
    max_len: int = 40  # tokens including <bos> and <eos>


@dataclass(frozen=True)
class ModelConfig:
    image: ImageSpec = field(default_factory=ImageSpec)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    captioner: CaptionerConfig = field(default_factory=CaptionerConfig)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        def build(kind, values):
            known = {f.name for f in fields(kind)}
            unknown = set(values) - known
            if unknown:
                raise ValueError(f"{kind.__name__}: unknown settings {sorted(unknown)}")
            return kind(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})

        return cls(
            image=build(ImageSpec, data.get("image", {})),
            backbone=build(BackboneConfig, data.get("backbone", {})),
            head=build(HeadConfig, data.get("head", {})),
            captioner=build(CaptionerConfig, data.get("captioner", {})),
        )
