"""What ROAST and HashedNet share: the hash family they draw from, and the Linear, Conv2d and
LSTM layers that read a virtual weight matrix (a RoastWeight or HashedNetWeight) instead of a
dense one.

Virtual weight matrices use PyTorch's (out, in) layout; a Conv2d weight is (out, in * kh * kw).
"""

from __future__ import annotations

import torch
from torch import nn

# A Mersenne prime: a coefficient below 2**31 times an index below 2**31 still fits in int64
HASH_PRIME = 2**31 - 1


def odd_hash_coefficients(count: int, generator: torch.Generator) -> torch.Tensor:
    """`count` random odd int64 coefficients in [1, HASH_PRIME - 2] (odd, as ROAST draws them)."""
    halves = torch.randint(0, (HASH_PRIME - 1) // 2, (count,), generator=generator)
    return halves * 2 + 1


class VirtualLinear(nn.Module):
    """nn.Linear whose weight comes from a RoastWeight or HashedNetWeight; the bias stays dense."""

    def __init__(self, virtual_weight: nn.Module, bias: torch.Tensor | None):
        super().__init__()
        self.virtual_weight = virtual_weight
        self.out_features, self.in_features = virtual_weight.rows, virtual_weight.cols
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone())

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """inputs @ weight.T + bias."""
        return nn.functional.linear(inputs, self.virtual_weight(), self.bias)


class VirtualConv2d(nn.Module):
    """nn.Conv2d (zero padding) whose weight, flattened to (out, in * kh * kw), is hashed."""

    def __init__(self, virtual_weight: nn.Module, conv: nn.Conv2d):
        super().__init__()
        if conv.padding_mode != "zeros":
            raise ValueError(f"padding_mode '{conv.padding_mode}' is not supported; use 'zeros'")
        self.virtual_weight = virtual_weight
        self.weight_shape = tuple(conv.weight.shape)
        self.stride, self.padding = conv.stride, conv.padding
        self.dilation, self.groups = conv.dilation, conv.groups
        self.bias = None if conv.bias is None else nn.Parameter(conv.bias.detach().clone())

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """The convolution of nn.Conv2d with the virtual weight."""
        weight = self.virtual_weight().reshape(self.weight_shape)
        return nn.functional.conv2d(
            inputs, weight, self.bias, self.stride, self.padding, self.dilation, self.groups
        )


class VirtualLSTM(nn.Module):
    """nn.LSTM (unidirectional, no projection) whose input and recurrent matrices are hashed.

    Each layer's (4 * hidden, in) input matrix and (4 * hidden, hidden) recurrent matrix hold the
    four gates (input, forget, cell, output) stacked, as in nn.LSTM; the biases stay dense. The
    virtual matrices go to torch.lstm, the kernel nn.LSTM itself runs: the same equations, with
    the step loop in C++ rather than a handful of Python-dispatched ops per gate and step.
    """

    def __init__(
        self,
        lstm: nn.LSTM,
        input_weights: list[nn.Module],
        recurrent_weights: list[nn.Module],
    ):
        super().__init__()
        self.input_size, self.hidden_size = lstm.input_size, lstm.hidden_size
        self.num_layers, self.batch_first = lstm.num_layers, lstm.batch_first
        self.dropout, self.has_biases = lstm.dropout, lstm.bias
        self.input_weights = nn.ModuleList(input_weights)
        self.recurrent_weights = nn.ModuleList(recurrent_weights)
        for layer in range(self.num_layers if lstm.bias else 0):
            for kind in ("ih", "hh"):
                name = f"bias_{kind}_l{layer}"
                self.register_parameter(name, nn.Parameter(getattr(lstm, name).detach().clone()))

    def forward(
        self, inputs: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """(output, (h_n, c_n)) of batched inputs, as nn.LSTM returns them; state defaults to 0."""
        if inputs.dim() != 3:
            raise ValueError(f"VirtualLSTM takes batched 3-D inputs, not shape {inputs.shape}")
        if state is None:
            batch = inputs.shape[0 if self.batch_first else 1]
            zeros = inputs.new_zeros(self.num_layers, batch, self.hidden_size)
            state = (zeros, zeros)
        flat_weights = []
        for layer in range(self.num_layers):
            flat_weights += [self.input_weights[layer](), self.recurrent_weights[layer]()]
            if self.has_biases:
                flat_weights += [
                    getattr(self, f"bias_ih_l{layer}"),
                    getattr(self, f"bias_hh_l{layer}"),
                ]
        output, final_hidden, final_cell = torch.lstm(
            inputs,
            state,
            flat_weights,
            self.has_biases,
            self.num_layers,
            self.dropout,
            self.training,
            False,  # bidirectional
            self.batch_first,
        )
        return output, (final_hidden, final_cell)
