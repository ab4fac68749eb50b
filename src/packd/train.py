"""The training loop: Adam, BCE or KD loss, validation-F1 model selection, early stopping."""

from __future__ import annotations

import copy
import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from packd.distill import bce_loss, kd_loss
from packd.kd_settings import KDSettings
from packd.metrics import best_threshold, evaluate_scores, micro_f1
from packd.models import init_output_bias
from packd.optim import Adam, make_adam


@dataclass
class TrainResult:
    """What train_model returns; best_state is on the CPU."""

    best_state: dict[str, torch.Tensor]
    history: list[dict[str, float]]
    best_epoch: int
    best_val_f1: float
    best_threshold: float
    device: str
    stop_reason: str = "max epochs"
    extra: dict = field(default_factory=dict)


SCHEDULES = ("constant", "cosine")


def cosine_lr(lr: float, step: int, total_steps: int) -> float:
    """The rate at `step` of a cosine decay from lr (step 0) towards 0 (step total_steps)."""
    return 0.5 * lr * (1.0 + math.cos(math.pi * min(step, total_steps) / max(total_steps, 1)))


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda if available else cpu; 'cpu'; 'cuda' (error if unavailable)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device '{name}' requested but CUDA is not available")
    if name == "cpu" or name.startswith("cuda"):
        return torch.device(name)
    raise ValueError(f"unknown device '{name}'; valid: auto, cpu, cuda")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _as_tensor(array: np.ndarray | torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    tensor = torch.as_tensor(array)
    return tensor.to(dtype) if dtype is not None else tensor


def _autocast_dtype(device: torch.device, amp: bool | str) -> torch.dtype | None:
    """Mixed-precision dtype on CUDA when amp is on or 'auto'; None means full precision."""
    if device.type != "cuda" or amp is False:
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


@torch.inference_mode()
def predict_logits(
    model: nn.Module,
    inputs: np.ndarray | torch.Tensor,
    batch_size: int,
    device: torch.device | str,
) -> np.ndarray:
    """Logits, float32 numpy (n, outputs), in eval mode."""
    model = model.to(device).eval()
    inputs = _as_tensor(inputs, torch.float32)
    batches = [
        model(inputs[start : start + batch_size].to(device)).float().cpu()
        for start in range(0, inputs.shape[0], batch_size)
    ]
    return torch.cat(batches).numpy() if batches else np.zeros((0, 256), np.float32)


def _evaluate(
    model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, batch_size: int, device
) -> tuple[float, np.ndarray]:
    """(mean BCE, probabilities) on a held-out split."""
    logits = torch.from_numpy(predict_logits(model, inputs, batch_size, device))
    loss = float(bce_loss(logits, labels))
    return loss, torch.sigmoid(logits).numpy()


def _test_record(
    model: nn.Module, test: Sequence, val_threshold: float, batch_size: int, device
) -> dict[str, float]:
    """Test metrics of one epoch, recorded for the authors' protocol only (never selected on)."""
    test_labels = _as_tensor(test[1], torch.bool)
    _, test_probs = _evaluate(model, test[0], test_labels, batch_size, device)
    test_thr, test_f1 = best_threshold(test_labels.numpy(), test_probs)
    at_test_thr = evaluate_scores(test_labels.numpy(), test_probs, test_thr)
    return {
        "test_f1_best_threshold": test_f1,
        "test_best_threshold": test_thr,
        "test_precision_best_threshold": at_test_thr["precision"],
        "test_recall_best_threshold": at_test_thr["recall"],
        "test_f1_at_0.5": micro_f1(test_labels.numpy(), test_probs, 0.5),
        "test_f1_val_threshold": micro_f1(test_labels.numpy(), test_probs, val_threshold),
    }


@dataclass(frozen=True, kw_only=True)
class PhaseSettings:
    """One training phase's settings (teacher or student), built once from the config's `train`
    by from_config; the defaults are the schema's. train_model reads all but prior_bias, which
    train_phase applies. bn_stats_samples: training samples the BatchNorm statistics are recomputed
    on before each epoch's validation (0: the running averages). max_seconds (a time limit,
    checked after each epoch) has no config key."""

    epochs: int
    lr: float
    batch_size: int
    patience: int
    min_epochs: int = 1
    prior_bias: bool = True
    amp: bool | str = "auto"
    device: str = "auto"
    schedule: str = "constant"
    bn_stats_samples: int = 0
    max_seconds: float | None = None

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ValueError(
                f"unknown learning-rate schedule {self.schedule!r}; valid: {SCHEDULES}"
            )

    @classmethod
    def from_config(cls, train_config: Mapping[str, Any], phase: str, arch: str) -> PhaseSettings:
        """The phase's settings from a validated `train` section (the schema's defaults filled
        in); train.lr_by_arch overrides the phase's learning rate per arch."""
        budget = train_config[phase]
        by_arch = train_config["lr_by_arch"].get(arch, {})
        return cls(
            epochs=budget["epochs"],
            lr=by_arch.get(phase, budget["lr"]),
            batch_size=budget["batch_size"],
            patience=budget["patience"],
            min_epochs=budget["min_epochs"],
            prior_bias=train_config["prior_bias"],
            amp=train_config["amp"],
            device=train_config["device"],
            schedule=budget["schedule"],
            bn_stats_samples=train_config["bn_stats_samples"],
        )


class _TrainTensors(NamedTuple):
    """The training split as tensors: inputs, labels and (for a KD loss) the teacher's logits."""

    inputs: torch.Tensor
    labels: torch.Tensor
    teacher_logits: torch.Tensor | None


def _train_tensors(
    train: Sequence[np.ndarray | torch.Tensor], kd: KDSettings | None, device: torch.device
) -> _TrainTensors:
    """train as tensors, on the GPU when training there (a split fits in GPU memory; it saves a
    host copy per batch)."""
    inputs = _as_tensor(train[0], torch.float32)
    labels = _as_tensor(train[1], torch.bool)
    teacher_logits = _as_tensor(train[2], torch.float32) if len(train) > 2 else None
    if kd is not None and teacher_logits is None:
        raise ValueError("KD loss needs teacher logits as the third element of train")
    if device.type == "cuda":
        inputs, labels = inputs.to(device), labels.to(device)
        teacher_logits = teacher_logits.to(device) if teacher_logits is not None else None
    return _TrainTensors(inputs, labels, teacher_logits)


@dataclass
class _Optimisation:
    """The model with what steps it: Adam, the grad scaler, the autocast dtype and the learning
    rate schedule's step count."""

    model: nn.Module
    optimizer: Adam | torch.optim.Adam
    scaler: torch.amp.GradScaler
    autocast_dtype: torch.dtype | None
    device: torch.device
    settings: PhaseSettings
    total_steps: int
    step: int = 0

    @classmethod
    def start(
        cls, model: nn.Module, settings: PhaseSettings, device: torch.device, n_train: int
    ) -> _Optimisation:
        """The model moved to device, with a fresh optimiser at settings.lr."""
        autocast_dtype = _autocast_dtype(device, settings.amp)
        scaler = torch.amp.GradScaler("cuda", enabled=autocast_dtype == torch.float16)
        model = model.to(device)
        optimizer = make_adam(model.parameters(), settings.lr, device)
        total_steps = settings.epochs * math.ceil(n_train / settings.batch_size)
        return cls(model, optimizer, scaler, autocast_dtype, device, settings, total_steps)

    def batch_loss(
        self,
        batch_inputs: torch.Tensor,
        batch_labels: torch.Tensor,
        batch_teacher: torch.Tensor | None,
        kd: KDSettings | None,
    ) -> torch.Tensor:
        """The loss of one batch: BCE on the labels, or the KD loss with the teacher's logits."""
        with torch.autocast(
            self.device.type,
            dtype=self.autocast_dtype or torch.float32,
            enabled=bool(self.autocast_dtype),
        ):
            logits = self.model(batch_inputs)
        if kd is None or batch_teacher is None:
            return bce_loss(logits.float(), batch_labels)
        return kd_loss(logits, batch_teacher, batch_labels, kd)

    def update(self, batch_loss: torch.Tensor) -> None:
        """One optimiser step on batch_loss, at the schedule's rate for this step."""
        self.optimizer.zero_grad(set_to_none=True)
        if self.settings.schedule == "cosine":
            for group in self.optimizer.param_groups:
                group["lr"] = cosine_lr(self.settings.lr, self.step, self.total_steps)
            self.step += 1
        self.scaler.scale(batch_loss).backward()
        # Enabled on CUDA only, where optimizer is torch's; disabled, it calls optimizer.step().
        self.scaler.step(self.optimizer)  # type: ignore[arg-type]
        self.scaler.update()


def _train_epoch(
    optimisation: _Optimisation,
    train: _TrainTensors,
    kd: KDSettings | None,
    order_generator: torch.Generator,
) -> torch.Tensor:
    """One pass over the training split in a fresh random order; the loss summed over samples,
    on the device (no sync per step)."""
    device, batch_size = optimisation.device, optimisation.settings.batch_size
    optimisation.model.train()
    n_train = train.inputs.shape[0]
    order = torch.randperm(n_train, generator=order_generator).to(train.inputs.device)
    loss_sum = torch.zeros((), device=device)
    for start in range(0, n_train, batch_size):
        rows = order[start : start + batch_size]
        batch_inputs = train.inputs[rows].to(device, non_blocking=True)
        batch_labels = train.labels[rows].to(device, non_blocking=True)
        batch_teacher = None
        # teacher_logits is there whenever kd is (checked by _train_tensors)
        if kd is not None and train.teacher_logits is not None:
            batch_teacher = train.teacher_logits[rows].to(device, non_blocking=True)
        batch_loss = optimisation.batch_loss(batch_inputs, batch_labels, batch_teacher, kd)
        optimisation.update(batch_loss)
        loss_sum += batch_loss.detach() * rows.numel()
    return loss_sum


def recompute_batchnorm_statistics(
    model: nn.Module, inputs: torch.Tensor, samples: int, batch_size: int, device
) -> bool:
    """Set every BatchNorm's running mean and variance to their averages over `samples`
    training inputs (evenly strided over the split, so that every phase of the trace is in), in
    batches of batch_size, in train mode without gradients; False (nothing changed) when the
    model has no BatchNorm or samples is 0.

    The running averages (momentum 0.1) remember only the last few dozen batches: scored with
    them, a ResNet student's validation F1 swings by several hundredths between epochs, and the
    epoch kept is then mostly that noise (docs/method.md)."""
    norms = [
        module for module in model.modules() if isinstance(module, nn.modules.batchnorm._BatchNorm)
    ]
    if not norms or samples <= 0 or inputs.shape[0] == 0:
        return False
    rows = torch.linspace(0, inputs.shape[0] - 1, min(samples, inputs.shape[0])).long()
    subset = inputs[rows.to(inputs.device)]
    momenta = [module.momentum for module in norms]
    was_training = model.training
    for module in norms:
        module.reset_running_stats()
        module.momentum = None  # a cumulative average: exact over the batches below
    model.train()
    with torch.no_grad():
        for start in range(0, subset.shape[0], batch_size):
            model(subset[start : start + batch_size].to(device))
    for module, momentum in zip(norms, momenta, strict=True):
        module.momentum = momentum
    model.train(was_training)
    return True


def _validate(
    model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, batch_size: int, device
) -> tuple[float, float, float]:
    """(mean BCE, best threshold, micro-F1 at that threshold) on the validation split."""
    val_loss, val_probs = _evaluate(model, inputs, labels, batch_size, device)
    val_thr, val_f1 = best_threshold(labels.numpy(), val_probs)
    return val_loss, val_thr, val_f1


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().cpu().clone() for name, tensor in model.state_dict().items()}


@dataclass
class _Best:
    """The epoch kept so far (epoch 0: the model as given): its weights on the CPU, validation
    F1 and threshold."""

    state: dict[str, torch.Tensor] | None = None
    epoch: int = 0
    f1: float = -1.0
    threshold: float = 0.5


def _stop_reason(
    settings: PhaseSettings,
    epoch: int,
    improved: bool,
    best: _Best,
    plateau_f1: float | None,
    elapsed: float,
) -> str | None:
    """Why training stops after epoch (improved: it beat the best), or None to go on."""
    if (
        not improved
        and epoch - best.epoch >= settings.patience
        and epoch >= settings.min_epochs
        and (plateau_f1 is None or best.f1 > plateau_f1)
    ):
        # min_epochs: sequence models sit on a plateau (label marginals) for a few epochs
        # before they learn from the inputs; stopping there would keep the plateau.
        return f"early stop: no val F1 gain for {settings.patience} epochs"
    if settings.max_seconds is not None and elapsed >= settings.max_seconds:
        return f"time limit: {elapsed:.0f}s >= {settings.max_seconds:.0f}s"
    return None


def train_model(
    model: nn.Module,
    train: Sequence[np.ndarray | torch.Tensor],
    val: Sequence[np.ndarray | torch.Tensor],
    settings: PhaseSettings,
    *,
    seed: int,
    kd: KDSettings | None = None,
    test: Sequence[np.ndarray | torch.Tensor] | None = None,
    plateau_f1: float | None = None,
    initial_candidate: bool = False,
    log: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train with Adam; keep the epoch with the best validation micro-F1 (at its best threshold).

    train is (inputs, labels), or (inputs, labels, teacher_logits) with kd, the KD loss's
    settings (None: BCE on the labels); val and the optional test are (inputs, labels). Test F1
    is only recorded (the authors' protocol), never used for selection. Validation loss is BCE
    on labels for every loss, so runs compare. settings: epochs, rate, batch size, early
    stopping, schedule ("constant" keeps lr; "cosine" decays it per step to 0 at the last
    epoch), device and mixed precision; seed draws the batch order.
    plateau_f1: the validation F1 of the label frequencies alone; no early stop while the best
    epoch is not above it (the model still sits on that plateau).
    initial_candidate: the model as given is scored first, as epoch 0, and kept unless a trained
    epoch beats it on validation (fine-tuning a warm start can then never make it worse).
    """
    log = log or (lambda line: None)
    device = resolve_device(settings.device)
    batch_size = settings.batch_size
    train_tensors = _train_tensors(train, kd, device)
    val_inputs, val_labels = _as_tensor(val[0], torch.float32), _as_tensor(val[1], torch.bool)
    optimisation = _Optimisation.start(model, settings, device, train_tensors.inputs.shape[0])
    model = optimisation.model
    order_generator = torch.Generator().manual_seed(seed)
    n_train = train_tensors.inputs.shape[0]

    history: list[dict[str, float]] = []
    best = _Best()
    stop_reason, started = "max epochs", time.perf_counter()
    if initial_candidate:
        val_loss, val_thr, val_f1 = _validate(model, val_inputs, val_labels, batch_size, device)
        record = {"epoch": 0, "val_loss": val_loss, "val_f1": val_f1, "val_threshold": val_thr}
        if test is not None:
            record.update(_test_record(model, test, val_thr, batch_size, device))
        history.append(record)
        best = _Best(_cpu_state(model), 0, val_f1, val_thr)
        log(f"epoch 0 (as given) val_loss {val_loss:.5f} val_f1 {val_f1:.4f}")
    for epoch in range(1, settings.epochs + 1):
        epoch_start = time.perf_counter()
        loss_sum = _train_epoch(optimisation, train_tensors, kd, order_generator)
        train_seconds = time.perf_counter() - epoch_start
        recompute_batchnorm_statistics(
            model, train_tensors.inputs, settings.bn_stats_samples, 1024, device
        )
        val_loss, val_thr, val_f1 = _validate(model, val_inputs, val_labels, batch_size, device)
        record = {
            "epoch": epoch,
            "train_loss": float(loss_sum) / max(n_train, 1),
            "val_loss": val_loss,
            "val_f1": val_f1,
            "val_threshold": val_thr,
            "seconds": time.perf_counter() - epoch_start,
            "samples_per_s": n_train / max(train_seconds, 1e-9),
        }
        if test is not None:
            record.update(_test_record(model, test, val_thr, batch_size, device))
        history.append(record)
        elapsed = time.perf_counter() - started
        log(
            f"epoch {epoch} train_loss {record['train_loss']:.5f} val_loss {val_loss:.5f} "
            f"val_f1 {val_f1:.4f} (threshold {val_thr:.3f}) "
            f"{record['samples_per_s']:.0f} samples/s elapsed {elapsed:.1f}s"
        )
        improved = val_f1 > best.f1
        if improved:
            best = _Best(_cpu_state(model), epoch, val_f1, val_thr)
        reason = _stop_reason(settings, epoch, improved, best, plateau_f1, elapsed)
        if reason is not None:
            stop_reason = reason
            break
    log(f"stopped ({stop_reason}); best epoch {best.epoch} val_f1 {best.f1:.4f}")
    best_state = best.state
    if best_state is None:
        best_state = copy.deepcopy({k: v.cpu() for k, v in model.state_dict().items()})
    return TrainResult(
        best_state, history, best.epoch, best.f1, best.threshold, str(device), stop_reason
    )


def frequency_f1(train_labels: np.ndarray | torch.Tensor, val_labels: np.ndarray) -> float:
    """Validation micro-F1 (best threshold) of scoring every sample with the bits' training
    frequencies: the plateau a fresh model reaches first."""
    frequencies = np.asarray(train_labels, dtype=np.float32).mean(axis=0)
    scores = np.broadcast_to(frequencies, np.shape(val_labels))
    return best_threshold(np.asarray(val_labels), scores)[1]


def train_phase(
    model: nn.Module,
    train: Sequence[np.ndarray | torch.Tensor],
    splits: Mapping[str, Mapping[str, np.ndarray]],
    settings: PhaseSettings,
    *,
    kd: KDSettings | None,
    seed: int,
    log: Callable[[str], None] | None = None,
    initial_candidate: bool = False,
) -> TrainResult:
    """train_model on splits' val (and test, recorded only) with one phase's settings and kd
    (None: BCE on labels); the output bias first starts at the labels' log-odds when
    settings.prior_bias (never for an initial candidate, a warm start whose bias is already
    trained)."""
    if settings.prior_bias and not initial_candidate:
        init_output_bias(model, train[1])
    plateau = frequency_f1(train[1], splits["val"]["labels"])
    if log is not None:
        log(f"label-frequency plateau: validation F1 {plateau:.4f} (no early stop at or below it)")
    return train_model(
        model,
        train,
        (splits["val"]["inputs"], splits["val"]["labels"]),
        settings,
        seed=seed,
        kd=kd,
        test=(splits["test"]["inputs"], splits["test"]["labels"]),
        plateau_f1=plateau,
        initial_candidate=initial_candidate,
        log=log,
    )
