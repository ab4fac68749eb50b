"""The training loop: Adam, BCE or KD loss, validation-F1 model selection, early stopping."""

from __future__ import annotations

import copy
import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from packd.distill import bce_loss, kd_loss
from packd.metrics import best_threshold, evaluate_scores, micro_f1
from packd.models import init_output_bias
from packd.optim import make_adam

# "bce" or ("kd", alpha, temperature[, scale_soft_by_t2])
LossSpec = str | tuple[str, float, float] | tuple[str, float, float, bool]


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


def _parse_loss(loss: LossSpec) -> tuple[float, float, bool] | None:
    """None for BCE, (alpha, temperature, scale_soft_by_t2) for KD (scaled when not given)."""
    if loss == "bce":
        return None
    if isinstance(loss, Sequence) and len(loss) in (3, 4) and loss[0] == "kd":
        alpha, temperature = float(loss[1]), float(loss[2])
        scale = bool(loss[3]) if len(loss) == 4 else True
        if not 0.0 <= alpha <= 1.0 or temperature <= 0:
            raise ValueError(f"KD needs 0 <= alpha <= 1 and T > 0, got {loss}")
        return alpha, temperature, scale
    raise ValueError(
        f"loss must be 'bce' or ('kd', alpha, temperature[, scale_soft_by_t2]), got {loss!r}"
    )


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


def train_model(
    model: nn.Module,
    train: Sequence[np.ndarray | torch.Tensor],
    val: Sequence[np.ndarray | torch.Tensor],
    *,
    loss: LossSpec = "bce",
    epochs: int,
    lr: float,
    batch_size: int,
    patience: int,
    seed: int,
    min_epochs: int = 1,
    device: torch.device | str = "auto",
    amp: bool | str = "auto",
    log: Callable[[str], None] | None = None,
    max_seconds: float | None = None,
    test: Sequence[np.ndarray | torch.Tensor] | None = None,
    plateau_f1: float | None = None,
    schedule: str = "constant",
    initial_candidate: bool = False,
) -> TrainResult:
    """Train with Adam; keep the epoch with the best validation micro-F1 (at its best threshold).

    train is (inputs, labels) or (inputs, labels, teacher_logits) for KD; val and the optional
    test are (inputs, labels). Test F1 is only recorded (the authors' protocol), never used for
    selection. Validation loss is BCE on labels for every loss, so runs compare. max_seconds is
    checked after each epoch. plateau_f1: the validation F1 of the label frequencies alone; no
    early stop while the best epoch is not above it (the model still sits on that plateau).
    schedule: "constant" keeps lr; "cosine" decays it per step to 0 at the last epoch.
    initial_candidate: the model as given is scored first, as epoch 0, and kept unless a trained
    epoch beats it on validation (fine-tuning a warm start can then never make it worse).
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown learning-rate schedule {schedule!r}; valid: {SCHEDULES}")
    log = log or (lambda line: None)
    device = resolve_device(device) if isinstance(device, str) else device
    kd_params = _parse_loss(loss)
    train_inputs = _as_tensor(train[0], torch.float32)
    train_labels = _as_tensor(train[1], torch.bool)
    teacher_logits = _as_tensor(train[2], torch.float32) if len(train) > 2 else None
    if kd_params is not None and teacher_logits is None:
        raise ValueError("KD loss needs teacher logits as the third element of train")
    val_inputs, val_labels = _as_tensor(val[0], torch.float32), _as_tensor(val[1], torch.bool)
    if device.type == "cuda":  # a split fits in GPU memory; saves a host copy per batch
        train_inputs, train_labels = train_inputs.to(device), train_labels.to(device)
        teacher_logits = teacher_logits.to(device) if teacher_logits is not None else None
    autocast_dtype = _autocast_dtype(device, amp)
    scaler = torch.amp.GradScaler("cuda", enabled=autocast_dtype == torch.float16)
    model = model.to(device)
    optimizer = make_adam(model.parameters(), lr, device)
    order_generator = torch.Generator().manual_seed(seed)
    n_train = train_inputs.shape[0]
    total_steps, step = epochs * math.ceil(n_train / batch_size), 0

    history: list[dict[str, float]] = []
    best_state, best_epoch, best_f1, best_thr = None, 0, -1.0, 0.5
    stop_reason, started = "max epochs", time.perf_counter()
    if initial_candidate:
        val_loss, val_probs = _evaluate(model, val_inputs, val_labels, batch_size, device)
        best_thr, best_f1 = best_threshold(val_labels.numpy(), val_probs)
        record = {"epoch": 0, "val_loss": val_loss, "val_f1": best_f1, "val_threshold": best_thr}
        if test is not None:
            record.update(_test_record(model, test, best_thr, batch_size, device))
        history.append(record)
        best_state = {
            name: tensor.detach().cpu().clone() for name, tensor in model.state_dict().items()
        }
        log(f"epoch 0 (as given) val_loss {val_loss:.5f} val_f1 {best_f1:.4f}")
    for epoch in range(1, epochs + 1):
        epoch_start = time.perf_counter()
        model.train()
        order = torch.randperm(n_train, generator=order_generator).to(train_inputs.device)
        loss_sum = torch.zeros((), device=device)  # summed on device: no sync per step
        for start in range(0, n_train, batch_size):
            rows = order[start : start + batch_size]
            batch_inputs = train_inputs[rows].to(device, non_blocking=True)
            batch_labels = train_labels[rows].to(device, non_blocking=True)
            with torch.autocast(
                device.type, dtype=autocast_dtype or torch.float32, enabled=bool(autocast_dtype)
            ):
                logits = model(batch_inputs)
            if kd_params is None:
                batch_loss = bce_loss(logits.float(), batch_labels)
            else:
                batch_teacher = teacher_logits[rows].to(device, non_blocking=True)
                batch_loss = kd_loss(logits, batch_teacher, batch_labels, *kd_params)
            optimizer.zero_grad(set_to_none=True)
            if schedule == "cosine":
                for group in optimizer.param_groups:
                    group["lr"] = cosine_lr(lr, step, total_steps)
                step += 1
            scaler.scale(batch_loss).backward()
            scaler.step(optimizer)
            scaler.update()
            loss_sum += batch_loss.detach() * rows.numel()
        train_seconds = time.perf_counter() - epoch_start

        val_loss, val_probs = _evaluate(model, val_inputs, val_labels, batch_size, device)
        val_thr, val_f1 = best_threshold(val_labels.numpy(), val_probs)
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
        if val_f1 > best_f1:
            best_f1, best_thr, best_epoch = val_f1, val_thr, epoch
            best_state = {
                name: tensor.detach().cpu().clone() for name, tensor in model.state_dict().items()
            }
        elif (
            epoch - best_epoch >= patience
            and epoch >= min_epochs
            and (plateau_f1 is None or best_f1 > plateau_f1)
        ):
            # min_epochs: sequence models sit on a plateau (label marginals) for a few epochs
            # before they learn from the inputs; stopping there would keep the plateau.
            stop_reason = f"early stop: no val F1 gain for {patience} epochs"
            break
        if max_seconds is not None and elapsed >= max_seconds:
            stop_reason = f"time limit: {elapsed:.0f}s >= {max_seconds:.0f}s"
            break
    log(f"stopped ({stop_reason}); best epoch {best_epoch} val_f1 {best_f1:.4f}")
    if best_state is None:
        best_state = copy.deepcopy({k: v.cpu() for k, v in model.state_dict().items()})
    return TrainResult(best_state, history, best_epoch, best_f1, best_thr, str(device), stop_reason)


@dataclass(frozen=True)
class PhaseSettings:
    """One training phase's budget (teacher or student), resolved from the config's `train`."""

    epochs: int
    lr: float
    batch_size: int
    patience: int
    min_epochs: int
    prior_bias: bool
    amp: bool | str
    device: str
    schedule: str = "constant"

    @classmethod
    def from_config(cls, train_config: Mapping[str, Any], phase: str, arch: str) -> PhaseSettings:
        """The phase's settings; train.lr_by_arch overrides the phase's learning rate per arch."""
        budget = train_config[phase]
        by_arch = train_config.get("lr_by_arch", {}).get(arch, {})
        return cls(
            epochs=budget["epochs"],
            lr=by_arch.get(phase, budget["lr"]),
            batch_size=budget["batch_size"],
            patience=budget["patience"],
            min_epochs=budget.get("min_epochs", 1),
            prior_bias=train_config.get("prior_bias", True),
            amp=train_config.get("amp", "auto"),
            device=train_config.get("device", "auto"),
            schedule=budget.get("schedule", "constant"),
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
    loss: LossSpec,
    seed: int,
    log: Callable[[str], None] | None = None,
    initial_candidate: bool = False,
) -> TrainResult:
    """train_model on splits' val (and test, recorded only) with one phase's settings; the
    output bias first starts at the labels' log-odds when settings.prior_bias (never for an
    initial candidate, a warm start whose bias is already trained)."""
    if settings.prior_bias and not initial_candidate:
        init_output_bias(model, train[1])
    plateau = frequency_f1(train[1], splits["val"]["labels"])
    if log is not None:
        log(f"label-frequency plateau: validation F1 {plateau:.4f} (no early stop at or below it)")
    return train_model(
        model,
        train,
        (splits["val"]["inputs"], splits["val"]["labels"]),
        test=(splits["test"]["inputs"], splits["test"]["labels"]),
        loss=loss,
        epochs=settings.epochs,
        lr=settings.lr,
        batch_size=settings.batch_size,
        patience=settings.patience,
        min_epochs=settings.min_epochs,
        seed=seed,
        device=resolve_device(settings.device),
        amp=settings.amp,
        log=log,
        plateau_f1=plateau,
        schedule=settings.schedule,
        initial_candidate=initial_candidate,
    )
