"""The LightningModule's options, grouped by concern: each group is a small typed object that the CLI reads as
nested keys (``model.optim.lr``, ``model.schedule.warmup_epochs``, ...), checks its own values (one line naming
the key), and says beside its fields which of them an exact resume may change (``RESUME_NEUTRAL``: where things
run and how the run is watched) and which define what is trained (``TRAINING``). A test fails when a field is in
neither or both, so a new option cannot silently turn an exact resume into a new stage or the other way round.

Why our own groups rather than LightningCLI's optimiser injection (``--optimizer torch.optim.SGD``): a run here
plans its schedule over the stage's real horizon once the loader exists and replans it on resume, builds
parameter groups (a slower body, faster normalisation layers, no decay on 1-d parameters) and offers Keras'
RMSprop; injection hands the optimiser ``model.parameters()`` and a fixed scheduler, which can do none of these.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, ClassVar, Literal

from pytorch_lightning.utilities import rank_zero_warn

from ..checks import check_choice, check_number
from ..errors import BadValue
from ..models import WeightInit
from .schedule import Scheduler, WarmupMode

Optimizer = Literal["sgd", "adam", "adamw", "rmsprop", "rmsprop_keras"]
TTA = Literal["none", "flip", "flip_translate"]
CompileMode = Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]


@dataclass
class _Group:
    """What every group shares (itself a dataclass, so that jsonargparse reads every group as plain nested keys,
    never as a ``class_path`` to import): built from itself, a mapping (a checkpoint's hyper-parameters) or None."""

    KEY: ClassVar[str]
    RESUME_NEUTRAL: ClassVar[frozenset[str]] = frozenset()
    TRAINING: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def of(cls, value: Any):
        if value is None:
            return cls()
        if isinstance(value, cls):
            return replace(value)  # a copy: a default instance is shared by every call
        if isinstance(value, Mapping):
            unknown = sorted(set(value) - {f.name for f in fields(cls)})
            if unknown:
                raise BadValue(
                    f"model.{cls.KEY} has no {', '.join(unknown)}; its keys are {', '.join(f.name for f in fields(cls))}"
                )
            return cls(**value)
        raise BadValue(f"model.{cls.KEY} must be a mapping of its keys, got {type(value).__name__}")

    def plain(self) -> dict[str, Any]:
        """Plain values for hyper-parameters and checkpoints (lists, not tuples)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def check(self) -> None:
        raise NotImplementedError


@dataclass
class Optim(_Group):
    """The optimiser.

    Args:
        name: ``sgd``, ``adam``, ``adamw``, ``rmsprop`` (torch's: divides by ``sqrt(v) + 1e-8``) or
            ``rmsprop_keras`` (Keras' RMSprop, the default optimiser of Keras' ``compile()``: divides by
            ``sqrt(v + 1e-7)``, decoupled weight decay; Keras' default LR is 0.001).
        lr: peak learning rate (after warmup).
        momentum: SGD's momentum. nesterov: SGD only.
        betas: Adam/AdamW only.
        rho: RMSprop only: decay of the mean squared gradient (Keras' ``rho``, torch's ``alpha``).
        rmsprop_momentum: RMSprop only.
        weight_decay: L2 (SGD, Adam, RMSprop) or decoupled (AdamW, and ``rmsprop_keras`` as Keras decays:
            ``w -= lr * weight_decay * w``) weight decay.
        no_decay_bn_bias: exempt BatchNorm weights and all biases (every 1-d parameter) from weight decay.
        body_lr_factor: LR of everything but the final classifier relative to ``lr`` (e.g. 0.1 to fine-tune a
            pretrained body gently while a new head learns fast). Frozen parameters (``FreezeBackbone``) stay
            in the optimiser without gradients, so unfreezing later needs no new parameter group.
        bias_lr_factor: LR of the normalisation layers' parameters (BatchNorm scales and shifts) relative to
            ``lr``, with their weight decay divided by the same factor so the decay per step stays the same (the
            speed recipes use 64 for BatchNorm; airbench's other biases, the whitening conv's, stay in the base
            group).
    """

    KEY: ClassVar[str] = "optim"
    TRAINING: ClassVar[frozenset[str]] = frozenset({
        "name", "lr", "momentum", "nesterov", "betas", "rho", "rmsprop_momentum", "weight_decay",
        "no_decay_bn_bias", "body_lr_factor", "bias_lr_factor",
    })  # fmt: skip

    name: Optimizer = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = False
    betas: tuple[float, float] = (0.9, 0.999)
    rho: float = 0.9
    rmsprop_momentum: float = 0.0
    weight_decay: float = 5e-4
    no_decay_bn_bias: bool = False
    body_lr_factor: float = 1.0
    bias_lr_factor: float = 1.0

    def check(self) -> None:
        check_choice("model.optim.name", self.name, Optimizer)
        check_number("model.optim.lr", self.lr, 0, None)
        check_number("model.optim.momentum", self.momentum, 0, 1, hi_open=True)
        check_number("model.optim.rho", self.rho, 0, 1, hi_open=True)
        check_number("model.optim.rmsprop_momentum", self.rmsprop_momentum, 0, 1, hi_open=True)
        for i, b in enumerate(self.betas):
            check_number(f"model.optim.betas[{i}]", b, 0, 1, hi_open=True)
        check_number("model.optim.weight_decay", self.weight_decay, 0, 1)
        check_number("model.optim.body_lr_factor", self.body_lr_factor, 0, None)
        check_number("model.optim.bias_lr_factor", self.bias_lr_factor, 0, None, lo_open=True)


@dataclass
class Schedule(_Group):
    """The learning-rate schedule, planned over each stage's own steps.

    Args:
        name: ``constant``, ``multistep``, ``cosine``, ``linear`` (down to ``min_lr``) or ``onecycle`` (torch's
            OneCycleLR curve).
        interval: ``step``: cosine/multistep move every optimiser step; ``epoch``: only at epoch starts. Warmup
            always rises per step, and one-cycle is always per step.
        warmup_epochs: warmup length in epochs (fractions allowed); for onecycle, its rising part.
        warmup_share: the warmup as a share of the stage's steps instead (0.23: the first 23%, as the speed
            recipes define it), so a config keeps its recipe at any ``trainer.max_epochs``; not with
            ``warmup_epochs``.
        warmup_mode: ``linear`` (from ``warmup_factor`` to 1) or ``constant`` (``warmup_factor`` throughout, as
            He et al. warm ResNet-110 up at 0.01 before 0.1).
        warmup_factor: see ``warmup_mode``.
        milestones: epochs (counted from the stage's first epoch) at which ``multistep`` multiplies the LR by
            ``gamma``: one factor, or a list with one factor per milestone.
        min_lr: where ``cosine`` and ``linear`` end.
        cycle_momentum: one-cycle only: [low, high] momentum (Adam: beta1) cycled against the LR, high at both
            ends (torch's OneCycleLR uses [0.85, 0.95]); null keeps ``optim.momentum`` fixed.
    """

    KEY: ClassVar[str] = "schedule"
    TRAINING: ClassVar[frozenset[str]] = frozenset({
        "name", "interval", "warmup_epochs", "warmup_share", "warmup_mode", "warmup_factor", "milestones", "gamma",
        "min_lr", "cycle_momentum",
    })  # fmt: skip

    name: Scheduler = "cosine"
    interval: Literal["step", "epoch"] = "step"
    warmup_epochs: float = 0.0
    warmup_share: float | None = None
    warmup_mode: WarmupMode = "linear"
    warmup_factor: float = 0.0
    milestones: list[int] | None = None
    gamma: float | list[float] = 0.1
    min_lr: float = 0.0
    cycle_momentum: tuple[float, float] | None = None

    def check(self, lr: float) -> None:
        check_choice("model.schedule.name", self.name, Scheduler)
        check_choice("model.schedule.interval", self.interval, ("step", "epoch"))
        check_choice("model.schedule.warmup_mode", self.warmup_mode, WarmupMode)
        check_number("model.schedule.warmup_epochs", self.warmup_epochs, 0, None)
        if self.warmup_share is not None:
            check_number("model.schedule.warmup_share", self.warmup_share, 0, 1, hi_open=True)
            if self.warmup_epochs:
                raise BadValue(
                    "give model.schedule.warmup_share (a share of the run) or model.schedule.warmup_epochs, not both"
                )
        check_number("model.schedule.warmup_factor", self.warmup_factor, 0, 1,
                     lo_open=self.warmup_mode == "constant")  # fmt: skip
        check_number("model.schedule.min_lr", self.min_lr, 0, max(lr, 0))
        milestones = list(self.milestones or [])
        for m in milestones:
            check_number("model.schedule.milestones", m, 1, integer=True)
        if milestones != sorted(set(milestones)):
            raise BadValue(f"model.schedule.milestones must rise, each once: got {milestones}")
        gammas = self.gamma if isinstance(self.gamma, (list, tuple)) else [self.gamma]
        for g in gammas:
            check_number("model.schedule.gamma", g, 0, None, lo_open=True)
        if isinstance(self.gamma, (list, tuple)) and len(self.gamma) != len(milestones):
            raise BadValue(
                f"model.schedule.gamma lists {len(self.gamma)} factors for {len(milestones)} milestones; give one "
                f"per milestone"
            )
        if self.name == "multistep" and not milestones:
            raise BadValue(
                "model.schedule.name multistep needs model.schedule.milestones (epochs at which the LR drops)"
            )
        if self.cycle_momentum is not None:
            low, high = self.cycle_momentum
            check_number("model.schedule.cycle_momentum[0]", low, 0, 1, hi_open=True)
            check_number("model.schedule.cycle_momentum[1]", high, low, 1, hi_open=True)
            if self.name != "onecycle":  # e.g. a one-cycle config run with --model.schedule.name cosine
                rank_zero_warn(
                    f"model.schedule.cycle_momentum {list(self.cycle_momentum)} does nothing with schedule "
                    f"{self.name}"
                )


@dataclass
class Average(_Group):
    """A moving average of the weights, which validation, test and prediction use.

    Args:
        decay: keep an exponential moving average of the net's weights (and BN statistics), updated every
            ``every`` steps with this decay. None: no average.
        every: steps between updates.
        ramp: the decay grows from 0 to ``decay`` as (progress of the run) ** ``ramp`` (0: constant; the speed
            recipes use 3, so the average follows the net closely early on).
        lookahead: copy the average back into the trained net at each update (lookahead, as the speed recipes
            do), instead of only evaluating with it.
    """

    KEY: ClassVar[str] = "average"
    TRAINING: ClassVar[frozenset[str]] = frozenset({"decay", "every", "ramp", "lookahead"})

    decay: float | None = None
    every: int = 1
    ramp: float = 0.0
    lookahead: bool = False

    def check(self) -> None:
        if self.decay is not None:
            check_number("model.average.decay", self.decay, 0, 1, lo_open=True, hi_open=True)
        check_number("model.average.every", self.every, 1, integer=True)
        check_number("model.average.ramp", self.ramp, 0, 10)


@dataclass
class Evaluation(_Group):
    """How test and prediction score an image.

    Args:
        tta: test-time augmentation: ``flip`` averages the logits of each image and its mirror;
            ``flip_translate`` also of both shifted by one pixel diagonally (6 views). Validation stays one view
            (it runs every epoch and picks the best checkpoint; the test score is the TTA one).
    """

    KEY: ClassVar[str] = "evaluation"
    TRAINING: ClassVar[frozenset[str]] = frozenset(
        {"tta"}
    )  # it changes the test score a finished run records

    tta: TTA = "none"

    def check(self) -> None:
        check_choice("model.evaluation.tta", self.tta, TTA)


@dataclass
class Runtime(_Group):
    """Where and how fast the same arithmetic runs: none of these changes what is trained.

    Args:
        sync_every: the per-step checks that wait for the device (the non-finite loss check, the progress bar's
            step loss) every N steps (0: never), so a fast GPU loop does not stall on each step.
        channels_last: keep the net's weights and inputs in NHWC memory format (faster convolutions on a CPU
            with oneDNN and with tensor cores under bf16/fp16 on recent GPUs).
        compile: compile the net's forward with ``torch.compile`` (the first steps are slow while it compiles).
        compile_mode: ``torch.compile`` mode: None (default), ``reduce-overhead``, ``max-autotune``, ...
    """

    KEY: ClassVar[str] = "runtime"
    RESUME_NEUTRAL: ClassVar[frozenset[str]] = frozenset(
        {"sync_every", "channels_last", "compile", "compile_mode"}
    )

    sync_every: int = 1
    channels_last: bool = False
    compile: bool = False
    compile_mode: CompileMode | None = None

    def check(self) -> None:
        check_number("model.runtime.sync_every", self.sync_every, 0, integer=True)
        if self.compile_mode is not None:
            check_choice("model.runtime.compile_mode", self.compile_mode, CompileMode)


@dataclass
class Init(_Group):
    """Where the net's weights start. A resume restores the weights, so none of these changes it.

    Args:
        scheme: ``default`` (the net's own start: torch's layer defaults) or ``keras`` (Glorot-uniform kernels
            and zero biases in every conv and linear layer, as Keras' Conv2D/Dense start); not with ``weights``.
        weights: start the net from this weights file (our checkpoint or a plain state dict). Not with
            ``fit --ckpt_path`` unless it is the file the checkpoint's own run started from (a resume continues
            the checkpoint's weights, a new stage starts from them).
        strict: with ``weights``, require every name and shape to fit; if false, load what fits and list the
            rest.
    """

    KEY: ClassVar[str] = "init"
    RESUME_NEUTRAL: ClassVar[frozenset[str]] = frozenset({"scheme", "weights", "strict"})

    scheme: WeightInit = "default"
    weights: str | None = None
    strict: bool = True

    def check(self) -> None:
        check_choice("model.init.scheme", self.scheme, WeightInit)
        if self.scheme != "default" and self.weights:
            raise BadValue(
                f"model.init.scheme {self.scheme} and model.init.weights {self.weights} both say where the net "
                f"starts (the weights would overwrite the {self.scheme} start); give one of them"
            )


GROUPS: tuple[type[_Group], ...] = (Optim, Schedule, Average, Evaluation, Runtime, Init)

#: ImageClassifier's own arguments outside the groups, classified the same way (num_classes and class_names are
#: linked from the data and compared through it)
TOP_LEVEL_TRAINING = frozenset({"net", "net_kwargs", "label_smoothing"})
TOP_LEVEL_LINKED = frozenset({"num_classes", "class_names", "image_size"})


def resume_neutral_keys() -> tuple[str, ...]:
    """Every ``model.<group>.<field>`` an exact resume may change."""
    return tuple(sorted(f"model.{g.KEY}.{name}" for g in GROUPS for name in g.RESUME_NEUTRAL))
