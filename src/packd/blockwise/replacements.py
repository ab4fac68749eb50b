"""The cheaper replacement of each teacher block, and the student assembled from them.

Each replacement keeps its block's input and output shapes, so it fits between the teacher's
blocks; the student is the teacher's pre and post around the trained replacements.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import torch
from torch import nn

from packd.blockwise.cut import BlockwiseModel, LSTMLayers, _check_arch, teacher_blocks
from packd.checkpoint import checkpoint_header
from packd.models import BasicBlock, Bottleneck, MixerBlock, build_model, count_parameters

# replacement_size keys: width scales every replacement's inner width (hidden units, channels);
# layers_per_block groups consecutive LSTM or Mixer layers into one block (ResNet: one per stage).
REPLACEMENT_KEYS = {"width", "layers_per_block"}


class ProjectedLSTM(nn.Module):
    """LSTM replacement: a narrower LSTM, each step's output projected to the teacher's width."""

    def __init__(self, input_size: int, hidden: int, layers: int, output_size: int):
        super().__init__()
        self.lstm = nn.LSTM(input_size, hidden, num_layers=layers, batch_first=True)
        self.projection = nn.Linear(hidden, output_size)

    def forward(self, sequence: torch.Tensor) -> torch.Tensor:
        return self.projection(self.lstm(sequence)[0])


class SeparableConv2d(nn.Sequential):
    """Depthwise 3x3 (one filter per input channel), then pointwise 1x1: replaces a 3x3 conv."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__(
            nn.Conv2d(in_channels, in_channels, 3, stride, 1, groups=in_channels, bias=False),
            nn.Conv2d(in_channels, out_channels, 1, bias=False),
        )


class ResidualBlock(nn.Module):
    """relu(body + shortcut), as the teacher's BasicBlock and Bottleneck, with any body."""

    def __init__(self, body: nn.Module, shortcut: nn.Module):
        super().__init__()
        self.body = body
        self.shortcut = shortcut

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(features) + self.shortcut(features))


class PaddedShortcut(nn.Module):
    """Parameter-free shortcut (He et al.'s option A): strided subsampling, zero-padded channels.

    The teacher's 1x1 projection shortcut is the largest part of a wide stage's first block and
    does not shrink with width, so the replacement drops it and lets the body learn the rest.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        if out_channels < in_channels:
            raise ValueError(f"cannot pad {in_channels} channels down to {out_channels}")
        self.extra_channels = out_channels - in_channels
        self.stride = stride

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        subsampled = features[:, :, :: self.stride, :: self.stride]
        return nn.functional.pad(subsampled, (0, 0, 0, 0, 0, self.extra_channels))


def _scaled(count: int, width: float) -> int:
    """count * width, at least one unit."""
    return max(1, round(count * width))


def _separable_residual(teacher_block: nn.Module, width: float) -> ResidualBlock:
    """The teacher's residual block with each 3x3 conv depthwise-separable, inner width scaled.

    The block's input and output channels and stride stay, so it fits between the teacher's blocks.
    """
    teacher_body = cast(nn.Sequential, teacher_block.body)  # BasicBlock, Bottleneck: a Sequential
    convs = [layer for layer in teacher_body if isinstance(layer, nn.Conv2d)]
    in_channels, out_channels = convs[0].in_channels, convs[-1].out_channels
    planes = _scaled(convs[0].out_channels, width)
    if isinstance(teacher_block, BasicBlock):
        stride = convs[0].stride[0]
        body = nn.Sequential(
            SeparableConv2d(in_channels, planes, stride),
            nn.BatchNorm2d(planes),
            nn.ReLU(inplace=True),
            SeparableConv2d(planes, out_channels),
            nn.BatchNorm2d(out_channels),
        )
    elif isinstance(teacher_block, Bottleneck):
        stride = convs[1].stride[0]
        body = nn.Sequential(
            nn.Conv2d(in_channels, planes, 1, bias=False),
            nn.BatchNorm2d(planes),
            nn.ReLU(inplace=True),
            SeparableConv2d(planes, planes, stride),
            nn.BatchNorm2d(planes),
            nn.ReLU(inplace=True),
            nn.Conv2d(planes, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
    else:
        raise ValueError(f"no separable replacement for {type(teacher_block).__name__}")
    return ResidualBlock(body, PaddedShortcut(in_channels, out_channels, stride))


def _replace_resnet_stage(stage: nn.Sequential, width: float) -> nn.Module:
    return nn.Sequential(*[_separable_residual(block, width) for block in stage])


def _replace_mixer_group(group: nn.Sequential, width: float) -> nn.Module:
    """The same number of Mixer layers with narrower token- and channel-mixing MLPs."""
    layers = []
    for block in group:
        mixer = cast(MixerBlock, block)  # a Mixer group holds MixerBlocks
        token_in = cast(nn.Linear, mixer.token_mlp[0])
        channel_in = cast(nn.Linear, mixer.channel_mlp[0])
        layers.append(
            MixerBlock(
                tokens=token_in.in_features,
                dim=channel_in.in_features,
                token_hidden=_scaled(token_in.out_features, width),
                channel_hidden=_scaled(channel_in.out_features, width),
            )
        )
    return nn.Sequential(*layers)


def _replace_lstm_group(group: LSTMLayers, width: float) -> nn.Module:
    lstm = group.lstm
    return ProjectedLSTM(
        lstm.input_size, _scaled(lstm.hidden_size, width), lstm.num_layers, lstm.hidden_size
    )


REPLACEMENT_BUILDERS: dict[str, Callable[[Any, float], nn.Module]] = {
    "lstm": _replace_lstm_group,
    "mixer": _replace_mixer_group,
    "resnet": _replace_resnet_stage,
}


def replacement_settings(replacement_size: Mapping) -> tuple[float, int]:
    """(width, layers_per_block) of a replacement size; layers_per_block defaults to 1."""
    unknown = set(replacement_size) - REPLACEMENT_KEYS
    if unknown or "width" not in replacement_size:
        raise ValueError(
            f"replacement size {dict(replacement_size)} needs 'width' and may have "
            f"'layers_per_block'; unknown keys: {sorted(unknown)}"
        )
    width, layers_per_block = replacement_size["width"], replacement_size.get("layers_per_block", 1)
    if not width > 0 or int(layers_per_block) != layers_per_block or layers_per_block < 1:
        raise ValueError(f"width must be > 0 and layers_per_block >= 1, got {replacement_size}")
    return float(width), int(layers_per_block)


def replacement_blocks(
    split: BlockwiseModel, arch: str, replacement_size: Mapping, seed: int
) -> list[nn.Module]:
    """A fresh, cheaper block for each teacher block (same input and output shapes).

    Block i is initialised from seed + i, without touching the global random state.
    """
    _check_arch(arch)
    width, _ = replacement_settings(replacement_size)
    replacements = []
    for index, block in enumerate(split.blocks):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + index)
            replacements.append(REPLACEMENT_BUILDERS[arch](block, width))
    return replacements


# Assembly.


def assemble_student(
    teacher: nn.Module,
    arch: str,
    trained_block_states: Sequence[Mapping[str, torch.Tensor]],
    replacement_size: Mapping,
) -> BlockwiseModel:
    """The teacher's pre and post around the trained replacement blocks, in train mode."""
    _, layers_per_block = replacement_settings(replacement_size)
    split = teacher_blocks(teacher, arch, layers_per_block)
    blocks = replacement_blocks(split, arch, replacement_size, seed=0)
    if len(trained_block_states) != len(blocks):
        raise ValueError(f"{len(trained_block_states)} block states for {len(blocks)} blocks")
    for block, state in zip(blocks, trained_block_states, strict=True):
        block.load_state_dict(state)
    return BlockwiseModel(split.pre, blocks, split.post).train()


def build_blockwise_student(
    arch: str, teacher_size: Mapping, replacement_size: Mapping
) -> BlockwiseModel:
    """An untrained student of the right structure, to load a saved student's state dict into."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        teacher = build_model(arch, teacher_size)
    _, layers_per_block = replacement_settings(replacement_size)
    split = teacher_blocks(teacher, arch, layers_per_block)
    blocks = replacement_blocks(split, arch, replacement_size, seed=0)
    return BlockwiseModel(split.pre, blocks, split.post).train()


def blockwise_header(
    student: nn.Module,
    arch: str,
    teacher_size: Mapping,
    replacement_size: Mapping,
    app: str,
    role: str = "blockwise_student",
    **fields: object,
) -> dict:
    """checkpoint_header whose size holds build_blockwise_student's keyword arguments."""
    replacement_settings(replacement_size)
    size = {"teacher_size": dict(teacher_size), "replacement_size": dict(replacement_size)}
    return checkpoint_header(student, arch, size, role, app, **fields)


def blockwise_parameter_counts(
    arch: str, teacher_size: Mapping, replacement_size: Mapping
) -> dict[str, int | list[int]]:
    """Parameters of the teacher and the assembled student, in all, per block and shared."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        teacher = build_model(arch, teacher_size)
    _, layers_per_block = replacement_settings(replacement_size)
    split = teacher_blocks(teacher, arch, layers_per_block)
    replacements = replacement_blocks(split, arch, replacement_size, seed=0)
    student = BlockwiseModel(split.pre, replacements, split.post)
    return {
        "teacher": count_parameters(teacher),
        "student": count_parameters(student),
        "shared": count_parameters(split.pre) + count_parameters(split.post),
        "teacher_blocks": [count_parameters(block) for block in split.blocks],
        "replacement_blocks": [count_parameters(block) for block in replacements],
    }
