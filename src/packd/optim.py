"""Adam for CPU jobs, without torch.optim's start-up cost.

torch.optim's first optimizer step imports torch._dynamo, about 1.1 s of CPU in every training
job; the demo runs several hundred short training jobs on 2 cores, so that import alone cost
minutes. This Adam applies the same update, in the same floating-point operations, as
torch.optim.Adam's single-tensor path (the one it uses for CPU tensors), so training is
bit-identical (tests/unit/test_optim.py). On CUDA, `make_adam` returns torch.optim.Adam, whose
fused and multi-tensor kernels matter there and whose import cost does not.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch


class Adam:
    """Adam (Kingma and Ba) with torch.optim.Adam's defaults: no weight decay, no AMSGrad."""

    def __init__(
        self,
        params: Iterable[torch.Tensor],
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ):
        self.param_groups: list[dict[str, Any]] = [
            {"params": list(params), "lr": lr, "betas": betas, "eps": eps}
        ]
        self.state: dict[torch.Tensor, dict[str, Any]] = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop (or zero) every parameter's gradient."""
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is None:
                    continue
                if set_to_none:
                    param.grad = None
                else:
                    param.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        """One update of every parameter that has a gradient."""
        for group in self.param_groups:
            lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                state = self.state.get(param)
                if state is None:
                    state = self.state[param] = {
                        "step": 0.0,
                        "exp_avg": torch.zeros_like(param, memory_format=torch.preserve_format),
                        "exp_avg_sq": torch.zeros_like(param, memory_format=torch.preserve_format),
                    }
                state["step"] += 1.0
                step = state["step"]
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                grad = param.grad
                exp_avg.lerp_(grad, 1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                bias_correction1 = 1 - beta1**step
                bias_correction2_sqrt = (1 - beta2**step) ** 0.5
                denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
                param.addcdiv_(exp_avg, denom, value=-(lr / bias_correction1))


def make_adam(
    params: Iterable[torch.Tensor], lr: float, device: torch.device
) -> Adam | torch.optim.Adam:
    """This module's Adam on the CPU; torch.optim.Adam on any other device."""
    if device.type == "cpu":
        return Adam(params, lr=lr)
    return torch.optim.Adam(params, lr=lr)
