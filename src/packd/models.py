"""The three prefetcher models (LSTM, MLP-Mixer, ResNet): input (batch, 10, 10), 256 logits out."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from packd.shapes import CHUNKS, HISTORY, OUTPUTS, RESNET_EXPANSION


def channels_last(features: torch.Tensor) -> torch.Tensor:
    """A 4-d feature map in channels-last layout (others unchanged).

    On CPU the convolutions and batch norms of the ResNets run about 1.7x faster on it (one
    thread, batch 256); the layout changes the order of float sums, not the model.
    """
    return (
        features.contiguous(memory_format=torch.channels_last) if features.dim() == 4 else features
    )


class LSTMPrefetcher(nn.Module):
    """LSTM over the history (batch_first, one step per access), last hidden state -> 256 logits."""

    def __init__(self, hidden: int, layers: int, input_size: int = CHUNKS, outputs: int = OUTPUTS):
        super().__init__()
        self.lstm = nn.LSTM(input_size, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, outputs)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        sequence_outputs, _ = self.lstm(inputs)  # zero initial state per sample: no leakage
        return self.head(sequence_outputs[:, -1])


class MixerBlock(nn.Module):
    """Token-mixing MLP then channel-mixing MLP, each pre-LayerNorm with a residual."""

    def __init__(self, tokens: int, dim: int, token_hidden: int, channel_hidden: int):
        super().__init__()
        self.token_norm = nn.LayerNorm(dim)
        self.token_mlp = nn.Sequential(
            nn.Linear(tokens, token_hidden), nn.GELU(), nn.Linear(token_hidden, tokens)
        )
        self.channel_norm = nn.LayerNorm(dim)
        self.channel_mlp = nn.Sequential(
            nn.Linear(dim, channel_hidden), nn.GELU(), nn.Linear(channel_hidden, dim)
        )

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        mixed = self.token_mlp(self.token_norm(tokens).transpose(1, 2)).transpose(1, 2)
        tokens = tokens + mixed
        return tokens + self.channel_mlp(self.channel_norm(tokens))


class MLPMixer(nn.Module):
    """MLP-Mixer on the 10x10 image cut into patch x patch patches (default: one patch of 100)."""

    def __init__(
        self,
        dim: int,
        depth: int,
        patch: int = HISTORY,
        token_hidden: int | None = None,
        channel_hidden: int | None = None,
        outputs: int = OUTPUTS,
    ):
        super().__init__()
        if HISTORY % patch or CHUNKS % patch:
            raise ValueError(f"patch {patch} must divide the {HISTORY}x{CHUNKS} image")
        self.patch = patch
        tokens = (HISTORY // patch) * (CHUNKS // patch)
        # Defaults as lucidrains' mlp-mixer-pytorch (token expansion 4, channel expansion 0.5):
        # they give the paper's counts exactly (5.48 M at dim 512, 10.2 K at dim 18)
        token_hidden = token_hidden or 4 * tokens
        channel_hidden = channel_hidden or max(1, dim // 2)
        self.embed = nn.Linear(patch * patch, dim)
        self.blocks = nn.Sequential(
            *[MixerBlock(tokens, dim, token_hidden, channel_hidden) for _ in range(depth)]
        )
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, outputs)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        batch, p = inputs.shape[0], self.patch
        patches = inputs.reshape(batch, HISTORY // p, p, CHUNKS // p, p).permute(0, 1, 3, 2, 4)
        tokens = self.embed(patches.reshape(batch, -1, p * p))
        return self.head(self.norm(self.blocks(tokens)).mean(dim=1))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual."""

    expansion = RESNET_EXPANSION["basic"]

    def __init__(self, in_channels: int, planes: int, stride: int):
        super().__init__()
        out_channels = planes * self.expansion
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, planes, 3, stride, 1, bias=False),
            nn.BatchNorm2d(planes),
            nn.ReLU(inplace=True),
            nn.Conv2d(planes, out_channels, 3, 1, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        self.shortcut = _shortcut(in_channels, out_channels, stride)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(features) + self.shortcut(features))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand (x4) with a residual."""

    expansion = RESNET_EXPANSION["bottleneck"]

    def __init__(self, in_channels: int, planes: int, stride: int):
        super().__init__()
        out_channels = planes * self.expansion
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, planes, 1, bias=False),
            nn.BatchNorm2d(planes),
            nn.ReLU(inplace=True),
            nn.Conv2d(planes, planes, 3, stride, 1, bias=False),
            nn.BatchNorm2d(planes),
            nn.ReLU(inplace=True),
            nn.Conv2d(planes, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        self.shortcut = _shortcut(in_channels, out_channels, stride)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(features) + self.shortcut(features))


def _shortcut(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    """Identity, or a 1x1 projection when the shape changes."""
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels)
    )


RESNET_BLOCKS: dict[str, type[BasicBlock | Bottleneck]] = {
    "basic": BasicBlock,
    "bottleneck": Bottleneck,
}


class ResNet(nn.Module):
    """ResNet on the 1x10x10 image: 3x3 stem, stages of width*2**s (stride 2 after the first)."""

    def __init__(self, block: str, layers: Sequence[int], width: int, outputs: int = OUTPUTS):
        super().__init__()
        if block not in RESNET_BLOCKS:
            raise ValueError(f"unknown ResNet block '{block}'; valid: {sorted(RESNET_BLOCKS)}")
        block_class = RESNET_BLOCKS[block]
        # No 7x7 stem or max-pool: the image is only 10x10
        self.stem = nn.Sequential(
            nn.Conv2d(1, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)
        )
        stages, in_channels = [], width
        for stage, blocks in enumerate(layers):
            planes = width * 2**stage
            for index in range(blocks):
                stride = 2 if stage > 0 and index == 0 else 1
                stages.append(block_class(in_channels, planes, stride))
                in_channels = planes * block_class.expansion
        self.stages = nn.Sequential(*stages)
        self.head = nn.Linear(in_channels, outputs)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        # The one-channel input is already channels-last; the stem's output is converted.
        features = self.stages(channels_last(self.stem(inputs.unsqueeze(1))))
        return self.head(features.mean(dim=(2, 3)))


class FrequencyBaseline(nn.Module):
    """Zero-effort baseline: every sample gets the same scores, each bit's training frequency
    (as log-odds in the head's bias, set by init_output_bias); the inputs are ignored."""

    def __init__(self, outputs: int = OUTPUTS):
        super().__init__()
        self.head = nn.Linear(1, outputs)
        nn.init.zeros_(self.head.weight)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.head(inputs.new_zeros(inputs.shape[0], 1))


class PlainMLP(nn.Module):
    """Zero-effort baseline: the flattened 10x10 input, one ReLU hidden layer, the head."""

    def __init__(self, hidden: int, inputs: int = HISTORY * CHUNKS, outputs: int = OUTPUTS):
        super().__init__()
        self.hidden = nn.Sequential(nn.Flatten(), nn.Linear(inputs, hidden), nn.ReLU())
        self.head = nn.Linear(hidden, outputs)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.head(self.hidden(inputs))


def mlp_hidden_for(parameters: int) -> int:
    """Hidden width of the PlainMLP whose parameter count is closest to `parameters`."""
    per_unit = HISTORY * CHUNKS + 1 + OUTPUTS
    return max(1, round((parameters - OUTPUTS) / per_unit))


MODEL_BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "lstm": LSTMPrefetcher,
    "mixer": MLPMixer,
    "resnet": ResNet,
    "mlp": PlainMLP,
    "frequency": FrequencyBaseline,
}

# The paper's teacher and student sizes (docs/method.md, section 3)
PAPER_SIZES: dict[str, dict[str, dict]] = {
    "lstm": {"teacher": {"hidden": 128, "layers": 40}, "student": {"hidden": 16, "layers": 1}},
    "mixer": {"teacher": {"dim": 512, "depth": 20}, "student": {"dim": 18, "depth": 8}},
    "resnet": {
        "teacher": {"block": "bottleneck", "layers": [3, 4, 6, 3], "width": 30},
        "student": {"block": "basic", "layers": [1, 1, 1], "width": 4},
    },
}


def build_model(arch: str, size: Mapping) -> nn.Module:
    """Build the model of `arch` with the keyword sizes in `size`."""
    if arch not in MODEL_BUILDERS:
        raise ValueError(f"unknown arch '{arch}'; valid: {sorted(MODEL_BUILDERS)}")
    try:
        return MODEL_BUILDERS[arch](**dict(size))
    except TypeError as error:
        raise ValueError(f"bad size {dict(size)} for arch '{arch}': {error}") from error


# The size key that sets each arch's width, for sizing a network to a parameter budget.
WIDTH_KEYS = {"lstm": "hidden", "mixer": "dim", "resnet": "width"}


def size_for_budget(arch: str, size: Mapping, budget: int) -> dict:
    """`size` with its width key set so that the parameter count is closest to budget."""
    key = WIDTH_KEYS[arch]

    def params(width: int) -> int:
        return count_parameters(build_model(arch, {**size, key: width}))

    low, high = 1, 2
    while params(high) < budget and high < 1 << 16:
        low, high = high, 2 * high
    while high - low > 1:  # parameters grow with width: bisect to the two widths around budget
        middle = (low + high) // 2
        low, high = (middle, high) if params(middle) < budget else (low, middle)
    best = min((low, high), key=lambda width: abs(params(width) - budget))
    return {**size, key: best}


def count_parameters(model: nn.Module) -> int:
    """Number of parameters."""
    return sum(parameter.numel() for parameter in model.parameters())


def model_bytes(model: nn.Module) -> int:
    """Bytes of parameters plus buffers (e.g. BatchNorm running statistics)."""
    tensors = [*model.parameters(), *model.buffers()]
    return sum(tensor.numel() * tensor.element_size() for tensor in tensors)


def init_output_bias(model: nn.Module, labels: np.ndarray | torch.Tensor) -> None:
    """Start the output layer's bias at the log-odds of each label bit's training frequency.

    A fresh model first learns these marginals and can then sit on that plateau for epochs (cc's
    Mixer: 0.92 F1 from the marginals alone, which stopped some seeds' runs early). Starting there
    spends no epochs reaching it and leaves the gradient to the features.
    """
    head = getattr(model, "head", None)
    bias = getattr(head, "bias", None)
    out_features = getattr(head, "out_features", None)
    if bias is None or out_features is None:  # a Linear, or a hashed one with a dense bias
        raise ValueError(f"{type(model).__name__} has no linear `head` with a bias")
    labels = torch.as_tensor(np.asarray(labels), dtype=torch.float32)
    if labels.ndim != 2 or labels.shape[1] != out_features or labels.shape[0] == 0:
        raise ValueError(f"labels of shape {tuple(labels.shape)} do not fit {out_features} outputs")
    # Clamped so that a bit never (or always) set gets a large finite bias, not +-inf.
    frequencies = labels.mean(dim=0).clamp(1e-4, 1 - 1e-4)
    with torch.no_grad():
        bias.copy_(torch.log(frequencies / (1 - frequencies)))
