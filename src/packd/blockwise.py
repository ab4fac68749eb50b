"""Parallel blockwise distillation (Blakeney et al.): cut a trained teacher into blocks, train a
cheaper replacement for each block on the teacher's own activations, then assemble the student.

Replacement i learns, with MSE, to map the TEACHER's input to block i onto the teacher's output of
block i. It never sees the student's upstream blocks, so every block is an independent job.
A model here is pre -> blocks -> post: pre (input reshaping, stem or embedding) and post (pooling,
head) are copied from the teacher and shared by the student; only the blocks are replaced.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from packd.atomic import atomic_path
from packd.checkpoint import checkpoint_header
from packd.models import (
    CHUNKS,
    HISTORY,
    BasicBlock,
    Bottleneck,
    LSTMPrefetcher,
    MixerBlock,
    MLPMixer,
    ResNet,
    build_model,
    channels_last,
    count_parameters,
)
from packd.optim import make_adam
from packd.train import resolve_device

# replacement_size keys: width scales every replacement's inner width (hidden units, channels);
# layers_per_block groups consecutive LSTM or Mixer layers into one block (ResNet: one per stage).
REPLACEMENT_KEYS = {"width", "layers_per_block"}
BOUNDARY_KEY = "boundary_{}"  # npz key of boundary i: the input of block i, the output of block i-1


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
        return self.post.head

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


# Blocks and their replacements.


class LSTMLayers(nn.Module):
    """Stacked LSTM layers that return the whole output sequence (the next layer's input)."""

    def __init__(self, input_size: int, hidden: int, layers: int):
        super().__init__()
        self.lstm = nn.LSTM(input_size, hidden, num_layers=layers, batch_first=True)

    def forward(self, sequence: torch.Tensor) -> torch.Tensor:
        return self.lstm(sequence)[0]


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
    convs = [layer for layer in teacher_block.body if isinstance(layer, nn.Conv2d)]
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
        token_in, channel_in = block.token_mlp[0], block.channel_mlp[0]
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


REPLACEMENT_BUILDERS: dict[str, Callable[[nn.Module, float], nn.Module]] = {
    "lstm": _replace_lstm_group,
    "mixer": _replace_mixer_group,
    "resnet": _replace_resnet_stage,
}


# Cutting a teacher.


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
    return [layer for layer in block.body if isinstance(layer, nn.Conv2d)][-1].out_channels


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


TEACHER_CUTS: dict[str, Callable[[nn.Module, int], BlockwiseModel]] = {
    "lstm": _cut_lstm,
    "mixer": _cut_mixer,
    "resnet": _cut_resnet,
}


def _check_arch(arch: str) -> None:
    if arch not in TEACHER_CUTS:
        raise ValueError(f"unknown arch '{arch}'; valid: {sorted(TEACHER_CUTS)}")


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


def teacher_blocks(model: nn.Module, arch: str, layers_per_block: int = 1) -> BlockwiseModel:
    """The teacher as pre -> blocks -> post (a deep copy); its forward equals the teacher's.

    Blocks: LSTM, groups of layers_per_block layers (nn.LSTM split per layer); Mixer, groups of
    layers_per_block Mixer layers; ResNet, one per residual stage (the stem stays in pre).
    """
    _check_arch(arch)
    split = TEACHER_CUTS[arch](model, layers_per_block)
    return split.train(model.training)


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


# Teacher activations at the block boundaries.


@torch.inference_mode()
def block_activations(
    split: BlockwiseModel,
    inputs: np.ndarray | torch.Tensor,
    batch_size: int = 1024,
    device: str = "cpu",
) -> list[np.ndarray]:
    """The teacher's activations at each block boundary, float32 (split is put in eval mode).

    Element i is the input of block i; element i + 1 its output (len(blocks) + 1 arrays).
    """
    device = resolve_device(device)
    split = split.to(device).eval()
    inputs = torch.as_tensor(inputs, dtype=torch.float32)
    batches: list[list[torch.Tensor]] = [[] for _ in range(len(split.blocks) + 1)]
    for start in range(0, inputs.shape[0], batch_size):
        features = split.pre(inputs[start : start + batch_size].to(device))
        batches[0].append(features.float().cpu())
        for index, block in enumerate(split.blocks, start=1):
            features = block(features)
            batches[index].append(features.float().cpu())
    return [torch.cat(boundary).numpy() for boundary in batches]


def save_block_activations(
    path: str | Path, boundaries: Sequence[np.ndarray], dtype: str = "float16"
) -> None:
    """Write the boundary activations to an uncompressed .npz (no pickles), atomically.

    float16 halves the file (activations are bounded and the MSE target tolerates 1e-3 relative
    rounding); use float32 to keep them exact.
    """
    arrays = {BOUNDARY_KEY.format(i): np.asarray(a, dtype=dtype) for i, a in enumerate(boundaries)}
    with atomic_path(path, suffix=".npz") as temporary:
        np.savez(temporary, **arrays)


def load_block_activations(path: str | Path) -> list[np.ndarray]:
    """All boundary activations of save_block_activations, in order, as stored."""
    with np.load(path) as stored:
        return [stored[BOUNDARY_KEY.format(i)] for i in range(len(stored.files))]


def load_block_pair(path: str | Path, index: int) -> tuple[np.ndarray, np.ndarray]:
    """(teacher input, teacher output) of block index; reads only those two arrays."""
    with np.load(path) as stored:
        last = len(stored.files) - 2
        if not 0 <= index <= last:
            raise ValueError(f"{path} holds blocks 0..{last}, not block {index}")
        return stored[BOUNDARY_KEY.format(index)], stored[BOUNDARY_KEY.format(index + 1)]


# Local training.


def train_block(
    replacement: nn.Module,
    block_inputs: np.ndarray | torch.Tensor,
    block_targets: np.ndarray | torch.Tensor,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
    log: Callable[[str], None] | None = None,
    device: str = "cpu",
) -> tuple[dict[str, torch.Tensor], list[dict[str, float]]]:
    """Train replacement (in place) with Adam and MSE to map the teacher's block inputs to outputs.

    Returns (final state on the CPU, one record per epoch). relative_mse is the MSE over the
    targets' variance: the fraction of the teacher block's output the replacement misses.
    """
    log = log or (lambda line: None)
    device = resolve_device(device)
    block_inputs, block_targets = torch.as_tensor(block_inputs), torch.as_tensor(block_targets)
    if block_inputs.shape[0] != block_targets.shape[0]:
        raise ValueError(
            f"{block_inputs.shape[0]} block inputs but {block_targets.shape[0]} targets"
        )
    target_variance = float(block_targets.float().var(dim=0, correction=0).mean())
    replacement = replacement.to(device).train()
    optimizer = make_adam(replacement.parameters(), lr, device)
    order_generator = torch.Generator().manual_seed(seed)
    n_samples = block_inputs.shape[0]
    history: list[dict[str, float]] = []
    for epoch in range(1, epochs + 1):
        epoch_start = time.perf_counter()
        order = torch.randperm(n_samples, generator=order_generator)
        loss_sum = torch.zeros((), device=device)
        for start in range(0, n_samples, batch_size):
            rows = order[start : start + batch_size]
            batch_inputs = channels_last(block_inputs[rows].to(device, torch.float32))
            batch_targets = block_targets[rows].to(device, torch.float32)
            batch_loss = nn.functional.mse_loss(replacement(batch_inputs), batch_targets)
            optimizer.zero_grad(set_to_none=True)
            batch_loss.backward()
            optimizer.step()
            loss_sum += batch_loss.detach() * rows.numel()
        seconds = time.perf_counter() - epoch_start
        mse = float(loss_sum) / max(n_samples, 1)
        record = {
            "epoch": epoch,
            "mse": mse,
            "relative_mse": mse / max(target_variance, 1e-12),
            "seconds": seconds,
            "samples_per_s": n_samples / max(seconds, 1e-9),
        }
        history.append(record)
        log(
            f"epoch {epoch} mse {mse:.6f} relative_mse {record['relative_mse']:.5f} "
            f"{record['samples_per_s']:.0f} samples/s"
        )
    state = {
        name: tensor.detach().cpu().clone() for name, tensor in replacement.state_dict().items()
    }
    return state, history


@torch.inference_mode()
def _run_block(block: nn.Module, block_inputs: np.ndarray, batch_size: int) -> np.ndarray:
    block = block.cpu().eval()
    inputs = torch.as_tensor(block_inputs, dtype=torch.float32)
    starts = range(0, inputs.shape[0], batch_size)
    batches = [block(channels_last(inputs[start : start + batch_size])) for start in starts]
    return torch.cat(batches).numpy()


def train_blocks_sequentially(
    replacements: Sequence[nn.Module],
    boundaries: Sequence[np.ndarray],
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
    upstream: str = "teacher",
    log: Callable[[str], None] | None = None,
    device: str = "cpu",
) -> list[tuple[dict[str, torch.Tensor], list[dict[str, float]]]]:
    """The baseline: train every replacement one after another in one call, each with seed.

    upstream "teacher" does the same work as the independent block jobs (same results, one worker);
    "student" feeds block i the trained student blocks' output instead (progressive blockwise
    distillation), the dependency that forces the blocks to be trained in order.
    """
    if upstream not in ("teacher", "student"):
        raise ValueError(f"upstream must be 'teacher' or 'student', got {upstream!r}")
    if len(boundaries) != len(replacements) + 1:
        raise ValueError(f"{len(replacements)} blocks need {len(replacements) + 1} boundaries")
    log = log or (lambda line: None)
    results = []
    block_inputs = boundaries[0]
    for index, replacement in enumerate(replacements):
        log(f"block {index}")
        results.append(
            train_block(
                replacement,
                block_inputs,
                boundaries[index + 1],
                epochs=epochs,
                lr=lr,
                batch_size=batch_size,
                seed=seed,
                log=log,
                device=device,
            )
        )
        if upstream == "student":
            block_inputs = _run_block(replacement, block_inputs, batch_size)
        else:
            block_inputs = boundaries[index + 1]
    return results


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
