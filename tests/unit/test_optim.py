import pytest
import torch
from torch import nn

from packd.optim import Adam, make_adam


def _train(optimizer_class, steps: int = 25) -> tuple[list[float], dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
    model[0].bias.requires_grad_(False)  # a frozen parameter gets no update
    frozen = model[0].bias.clone()
    optimizer = optimizer_class([p for p in model.parameters() if p.requires_grad])
    inputs, targets = torch.randn(64, 6), torch.randn(64, 3)
    losses = []
    for step in range(steps):
        if step == 10:  # a changed rate takes effect, as a schedule changes it
            for group in optimizer.param_groups:
                group["lr"] = 0.003
        loss = nn.functional.mse_loss(model(inputs), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert torch.equal(model[0].bias, frozen)
    return losses, model.state_dict()


def test_adam_is_bit_identical_to_torch_adam_on_cpu() -> None:
    ours, our_state = _train(lambda params: Adam(params, lr=0.01))
    theirs, their_state = _train(lambda params: torch.optim.Adam(params, lr=0.01, foreach=False))
    assert ours == theirs
    for name, tensor in our_state.items():
        assert torch.equal(tensor, their_state[name]), name
    assert ours[-1] < 0.8 * ours[0]  # and it does optimise


def test_adam_skips_parameters_without_gradients_and_zero_grad_modes() -> None:
    used, unused = nn.Parameter(torch.ones(2)), nn.Parameter(torch.ones(2))
    optimizer = Adam([used, unused], lr=0.1)
    (used * torch.tensor([1.0, -1.0])).sum().backward()
    optimizer.step()
    # Adam's first step moves every coordinate by lr against its gradient's sign
    assert torch.allclose(used, torch.tensor([0.9, 1.1]))
    assert torch.equal(unused, torch.ones(2))
    optimizer.zero_grad(set_to_none=False)
    assert torch.equal(used.grad, torch.zeros(2))
    optimizer.zero_grad()
    assert used.grad is None


def test_make_adam_picks_ours_on_cpu_only() -> None:
    params = [nn.Parameter(torch.zeros(1))]
    assert isinstance(make_adam(params, 0.1, torch.device("cpu")), Adam)
    assert isinstance(make_adam(params, 0.1, torch.device("meta")), torch.optim.Adam)
    with pytest.raises(TypeError):
        Adam(params)  # the rate has no default
