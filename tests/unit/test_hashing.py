import copy
import io
import json

import pytest
import torch
import yaml
from torch import nn

from packd import hashing, roast, roast_native
from packd.hashed_layers import VirtualLSTM
from packd.hashednet import HashedNetWeight, split_budget
from packd.hashing import compress_from_header, compress_model, hashing_header
from packd.models import build_model, count_parameters
from packd.roast import RoastArray, RoastWeight
from tests.conftest import REPO

ARCHS = ("lstm", "mixer", "resnet")
KINDS = ("roast", "hashednet")
SMALL_TILE = (4, 8)


@pytest.fixture(scope="module")
def student_sizes() -> dict[str, dict]:
    models = yaml.safe_load((REPO / "config.yaml").read_text())["models"]
    return {arch: models[arch]["student"] for arch in ARCHS}


@pytest.fixture(params=["native", "torch"])
def roast_path(request, monkeypatch) -> str:
    """Runs a test on ROAST's C kernels, then on its PyTorch path."""
    if request.param == "native":
        assert roast_native.library() is not None, "the C kernels did not build (is cc there?)"
    else:
        monkeypatch.setattr(roast_native, "usable", lambda weight: False)
    return request.param


def compressed_student(arch: str, kind: str, sizes: dict, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = build_model(arch, sizes[arch])
    return compress_model(model, kind, count_parameters(model) // 2, seed, tile=SMALL_TILE)


class Holder(nn.Module):
    """One layer in a module, as compress_model wants a non-container root."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer

    def forward(self, inputs):
        return self.layer(inputs)


def dense_layers() -> dict[str, tuple[nn.Module, torch.Tensor, list[torch.Tensor]]]:
    """Each layer kind: (dense layer, input, its hashed weight matrices in (out, in) layout)."""
    torch.manual_seed(0)
    linear = nn.Linear(11, 6)
    conv = nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2, bias=True)
    lstm = nn.LSTM(5, 3, num_layers=2, batch_first=True)
    with torch.no_grad():
        for parameter in lstm.parameters():
            parameter.normal_()  # large enough that a misplaced weight would show
    return {
        "linear": (linear, torch.randn(3, 11), [linear.weight]),
        "conv": (conv, torch.randn(2, 4, 7, 7), [conv.weight.reshape(6, -1)]),
        "lstm": (
            lstm,
            torch.randn(2, 4, 5),
            [lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.weight_ih_l1, lstm.weight_hh_l1],
        ),
    }


def dense_count(layer: nn.Module, matrices: list[torch.Tensor]) -> int:
    return count_parameters(layer) - sum(matrix.numel() for matrix in matrices)


def assert_same_outputs(first, second):
    if isinstance(first, tuple):  # LSTM: (output, (h_n, c_n))
        torch.testing.assert_close(first[0], second[0])
        torch.testing.assert_close(first[1], second[1])
    else:
        torch.testing.assert_close(first, second)


@pytest.mark.parametrize("arch", ARCHS)
def test_roast_offsets_deterministic_and_within_array(arch, student_sizes):
    first = compressed_student(arch, "roast", student_sizes, seed=1)
    again = compressed_student(arch, "roast", student_sizes, seed=1)
    other = compressed_student(arch, "roast", student_sizes, seed=2)
    tile_size = SMALL_TILE[0] * SMALL_TILE[1]
    array_size = first.roast_array.weight.numel()
    offsets = [reader.offsets for reader in first.roast_array.readers]
    for mine, theirs in zip(offsets, [r.offsets for r in again.roast_array.readers], strict=True):
        assert torch.equal(mine, theirs)
    assert torch.equal(first.roast_array.weight, again.roast_array.weight)
    assert not all(
        torch.equal(mine, theirs)
        for mine, theirs in zip(
            offsets, [r.offsets for r in other.roast_array.readers], strict=True
        )
    )
    for reader in first.roast_array.readers:
        assert reader.offsets.min() >= 0 and reader.offsets.max() + tile_size <= array_size
        slots = reader.element_slots()
        assert slots.numel() == reader.rows * reader.cols and slots.max() < array_size


@pytest.mark.parametrize("arch", ARCHS)
def test_hashednet_slots_deterministic_and_within_array(arch, student_sizes):
    first = compressed_student(arch, "hashednet", student_sizes, seed=1)
    again = compressed_student(arch, "hashednet", student_sizes, seed=1)
    pairs = zip(
        [m for m in first.modules() if isinstance(m, HashedNetWeight)],
        [m for m in again.modules() if isinstance(m, HashedNetWeight)],
        strict=True,
    )
    for mine, theirs in pairs:
        slots, signs = mine.slots_and_signs()
        assert torch.equal(slots, theirs.slots_and_signs()[0])
        assert slots.min() >= 0 and slots.max() < mine.weight.numel()
        assert set(signs.unique().tolist()) <= {-1.0, 1.0}
        assert torch.equal(mine.weight, theirs.weight)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("arch", ARCHS)
def test_state_dict_round_trip_rebuilds_the_same_model(arch, kind, student_sizes):
    model = compressed_student(arch, kind, student_sizes, seed=3)
    with torch.no_grad():  # as if trained: the rebuilt model must take these, not its own init
        for parameter in model.parameters():
            parameter.add_(0.01)
    header = json.loads(json.dumps(hashing_header(model)))
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    state_dict = torch.load(buffer, weights_only=True)

    torch.manual_seed(99)  # a different dense init: only the header and state dict may matter
    rebuilt = compress_from_header(build_model(arch, student_sizes[arch]), header)
    rebuilt.load_state_dict(state_dict)
    for name, tensor in rebuilt.state_dict().items():
        assert torch.equal(tensor, model.state_dict()[name]), name
    if kind == "roast":
        for mine, theirs in zip(
            model.roast_array.readers, rebuilt.roast_array.readers, strict=True
        ):
            assert torch.equal(mine.offsets, theirs.offsets)
    inputs = torch.rand(3, 10, 10)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.eval()(inputs), model.eval()(inputs))


def place_roast_weights_disjointly(compressed: nn.Module, matrices: list[torch.Tensor]) -> None:
    """Give every tile of every reader its own slice and write the dense weights there."""
    array = compressed.roast_array
    tile_rows, tile_cols = array.tile
    tile_size = tile_rows * tile_cols
    start = 0
    with torch.no_grad():
        for reader, matrix in zip(array.readers, matrices, strict=True):
            grid_rows, grid_cols = reader.offsets.shape
            count = grid_rows * grid_cols
            offsets = start + torch.arange(count).view(grid_rows, grid_cols) * tile_size
            reader.offsets.copy_(offsets)
            padded = torch.zeros(grid_rows * tile_rows, grid_cols * tile_cols)
            padded[: matrix.shape[0], : matrix.shape[1]] = matrix
            tiles = padded.view(grid_rows, tile_rows, grid_cols, tile_cols).permute(0, 2, 1, 3)
            array.weight[start : start + count * tile_size] = tiles.reshape(-1) / reader.scale
            start += count * tile_size


def roast_slots_needed(shapes: list[torch.Size], tile: tuple[int, int]) -> int:
    """Slots for every tile once, plus one tile (the array must exceed the largest offset)."""
    tiles = sum(-(-rows // tile[0]) * -(-cols // tile[1]) for rows, cols in shapes)
    return (tiles + 1) * tile[0] * tile[1]


@pytest.mark.parametrize("layer_kind", ["linear", "conv", "lstm"])
def test_roast_without_sharing_computes_the_dense_layer(layer_kind, roast_path):
    dense, inputs, matrices = dense_layers()[layer_kind]
    tile = (2, 4)  # not dividing the shapes: edge tiles are cropped
    budget = dense_count(dense, matrices) + roast_slots_needed([m.shape for m in matrices], tile)
    compressed = compress_model(Holder(dense), "roast", budget, seed=0, tile=tile)
    place_roast_weights_disjointly(compressed, [matrix.detach() for matrix in matrices])
    with torch.no_grad():
        assert_same_outputs(compressed(inputs), dense(inputs))
    compressed.train()  # the training pass's one gather reads the same weights
    assert_same_outputs(compressed(inputs), dense(inputs))


@pytest.mark.parametrize("layer_kind", ["linear", "conv", "lstm"])
def test_hashednet_identity_hash_computes_the_dense_layer(layer_kind):
    dense, inputs, matrices = dense_layers()[layer_kind]
    virtual = sum(matrix.numel() for matrix in matrices)
    compressed = compress_model(
        Holder(dense), "hashednet", dense_count(dense, matrices) + virtual, seed=0
    )
    layer = compressed.layer
    if isinstance(layer, VirtualLSTM):  # per layer: input matrix, then recurrent matrix
        pairs = zip(layer.input_weights, layer.recurrent_weights, strict=True)
        weights = [weight for pair in pairs for weight in pair]
    else:
        weights = [layer.virtual_weight]
    with torch.no_grad():
        for weight, matrix in zip(weights, matrices, strict=True):
            weight.hash_coefficients.copy_(torch.tensor([1, 0, 0, 0]))  # slot = k, sign = +1
            weight.weight.copy_(matrix.reshape(-1))
        assert_same_outputs(compressed(inputs), dense(inputs))


@pytest.mark.parametrize("one_pass", [False, True], ids=["per-layer", "one-pass"])
def test_roast_gradient_scaling_hand_computed(one_pass, roast_path):
    array = RoastArray(8, tile=(1, 2), seed=0)
    wide = RoastWeight(array, 0, rows=2, cols=2, scale=0.5)
    narrow = RoastWeight(array, 1, rows=1, cols=2, scale=1.0)
    with torch.no_grad():
        wide.offsets.zero_()  # every tile reads slots 0 and 1
        narrow.offsets.zero_()
    upstream_wide = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    upstream_narrow = torch.tensor([[5.0, 6.0]])
    if one_pass:  # as inside a compressed model's forward: both layers from one gather
        array.open_pass()
    loss = (wide() * upstream_wide).sum() + (narrow() * upstream_narrow).sum()
    array.close_pass()
    loss.backward()
    # slot 0: raw 0.5 * (1 + 3) + 1.0 * 5 = 7, divisor 2 * 0.5**2 + 1.0**2 = 1.5
    # slot 1: raw 0.5 * (2 + 4) + 1.0 * 6 = 9, same divisor; the other slots are unread
    expected = torch.tensor([7 / 1.5, 9 / 1.5, 0, 0, 0, 0, 0, 0])
    torch.testing.assert_close(array.weight.grad, expected)


@pytest.mark.parametrize("arch", ARCHS)
def test_a_training_forward_gathers_once_and_matches_per_layer_gathers(
    arch, student_sizes, monkeypatch, roast_path
):
    model = compressed_student(arch, "roast", student_sizes).train()
    array = model.roast_array
    inputs = torch.rand(4, 10, 10)
    gathers = []
    original = roast.read_matrices

    def counted(array, readers):
        gathers.append(len(readers))  # matrices gathered by this call
        return original(array, readers)

    monkeypatch.setattr(roast, "read_matrices", counted)
    model(inputs).square().sum().backward()
    one_pass_grads = [p.grad.clone() for p in model.parameters()]
    assert gathers == [len(array.readers)]
    assert not array._in_pass and array._pass_weights is None  # the model's forward closed it

    model.zero_grad()
    gathers.clear()
    with monkeypatch.context() as patch:
        patch.setattr(array, "pass_weight", lambda reader: None)  # every layer gathers its own
        model(inputs).square().sum().backward()
    assert gathers == [1] * len(array.readers)
    for one_pass, per_layer in zip(one_pass_grads, model.parameters(), strict=True):
        torch.testing.assert_close(one_pass, per_layer.grad)
    assert array.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("arch", ARCHS)
def test_the_c_kernels_and_the_pytorch_path_give_the_same_bits(arch, student_sizes, monkeypatch):
    assert roast_native.library() is not None
    figures = {}
    for path in ("native", "torch"):
        with monkeypatch.context() as patch:
            if path == "torch":
                patch.setattr(roast_native, "usable", lambda weight: False)
            model = compressed_student(arch, "roast", student_sizes).train()  # edge tiles cropped
            optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
            generator = torch.Generator().manual_seed(1)
            steps = []
            for _ in range(3):
                inputs = torch.rand(8, 10, 10, generator=generator)
                model.zero_grad()
                outputs = model(inputs)
                outputs.square().sum().backward()
                steps.append((outputs.detach().clone(), model.roast_array.weight.grad.clone()))
                optimizer.step()
            with torch.inference_mode():
                steps.append((model.eval()(inputs).clone(),))
        figures[path] = steps
    for native, pytorch in zip(figures["native"], figures["torch"], strict=True):
        assert all(torch.equal(a, b) for a, b in zip(native, pytorch, strict=True))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("arch", ARCHS)
def test_real_parameter_count_is_the_budget(arch, kind, student_sizes):
    dense = build_model(arch, student_sizes[arch])
    for budget in (count_parameters(dense) // 2, count_parameters(dense) // 3):
        model = compress_model(dense, kind, budget, seed=0, tile=SMALL_TILE)
        assert count_parameters(model) == budget
    model(torch.rand(2, 10, 10)).sum().backward()
    arrays = [m.weight for m in model.modules() if isinstance(m, RoastArray | HashedNetWeight)]
    assert arrays and all(array.grad is not None for array in arrays)
    assert all(torch.isfinite(array.grad).all() and array.grad.abs().sum() > 0 for array in arrays)


@pytest.mark.parametrize("kind", KINDS)
def test_budget_below_the_dense_parameters_raises(kind, student_sizes):
    model = build_model("mixer", student_sizes["mixer"])
    hashed = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear))
    dense_parameters = count_parameters(model) - hashed
    with pytest.raises(ValueError, match=f"below the {dense_parameters} parameters"):
        compress_model(model, kind, dense_parameters, seed=0)


def test_a_roast_model_keeps_its_class_and_closes_a_failed_pass(student_sizes, roast_path):
    dense = build_model("mixer", student_sizes["mixer"])
    model = compressed_student("mixer", "roast", student_sizes).train()
    assert isinstance(model, type(dense)) and type(model).__name__ == type(dense).__name__
    assert type(model) is type(compressed_student("mixer", "roast", student_sizes))  # one class
    array = model.roast_array

    def fail_after_the_gather(*_) -> None:
        assert array._in_pass and array._pass_weights is not None  # mid-pass, gathered
        raise RuntimeError("a layer failed")

    handle = model.head.register_forward_hook(fail_after_the_gather)
    with pytest.raises(RuntimeError, match="a layer failed"):
        model(torch.rand(4, 10, 10))
    handle.remove()
    assert not array._in_pass and array._pass_weights is None
    model(torch.rand(4, 10, 10)).sum().backward()  # the next forward gathers afresh
    assert array.weight.grad.abs().sum() > 0


def test_inference_cache_follows_the_array(student_sizes, roast_path):
    model = compressed_student("mixer", "roast", student_sizes).eval()
    inputs = torch.rand(4, 10, 10)
    with torch.inference_mode():
        before = model(inputs)
        assert torch.equal(model(inputs), before)
    cached = [reader._cached_weight for reader in model.roast_array.readers]
    assert all(weight.is_contiguous() for weight in cached)  # cropped edge tiles included
    model(inputs).sum().backward()  # grad enabled: gathers afresh
    with torch.no_grad():  # an SGD step: changes the array in place, as optimizers do
        for parameter in model.parameters():
            parameter.sub_(0.1 * parameter.grad)
    with torch.inference_mode():
        after = model(inputs)
    fresh = compress_from_header(
        build_model("mixer", student_sizes["mixer"]), hashing_header(model)
    )
    fresh.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(after, fresh.eval()(inputs))
    assert not torch.allclose(after, before)


SMALL_TEACHERS = {
    "lstm": {"hidden": 24, "layers": 2},
    "mixer": {"dim": 32, "depth": 2},
    "resnet": {"block": "basic", "layers": [1, 1], "width": 8},  # first conv: another fan-in
}


def weight_matrices(model: nn.Module) -> list[torch.Tensor]:
    """The model's weight matrices as hashing sees them: virtual ones materialised, else dense."""
    with torch.no_grad():
        virtual = [m() for m in model.modules() if isinstance(m, RoastWeight | HashedNetWeight)]
        if virtual:
            return [matrix.detach().clone() for matrix in virtual]
        dense = []
        for module in model.modules():
            if isinstance(module, nn.Linear | nn.Conv2d):
                dense.append(module.weight.detach().clone())
            elif isinstance(module, nn.LSTM):
                dense += [p.detach().clone() for n, p in module.named_parameters() if "weight" in n]
        return dense


def mean_step_and_init_std(model: nn.Module, inputs: torch.Tensor, lr: float) -> tuple:
    """(mean |change| of the weight matrices over one Adam step at `lr`, their std before)."""
    before = torch.cat([matrix.reshape(-1) for matrix in weight_matrices(model)])
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()(inputs).square().mean().backward()
    optimizer.step()
    after = torch.cat([matrix.reshape(-1) for matrix in weight_matrices(model)])
    return (after - before).abs().mean().item(), before.std().item()


@pytest.mark.parametrize("arch", ARCHS)
def test_one_adam_step_moves_roast_hashednet_and_dense_weights_alike(arch, roast_path):
    # Adam moves each real parameter by about lr whatever its gradient's scale; ROAST's virtual
    # weights are scale * slot, so with the paper's scales (the dense init std, about 0.1 here)
    # they moved about 10x less than HashedNet's or the dense layer's, 20x at the teacher sizes
    torch.manual_seed(0)
    teacher = build_model(arch, SMALL_TEACHERS[arch])
    inputs = torch.rand(16, 10, 10, generator=torch.Generator().manual_seed(1))
    budget = count_parameters(teacher) // 4
    lr = 0.01
    steps, stds = {}, {}
    for kind in KINDS:
        model = compress_model(teacher, kind, budget, seed=0, tile=SMALL_TILE)
        steps[kind], stds[kind] = mean_step_and_init_std(model, inputs, lr)
    steps["dense"], stds["dense"] = mean_step_and_init_std(copy.deepcopy(teacher), inputs, lr)
    assert 0.5 * lr < steps["dense"] <= 1.01 * lr
    for method in ("hashednet", "dense"):
        ratio = steps["roast"] / steps[method]
        assert 1 / 3 < ratio < 3, (steps, method)
    # The scale folded into the array's init leaves the virtual weights' init distribution
    assert stds["roast"] == pytest.approx(stds["dense"], rel=0.25)


def test_roast_scales_are_relative_to_the_arrays_init_std():
    torch.manual_seed(0)
    teacher = build_model("resnet", SMALL_TEACHERS["resnet"])
    model = compress_model(teacher, "roast", count_parameters(teacher) // 4, seed=0)
    matrices = [m for module in teacher.modules() for m in hashing.hashed_matrices(module)]
    unit = hashing_header(model)["scale_unit"]
    assert unit == roast.roast_scale_unit(matrices) == model.hashing_spec.scale_unit
    assert model.roast_array.weight.std().item() == pytest.approx(unit, rel=0.05)
    scales = [reader.scale for reader in model.roast_array.readers]
    assert scales == [std / unit for _, _, std in matrices]
    # Fan-ins from 8 to 144: the scales differ, and average 1 over the virtual weights
    sizes = [rows * cols for rows, cols, _ in matrices]
    assert len(set(scales)) > 1
    assert sum(s * n for s, n in zip(scales, sizes, strict=True)) == pytest.approx(sum(sizes))
    # An LSTM's matrices all have the hidden size as fan-in: the virtual weight is the slot
    lstm = compress_model(build_model("lstm", SMALL_TEACHERS["lstm"]), "roast", 4000, seed=0)
    assert all(r.scale == pytest.approx(1.0, abs=1e-12) for r in lstm.roast_array.readers)
    assert "scale_unit" not in hashing_header(compress_model(teacher, "hashednet", 4000, seed=0))


@pytest.mark.parametrize("arch", ARCHS)
def test_a_roast_header_without_a_scale_unit_rebuilds_the_unit_1_model(arch, student_sizes):
    # Checkpoints written before the scale unit: std-1 array, each layer scaled by its init std
    torch.manual_seed(0)
    model = build_model(arch, student_sizes[arch])
    old = compress_model(model, "roast", count_parameters(model) // 2, 3, SMALL_TILE, scale_unit=1)
    matrices = [m for module in model.modules() for m in hashing.hashed_matrices(module)]
    assert [r.scale for r in old.roast_array.readers] == [std for _, _, std in matrices]
    header = hashing_header(old)
    assert header.pop("scale_unit") == 1.0
    rebuilt = compress_from_header(build_model(arch, student_sizes[arch]), header)
    rebuilt.load_state_dict(old.state_dict())
    assert [r.scale for r in rebuilt.roast_array.readers] == [std for _, _, std in matrices]
    inputs = torch.rand(3, 10, 10)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.eval()(inputs), old.eval()(inputs))


def test_split_budget_sums_to_the_total_and_gives_every_array_a_slot():
    shares = split_budget(10, [1, 1000, 3, 500])
    assert sum(shares) == 10 and min(shares) >= 1
    assert shares[1] > shares[3] > 0
    assert split_budget(7, [2, 5]) == [2, 5]
    with pytest.raises(ValueError, match="one"):
        split_budget(2, [1, 1, 1])


def test_compress_model_rejects_bad_kind_and_containers():
    with pytest.raises(ValueError, match="unknown hashing kind"):
        compress_model(Holder(nn.Linear(4, 4)), "lowrank", 100, seed=0)
    with pytest.raises(ValueError, match="Sequential"):
        compress_model(nn.Sequential(nn.Linear(4, 4)), "roast", 100, seed=0)
    with pytest.raises(ValueError, match="not made by compress_model"):
        hashing_header(nn.Linear(4, 4))


def test_a_tiny_budget_gets_a_smaller_tile_that_fits() -> None:
    from packd.roast import fitting_tile

    assert fitting_tile(100_000, (32, 32)) == (32, 32)
    assert fitting_tile(876, (32, 32)) == (8, 8)
    assert fitting_tile(3, (32, 32)) == (1, 1)
    model = build_model("lstm", {"hidden": 16, "layers": 1})
    dense = sum(p.numel() for n, p in model.named_parameters() if "bias" in n)
    compressed = compress_model(model, "roast", dense + 500, seed=0)
    assert sum(p.numel() for p in compressed.parameters()) == dense + 500
    assert compressed.hashing_spec.tile == (4, 4)


def test_a_budget_below_the_dense_parts_is_raised_to_the_smallest_that_hashes() -> None:
    from packd.hashing import MIN_ARRAY_SLOTS, dense_parameter_count, smallest_budget

    model = build_model("mixer", {"dim": 32, "depth": 2})
    dense = dense_parameter_count(model)
    assert 0 < dense < sum(p.numel() for p in model.parameters())
    assert smallest_budget(model, 10) == dense + MIN_ARRAY_SLOTS
    assert smallest_budget(model, 10**6) == 10**6
    compressed = compress_model(model, "roast", smallest_budget(model, 10), seed=0)
    assert sum(p.numel() for p in compressed.parameters()) == dense + MIN_ARRAY_SLOTS
