"""A trained teacher cut into pre -> blocks -> post (a deep copy whose forward is the teacher's).

pre and post are copied from the teacher and shared by the student; the blocks are what
packd.blockwise.replacements replaces.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any, cast

import torch
from torch import nn

from packd.models import CHUNKS, HISTORY, LSTMPrefetcher, MLPMixer, ResNet, channels_last


class BlockwiseModel(nn.Module):
    """pre -> blocks, in order -> post: both the cut teacher and the assembled student."""

    def __init__(self, pre: nn.Module, blocks: Sequence[nn.Module], post: nn.Module):
        super().__init__()
        self.pre = pre
        self.blocks = nn.ModuleList(blocks)
        self.post = post

    @property
    def head(self) -> nn.Module:
        """The output layer (post's head), where init_output_bias looks for it."""
        return cast(nn.Module, self.post.head)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        features = self.pre(inputs)
        for block in self.blocks:
            features = block(features)
        return self.post(features)


# Pre and post parts. Each repeats the matching lines of its model's forward; the tests check
# that pre -> blocks -> post equals the teacher's forward exactly, so a change there shows up.


class LastStepHead(nn.Module):
    """LSTM post: the head on the last step of the sequence outputs."""

    def __init__(self, head: nn.Linear):
        super().__init__()
        self.head = head

    def forward(self, sequence_outputs: torch.Tensor) -> torch.Tensor:
        return self.head(sequence_outputs[:, -1])


class PatchEmbedding(nn.Module):
    """Mixer pre: the 10x10 image cut into patch x patch patches, each embedded as a token."""

    def __init__(self, patch: int, embed: nn.Linear):
        super().__init__()
        self.patch = patch
        self.embed = embed

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        batch, p = inputs.shape[0], self.patch
        patches = inputs.reshape(batch, HISTORY // p, p, CHUNKS // p, p).permute(0, 1, 3, 2, 4)
        return self.embed(patches.reshape(batch, -1, p * p))


class TokenMeanHead(nn.Module):
    """Mixer post: LayerNorm, mean over tokens, head."""

    def __init__(self, norm: nn.LayerNorm, head: nn.Linear):
        super().__init__()
        self.norm = norm
        self.head = head

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(tokens).mean(dim=1))


class ImageStem(nn.Module):
    """ResNet pre: the (batch, 10, 10) input as a one-channel image through the teacher's stem."""

    def __init__(self, stem: nn.Module):
        super().__init__()
        self.stem = stem

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return channels_last(self.stem(inputs.unsqueeze(1)))


class PooledHead(nn.Module):
    """ResNet post: global average pooling, head."""

    def __init__(self, head: nn.Linear):
        super().__init__()
        self.head = head

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features.mean(dim=(2, 3)))


# Cutting a teacher.


class LSTMLayers(nn.Module):
    """Stacked LSTM layers that return the whole output sequence (the next layer's input)."""

    def __init__(self, input_size: int, hidden: int, layers: int):
        super().__init__()
        self.lstm = nn.LSTM(input_size, hidden, num_layers=layers, batch_first=True)

    def forward(self, sequence: torch.Tensor) -> torch.Tensor:
        return self.lstm(sequence)[0]


def _groups(count: int, layers_per_block: int) -> list[range]:
    """Consecutive layer indices, layers_per_block at a time (the last group may be shorter)."""
    starts = range(0, count, layers_per_block)
    return [range(start, min(start + layers_per_block, count)) for start in starts]


def _cut_lstm(model: LSTMPrefetcher, layers_per_block: int) -> BlockwiseModel:
    """One LSTMLayers per group, holding the nn.LSTM's per-layer weights of that group."""
    lstm = model.lstm
    if lstm.bidirectional or lstm.proj_size or not lstm.bias or not lstm.batch_first:
        raise ValueError("only a batch_first, unidirectional LSTM with biases can be cut")
    blocks = []
    for group in _groups(lstm.num_layers, layers_per_block):
        input_size = lstm.input_size if group.start == 0 else lstm.hidden_size
        block = LSTMLayers(input_size, lstm.hidden_size, len(group))
        with torch.no_grad():
            for local, layer in enumerate(group):
                for weight in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    source = getattr(lstm, f"{weight}_l{layer}")
                    getattr(block.lstm, f"{weight}_l{local}").copy_(source)
        blocks.append(block)
    return BlockwiseModel(nn.Identity(), blocks, LastStepHead(copy.deepcopy(model.head)))


def _cut_mixer(model: MLPMixer, layers_per_block: int) -> BlockwiseModel:
    layers = list(model.blocks)
    blocks = [
        nn.Sequential(*[copy.deepcopy(layers[index]) for index in group])
        for group in _groups(len(layers), layers_per_block)
    ]
    pre = PatchEmbedding(model.patch, copy.deepcopy(model.embed))
    return BlockwiseModel(
        pre, blocks, TokenMeanHead(copy.deepcopy(model.norm), copy.deepcopy(model.head))
    )


def _residual_out_channels(block: nn.Module) -> int:
    body = cast(nn.Sequential, block.body)  # a residual block's body: a Sequential
    return [layer for layer in body if isinstance(layer, nn.Conv2d)][-1].out_channels


def _cut_resnet(model: ResNet, layers_per_block: int) -> BlockwiseModel:
    """One block per stage; the stem stays in pre, copied from the teacher and not replaced.

    Stages are told apart by their output channels (width * 2**stage * expansion), which change at
    the first residual block of every stage and nowhere else.
    """
    if layers_per_block != 1:
        raise ValueError("ResNet blocks are its stages; layers_per_block does not apply")
    stages: list[list[nn.Module]] = []
    previous_channels = None
    for residual in model.stages:
        channels = _residual_out_channels(residual)
        if channels != previous_channels:
            stages.append([])
        stages[-1].append(copy.deepcopy(residual))
        previous_channels = channels
    blocks = [nn.Sequential(*stage) for stage in stages]
    return BlockwiseModel(
        ImageStem(copy.deepcopy(model.stem)), blocks, PooledHead(copy.deepcopy(model.head))
    )


TEACHER_CUTS: dict[str, Callable[[Any, int], BlockwiseModel]] = {
    "lstm": _cut_lstm,
    "mixer": _cut_mixer,
    "resnet": _cut_resnet,
}


def _check_arch(arch: str) -> None:
    if arch not in TEACHER_CUTS:
        raise ValueError(f"unknown arch '{arch}'; valid: {sorted(TEACHER_CUTS)}")


def teacher_blocks(model: nn.Module, arch: str, layers_per_block: int = 1) -> BlockwiseModel:
    """The teacher as pre -> blocks -> post (a deep copy); its forward equals the teacher's.

    Blocks: LSTM, groups of layers_per_block layers (nn.LSTM split per layer); Mixer, groups of
    layers_per_block Mixer layers; ResNet, one per residual stage (the stem stays in pre).
    """
    _check_arch(arch)
    split = TEACHER_CUTS[arch](model, layers_per_block)
    return split.train(model.training)
