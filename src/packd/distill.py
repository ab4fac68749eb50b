"""Distillation losses for multi-label (per-bit Bernoulli) outputs, and PaCKD teacher routing."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn
from torch.nn.functional import binary_cross_entropy_with_logits, logsigmoid

from packd.kd_settings import KDSettings


def bce_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy of logits against 0/1 labels."""
    return binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))


def bernoulli_kl(teacher_logits: torch.Tensor, student_logits: torch.Tensor) -> torch.Tensor:
    """Element-wise KL(Bernoulli(sigmoid(t)) || Bernoulli(sigmoid(s))), computed in log space."""
    teacher_prob = torch.sigmoid(teacher_logits)
    # log p = logsigmoid(z) and log(1 - p) = logsigmoid(-z): no log(0) for saturated logits
    return teacher_prob * (logsigmoid(teacher_logits) - logsigmoid(student_logits)) + (
        1 - teacher_prob
    ) * (logsigmoid(-teacher_logits) - logsigmoid(-student_logits))


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    kd: KDSettings,
) -> torch.Tensor:
    """alpha * BCE(student, labels) + (1 - alpha) * s * mean Bernoulli KL(teacher || student) at T
    (alpha and T: kd's).

    s = T**2 with kd.scale_soft_by_t2 (Hinton et al.): the soft term's gradient shrinks as
    1/T**2, and the factor keeps its weight against the hard term the same at every T, so that a
    comparison at two temperatures changes the temperature only. s = 1 is the authors' unscaled
    form.
    """
    student_logits = student_logits.float()
    teacher_logits = teacher_logits.float()
    temperature = kd.temperature
    hard = bce_loss(student_logits, labels)
    soft = bernoulli_kl(teacher_logits / temperature, student_logits / temperature).mean()
    scale = temperature**2 if kd.scale_soft_by_t2 else 1.0
    return kd.alpha * hard + (1 - kd.alpha) * scale * soft


@torch.inference_mode()
def teacher_soft_logits(
    teachers: Mapping[int, nn.Module],
    inputs: np.ndarray | torch.Tensor,
    cluster_ids: np.ndarray | torch.Tensor,
    batch_size: int,
    device: torch.device | str,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """(n, 256) logits on the CPU: each sample gets its own cluster's teacher's logits.

    Standard KD is the same call with one teacher and all cluster ids 0.
    """
    inputs = torch.as_tensor(inputs, dtype=torch.float32)
    cluster_ids = torch.as_tensor(np.asarray(cluster_ids), dtype=torch.int64)
    missing = set(torch.unique(cluster_ids).tolist()) - set(teachers)
    if missing:
        raise ValueError(f"no teacher for cluster ids {sorted(missing)}; have {sorted(teachers)}")
    soft_logits = None
    for cluster, teacher in teachers.items():
        rows = torch.nonzero(cluster_ids == cluster).flatten()
        if rows.numel() == 0:
            continue
        teacher = teacher.to(device).eval()
        for start in range(0, rows.numel(), batch_size):
            batch_rows = rows[start : start + batch_size]
            logits = teacher(inputs[batch_rows].to(device)).float().cpu()
            if soft_logits is None:
                soft_logits = torch.empty((inputs.shape[0], logits.shape[1]), dtype=dtype)
            soft_logits[batch_rows] = logits.to(dtype)
    if soft_logits is None:
        raise ValueError("no samples to label")
    return soft_logits
