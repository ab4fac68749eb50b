import numpy as np
import pytest
import torch
from torch import nn

from packd.blockwise import (
    SeparableConv2d,
    assemble_student,
    block_activations,
    blockwise_header,
    blockwise_parameter_counts,
    build_blockwise_student,
    replacement_blocks,
    replacement_settings,
    teacher_blocks,
    train_block,
    train_blocks_sequentially,
)
from packd.checkpoint import load_checkpoint, save_checkpoint
from packd.models import build_model, count_parameters, init_output_bias
from packd.train import PhaseSettings, train_model

# (arch, tiny teacher size, replacement size, expected number of blocks)
CASES = [
    ("lstm", {"hidden": 12, "layers": 3}, {"width": 0.5}, 3),
    ("lstm", {"hidden": 12, "layers": 3}, {"width": 0.5, "layers_per_block": 2}, 2),
    ("mixer", {"dim": 16, "depth": 3}, {"width": 0.5}, 3),
    ("mixer", {"dim": 16, "depth": 4, "patch": 5}, {"width": 0.5, "layers_per_block": 2}, 2),
    ("resnet", {"block": "basic", "layers": [2, 1, 1], "width": 4}, {"width": 1.0}, 3),
    ("resnet", {"block": "bottleneck", "layers": [1, 2], "width": 4}, {"width": 0.5}, 2),
]
CASE_IDS = [f"{arch}-{blocks}-blocks" for arch, _, _, blocks in CASES]


def _teacher(arch, size, seed=0):
    torch.manual_seed(seed)
    return build_model(arch, size).eval()


def _inputs(n=24, seed=0):
    return torch.rand(n, 10, 10, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(("arch", "size", "replacement", "n_blocks"), CASES, ids=CASE_IDS)
def test_cut_teacher_forward_equals_teacher(arch, size, replacement, n_blocks):
    teacher = _teacher(arch, size)
    _, layers_per_block = replacement_settings(replacement)
    split = teacher_blocks(teacher, arch, layers_per_block).eval()
    assert len(split.blocks) == n_blocks
    assert count_parameters(split) == count_parameters(teacher)
    inputs = _inputs()
    with torch.no_grad():
        torch.testing.assert_close(split(inputs), teacher(inputs), rtol=0, atol=1e-6)
    # a deep copy: changing the cut model leaves the teacher as it was
    with torch.no_grad():
        next(split.blocks[0].parameters()).add_(1.0)
        assert not torch.allclose(split(inputs), teacher(inputs))


@pytest.mark.parametrize(("arch", "size", "replacement", "n_blocks"), CASES, ids=CASE_IDS)
def test_replacements_keep_each_block_shape_and_are_smaller(arch, size, replacement, n_blocks):
    _, layers_per_block = replacement_settings(replacement)
    split = teacher_blocks(_teacher(arch, size), arch, layers_per_block)
    replacements = replacement_blocks(split, arch, replacement, seed=3)
    boundaries = block_activations(split, _inputs(6))
    assert len(replacements) == len(boundaries) - 1 == n_blocks
    for index, block in enumerate(replacements):
        block.eval()
        with torch.no_grad():
            output = block(torch.from_numpy(boundaries[index]))
        assert output.shape == boundaries[index + 1].shape
    counts = blockwise_parameter_counts(arch, size, replacement)
    assert counts["student"] < counts["teacher"]
    assert sum(counts["replacement_blocks"]) + counts["shared"] == counts["student"]
    assert sum(counts["teacher_blocks"]) + counts["shared"] == counts["teacher"]


def test_width_controls_student_size():
    size = {"block": "bottleneck", "layers": [1, 1], "width": 8}
    students = [
        blockwise_parameter_counts("resnet", size, {"width": w})["student"]
        for w in (0.25, 0.5, 1.0)
    ]
    assert students[0] < students[1] < students[2]


@pytest.mark.parametrize("case", [CASES[4], CASES[5]], ids=["basic", "bottleneck"])
def test_resnet_replacement_is_depthwise_separable_with_a_free_shortcut(case):
    split = teacher_blocks(_teacher("resnet", case[1]), "resnet")
    replacements = replacement_blocks(split, "resnet", {"width": 1.0}, seed=0)
    for stage in replacements:
        convs = [m for m in stage.modules() if isinstance(m, nn.Conv2d) and m.kernel_size != (1, 1)]
        assert convs and all(conv.groups == conv.in_channels == conv.out_channels for conv in convs)
        # the teacher's 1x1 projection shortcuts become parameter-free ones
        assert all(count_parameters(block.shortcut) == 0 for block in stage)
    assert any(count_parameters(block.shortcut) > 0 for stage in split.blocks for block in stage)


def test_replacement_init_is_seeded_and_leaves_global_rng():
    split = teacher_blocks(_teacher("mixer", CASES[2][1]), "mixer")
    torch.manual_seed(5)
    first = replacement_blocks(split, "mixer", {"width": 0.5}, seed=1)
    after_first = torch.rand(1)
    torch.manual_seed(5)
    second = replacement_blocks(split, "mixer", {"width": 0.5}, seed=1)
    assert torch.equal(after_first, torch.rand(1))
    for block_a, block_b in zip(first, second, strict=True):
        for a, b in zip(block_a.parameters(), block_b.parameters(), strict=True):
            assert torch.equal(a, b)
    # blocks of the same shape still start apart (seed + index)
    assert not torch.equal(first[0][0].channel_mlp[0].weight, first[1][0].channel_mlp[0].weight)


@pytest.mark.parametrize(
    "bad", [{}, {"width": 0}, {"width": 0.5, "layers_per_block": 0}, {"width": 1, "rank": 2}]
)
def test_bad_replacement_size_is_refused(bad):
    with pytest.raises(ValueError):
        replacement_settings(bad)


def test_resnet_refuses_layers_per_block():
    with pytest.raises(ValueError, match="stages"):
        teacher_blocks(_teacher("resnet", CASES[4][1]), "resnet", layers_per_block=2)


def test_activations_chain_through_the_teacher_blocks():
    arch, size = "lstm", CASES[0][1]
    split = teacher_blocks(_teacher(arch, size), arch).eval()
    inputs = _inputs(10)
    boundaries = block_activations(split, inputs, batch_size=4)
    assert all(boundary.dtype == np.float32 for boundary in boundaries)
    with torch.no_grad():
        np.testing.assert_allclose(boundaries[0], split.pre(inputs).numpy())
        for index, block in enumerate(split.blocks):
            np.testing.assert_allclose(
                boundaries[index + 1], block(torch.from_numpy(boundaries[index])).numpy(), atol=1e-6
            )
        np.testing.assert_allclose(
            split.post(torch.from_numpy(boundaries[-1])).numpy(), split(inputs).numpy(), atol=1e-6
        )


def test_separable_replacement_learns_a_separable_teacher_conv_exactly():
    torch.manual_seed(0)
    source = SeparableConv2d(4, 6, stride=2)
    depthwise, pointwise = source[0].weight, source[1].weight  # (4, 1, 3, 3), (6, 4, 1, 1)
    teacher_conv = nn.Conv2d(4, 6, 3, 2, 1, bias=False)
    with torch.no_grad():
        teacher_conv.weight.copy_(pointwise[:, :, 0, 0, None, None] * depthwise[None, :, 0])
    inputs = torch.randn(128, 4, 6, 6, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        targets = teacher_conv(inputs)
        torch.testing.assert_close(source(inputs), targets)  # the dense conv is separable
    torch.manual_seed(1)
    student = SeparableConv2d(4, 6, stride=2)
    _, history = train_block(student, inputs, targets, epochs=60, lr=0.03, batch_size=32, seed=0)
    assert history[0]["relative_mse"] > 0.1
    assert history[-1]["relative_mse"] < 1e-4


class ZeroOutput(nn.Module):
    """A broken student block: zeros whatever it is fed, and stays so under training."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.zeros(()))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens * self.scale * 0.0  # zero gradient too: Adam leaves scale at 0


def test_blocks_train_on_teacher_activations_not_the_students_upstream_output():
    arch, size, replacement = "mixer", {"dim": 8, "depth": 2}, {"width": 0.5}
    split = teacher_blocks(_teacher(arch, size), arch)
    boundaries = block_activations(split, _inputs(64))
    settings = {"epochs": 2, "lr": 0.01, "batch_size": 16, "seed": 0}

    def second_block_state(upstream):
        blocks = replacement_blocks(split, arch, replacement, seed=2)
        results = train_blocks_sequentially(
            [ZeroOutput(), blocks[1]], boundaries, upstream=upstream, **settings
        )
        assert results[0][0]["scale"] == 0  # the upstream student block still outputs zeros
        return results[1][0]

    alone = replacement_blocks(split, arch, replacement, seed=2)[1]
    independent_state, _ = train_block(alone, boundaries[1], boundaries[2], **settings)
    teacher_fed = second_block_state("teacher")
    student_fed = second_block_state("student")
    for name, tensor in independent_state.items():
        torch.testing.assert_close(teacher_fed[name], tensor, rtol=0, atol=0)
    # the contrast: fed the broken upstream block's zeros, block 1 learns something else
    assert any(not torch.equal(student_fed[n], t) for n, t in independent_state.items())


def test_train_block_is_seeded_and_lowers_mse():
    arch, size, replacement = "resnet", CASES[5][1], {"width": 0.5}
    split = teacher_blocks(_teacher(arch, size), arch)
    boundaries = block_activations(split, _inputs(96))
    settings = {"epochs": 4, "lr": 0.01, "batch_size": 32, "seed": 4}
    lines = []
    runs = [
        train_block(
            replacement_blocks(split, arch, replacement, seed=0)[1],
            boundaries[1],
            boundaries[2],
            log=lines.append,
            **settings,
        )
        for _ in range(2)
    ]
    (state_a, history_a), (state_b, history_b) = runs
    for name, tensor in state_a.items():
        torch.testing.assert_close(state_b[name], tensor, rtol=0, atol=0)
    assert [h["mse"] for h in history_a] == [h["mse"] for h in history_b]
    assert history_a[-1]["mse"] < history_a[0]["mse"]
    assert len(lines) == 8 and "relative_mse" in lines[0]


@pytest.mark.parametrize("case", [CASES[1], CASES[3], CASES[5]], ids=["lstm", "mixer", "resnet"])
def test_assembled_student_equals_the_chain_of_its_trained_blocks(case):
    arch, size, replacement, _ = case
    teacher = _teacher(arch, size)
    _, layers_per_block = replacement_settings(replacement)
    split = teacher_blocks(teacher, arch, layers_per_block)
    boundaries = block_activations(split, _inputs(32))
    trained = replacement_blocks(split, arch, replacement, seed=7)
    states = [
        train_block(
            block, boundaries[i], boundaries[i + 1], epochs=1, lr=0.01, batch_size=8, seed=i
        )[0]
        for i, block in enumerate(trained)
    ]
    student = assemble_student(teacher, arch, states, replacement).eval()
    inputs = _inputs(9, seed=3)
    with torch.no_grad():
        features = split.eval().pre(inputs)
        for block in trained:
            features = block.eval()(features)
        chained = split.post(features)
        torch.testing.assert_close(student(inputs), chained, rtol=0, atol=1e-6)
        assert not torch.allclose(student(inputs), teacher(inputs), atol=1e-3)
    # the teacher's own parameters are not shared with the student (fine-tuning leaves it alone)
    teacher_ids = {id(p) for p in teacher.parameters()}
    assert not teacher_ids & {id(p) for p in student.parameters()}


def test_assembled_student_trains_with_train_model():
    arch, size, replacement = "mixer", {"dim": 8, "depth": 2}, {"width": 0.5}
    student = build_blockwise_student(arch, size, replacement)
    rng = np.random.default_rng(0)
    inputs = rng.random((64, 10, 10)).astype(np.float32)
    labels = rng.random((64, 256)) < 0.1
    init_output_bias(student, labels)  # finds the head through post
    frequency = float(labels[:, 0].mean())
    assert float(student.post.head.bias[0].detach()) == pytest.approx(
        np.log(frequency / (1 - frequency))
    )
    before = {n: t.clone() for n, t in student.state_dict().items()}
    result = train_model(
        student,
        (inputs, labels),
        (inputs[:16], labels[:16]),
        PhaseSettings(epochs=1, lr=0.01, batch_size=16, patience=1, device="cpu"),
        seed=0,
    )
    assert len(result.history) == 1
    assert any(not torch.equal(before[n], t) for n, t in result.best_state.items())


@pytest.mark.parametrize("case", [CASES[1], CASES[3], CASES[5]], ids=["lstm", "mixer", "resnet"])
def test_header_round_trip_rebuilds_the_student(case, tmp_path):
    arch, size, replacement, _ = case
    teacher = _teacher(arch, size)
    split = teacher_blocks(teacher, arch, replacement_settings(replacement)[1])
    states = [b.state_dict() for b in replacement_blocks(split, arch, replacement, seed=11)]
    student = assemble_student(teacher, arch, states, replacement).eval()
    header = blockwise_header(student, arch, size, replacement, app="pr", seed=1)
    path = tmp_path / "student.pt"
    save_checkpoint(path, student.state_dict(), header)
    loaded_header, state_dict = load_checkpoint(path)  # weights_only=True
    assert loaded_header == header and header["params"] == count_parameters(student)
    rebuilt = build_blockwise_student(loaded_header["arch"], **loaded_header["size"])
    rebuilt.load_state_dict(state_dict)
    inputs = _inputs(7, seed=5)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.eval()(inputs), student(inputs), rtol=0, atol=0)
