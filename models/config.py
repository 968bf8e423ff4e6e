"""Model configuration: plain frozen dataclasses, saved inside every artifact (the sidecar JSON
next to each ``.keras`` file) and read back at inference, never re-declared elsewhere."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from catalogs.inputs import ImageSpec  # the model input contract lives with the catalogs


@dataclass(frozen=True)
class BackboneConfig:
    """The shared feature extractor.

    ``name="d4_cnn"`` (default) is a from-scratch CNN of ``widths``, two 3×3 convolutions per
    stage with batch norm and ReLU, max-pool between stages, whose convolutions commute with the
    8 rotations/flips of the square (``models.equivariant``): its pooled features do not change
    when the input is rotated by 90° or flipped; ``widths`` count the 8 copies of each channel.
    It beat the plain CNN (``"small_cnn"``, the same without the symmetry) in the ablation ledger
    (docs/models.md). Any other name is a ``keras.applications`` constructor (e.g. ``"ResNet50"``)
    built with ``weights=None``, or with a local weights file given in ``weights`` (nothing is
    downloaded).
    """

    name: str = "d4_cnn"
    widths: tuple[int, ...] = (32, 64, 128, 256)
    # convolutions per stage (None: two each). The first stage works on the full-resolution map,
    # the largest activations of the network (the ablation's `lean-stem` gives it one).
    depths: tuple[int, ...] | None = None
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
class TrainSettings:
    """How models are trained: the one home of the training defaults (the CLI, the flows and the
    benchmarks read them from here)."""

    # 24 epochs (~100,000 images seen) of the ~4,000 training galaxies of both shared real
    # catalogs: the budget at which exploration stopped gaining; the cosine schedule spans them.
    epochs: int = 24
    # 64 won the 12-epoch ablation ledger and trains ×1.2 faster per image, but at 24 epochs its
    # evaluate --cv 5 fell behind 32 on every catalog (benchmarks/results/cv5-batch64.md).
    batch_size: int = 32
    learning_rate: float = 2e-3
    patience: int = 15  # epochs without val_loss improvement before stopping
    seed: int = 0
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    # power of the balanced class weights (0: none, 1: fully balanced). 1 over five classes weighs
    # one of the 37 GZ1 artifacts ~90× an elliptical and floods the rare classes with ellipticals.
    class_balance: float = 0.5
    augment: str = "d4"  # models.data.AUGMENTATIONS
    weight_decay: float = 0.0  # AdamW's decoupled weight decay
    # models.precision: "auto" trains in bfloat16 mixed precision where the CPU has bfloat16
    # instructions (the saved models are float32 either way).
    precision: str = "auto"
    # models.heads: "scheme" gives every label scheme (GZ2 rule, GZ1, Kaggle, …) its own class
    # head; "union" one softmax over every catalog's classes.
    class_heads: str = "scheme"
    # models.heads: weight of the volunteers' class shares in a voted row's class target (0: the
    # rule's hard label only). 0.5 beat 0 in all 3 folds of the ablation ledger on GZ2's supported,
    # visible and confident labels (+5 to +7 points) and on Kaggle (+3); it recalls fewer GZ2
    # mergers (docs/models.md).
    soft_targets: float = 0.5
    # models.data.training_set: which vote fractions the regressor learns, "debiased" (the
    # catalog's) or "raw" (before the redshift debiasing: what is in the pixels); "both": the
    # regressor learns the debiased ones and a second head, in training only, the raw ones.
    vote_targets: str = "debiased"
    # models.pseudo: with unlabelled catalogs, the loss on the teacher's pseudo-labels weighs this
    # much of the loss on the volunteers' labels (FixMatch's λ_u = 1; unused without them).
    pseudo_weight: float = 1.0


@dataclass(frozen=True)
class ModelConfig:
    image: ImageSpec = field(default_factory=ImageSpec)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    captioner: CaptionerConfig = field(default_factory=CaptionerConfig)

    def to_dict(self) -> dict:
        return asdict(self)

    def backbone_mismatch(self, other: "ModelConfig") -> str | None:
        """Why a backbone trained with ``other`` cannot serve this config (None when it can): its
        weights fit only the same backbone on the same input."""
        mine = {"image": asdict(self.image), "backbone": asdict(self.backbone)}
        theirs = {"image": asdict(other.image), "backbone": asdict(other.backbone)}
        if mine == theirs:
            return None
        return f"this run's image/backbone config {mine} differs from the backbone's {theirs}"

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


def with_defaults(defaults: dict, recorded: dict) -> dict:
    """``recorded`` (a config or settings dict some earlier code wrote) over ``defaults``, nested:
    fields added since it was written read as their default, which by this project's rule is the
    behaviour before they existed."""
    return {k: with_defaults(v, recorded.get(k, {})) if isinstance(v, dict) else recorded.get(k, v)
            for k, v in defaults.items()} | {k: v for k, v in recorded.items() if k not in defaults}


def recorded_protocol(protocol: dict) -> dict:
    """A kept protocol's ``config`` and ``settings`` read with the fields added since as their
    defaults (:func:`with_defaults`), the rest as it is."""
    defaults = {"config": ModelConfig().to_dict(), "settings": asdict(TrainSettings())}
    return {k: with_defaults(defaults[k], v) if k in defaults and isinstance(v, dict) else v
            for k, v in protocol.items()}
