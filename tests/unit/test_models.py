import numpy as np
import pytest
import torch

from packd.checkpoint import checkpoint_header, load_checkpoint, save_checkpoint
from packd.models import (
    MODEL_BUILDERS,
    PAPER_SIZES,
    build_model,
    count_parameters,
    init_output_bias,
    model_bytes,
)
from packd.networks import model_from_checkpoint

SMALL_SIZES = {
    "frequency": {},
    "mlp": {"hidden": 8},
    "lstm": {"hidden": 8, "layers": 2},
    "mixer": {"dim": 8, "depth": 2},
    "resnet": {"block": "bottleneck", "layers": [1, 1], "width": 4},
}
# The authors' counts (docs/method.md, section 3); LSTM teacher: 5.26 M with 10 inputs a step
PAPER_PARAMS = {
    "lstm": (5.26e6, 6.1e3),
    "mixer": (5.48e6, 10.2e3),
    "resnet": (5.42e6, 9.3e3),
}


@pytest.mark.parametrize("arch", sorted(MODEL_BUILDERS))
def test_output_shape(arch):
    model = build_model(arch, SMALL_SIZES[arch]).eval()
    assert model(torch.rand(3, 10, 10)).shape == (3, 256)


@pytest.mark.parametrize("arch", sorted(PAPER_SIZES))
def test_paper_student_output_shape(arch):
    model = build_model(arch, PAPER_SIZES[arch]["student"]).eval()
    assert model(torch.rand(2, 10, 10)).shape == (2, 256)


@pytest.mark.parametrize("arch", sorted(PAPER_SIZES))
def test_paper_sizes_near_paper_counts(arch):
    with torch.device("meta"):  # no memory or init time for 5 M parameters
        teacher = build_model(arch, PAPER_SIZES[arch]["teacher"])
        student = build_model(arch, PAPER_SIZES[arch]["student"])
    teacher_params, student_params = count_parameters(teacher), count_parameters(student)
    paper_teacher, paper_student = PAPER_PARAMS[arch]
    assert abs(teacher_params / paper_teacher - 1) < 0.10
    assert abs(student_params / paper_student - 1) < 0.15
    assert teacher_params / student_params >= 500


def test_mixer_with_patches():
    model = build_model("mixer", {"dim": 8, "depth": 1, "patch": 5}).eval()
    assert model(torch.rand(2, 10, 10)).shape == (2, 256)
    with pytest.raises(ValueError, match="patch"):
        build_model("mixer", {"dim": 8, "depth": 1, "patch": 3})


def test_lstm_is_batch_first_with_no_state_across_samples():
    torch.manual_seed(0)
    model = build_model("lstm", {"hidden": 8, "layers": 2}).eval()
    inputs = torch.rand(6, 10, 10)
    permutation = torch.tensor([3, 0, 5, 1, 4, 2])
    with torch.no_grad():
        outputs = model(inputs)
        permuted_outputs = model(inputs[permutation])
        single = model(inputs[2:3])
    torch.testing.assert_close(permuted_outputs, outputs[permutation])
    torch.testing.assert_close(single, outputs[2:3])
    assert model.lstm.batch_first and model.lstm.input_size == 10


def test_lstm_reads_the_time_order():
    torch.manual_seed(0)
    model = build_model("lstm", {"hidden": 8, "layers": 1}).eval()
    inputs = torch.rand(2, 10, 10)
    with torch.no_grad():
        assert not torch.allclose(model(inputs), model(inputs.flip(1)))


def test_build_model_errors():
    with pytest.raises(ValueError, match="lstm.*mixer.*resnet"):
        build_model("transformer", {})
    with pytest.raises(ValueError, match="bad size"):
        build_model("lstm", {"hidden": 8})
    with pytest.raises(ValueError, match="block"):
        build_model("resnet", {"block": "wide", "layers": [1], "width": 4})


def test_count_and_bytes():
    model = build_model("resnet", SMALL_SIZES["resnet"])
    params = count_parameters(model)
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    assert buffers > 0  # BatchNorm running statistics count toward the size
    assert model_bytes(model) == params * 4 + buffers


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    size = SMALL_SIZES["resnet"]
    model = build_model("resnet", size).eval()
    header = checkpoint_header(model, "resnet", size, role="student", app="bc", k=2)
    path = tmp_path / "ckpt" / "student.pt"
    save_checkpoint(path, model.state_dict(), header)
    assert [p.name for p in path.parent.iterdir()] == ["student.pt"]  # no temp file left
    loaded_header, state_dict = load_checkpoint(path)
    assert loaded_header == header and loaded_header["params"] == count_parameters(model)
    assert loaded_header["k"] == 2
    rebuilt, _ = model_from_checkpoint(path)
    inputs = torch.rand(3, 10, 10)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(inputs), model(inputs))


def test_checkpoint_header_must_be_json(tmp_path):
    with pytest.raises(TypeError):
        save_checkpoint(tmp_path / "bad.pt", {}, {"arch": object()})
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("arch", ["lstm", "mixer", "resnet"])
def test_init_output_bias_starts_at_the_label_frequencies(arch):
    model = build_model(arch, SMALL_SIZES[arch])
    rng = np.random.default_rng(0)
    labels = rng.random((500, 256)) < np.linspace(0.0, 0.9, 256)  # bit 0 is never set
    init_output_bias(model, labels)
    frequencies = labels.mean(axis=0)
    probabilities = torch.sigmoid(model.head.bias).detach().numpy()
    np.testing.assert_allclose(probabilities[1:], frequencies[1:].clip(1e-4, 1 - 1e-4), atol=1e-5)
    assert np.isfinite(model.head.bias.detach().numpy()).all() and probabilities[0] < 1e-3


def test_init_output_bias_rejects_labels_of_another_width():
    model = build_model("lstm", {"hidden": 4, "layers": 1})
    with pytest.raises(ValueError, match="do not fit 256"):
        init_output_bias(model, np.zeros((10, 8), dtype=bool))


@pytest.mark.parametrize("arch", ["lstm", "mixer", "resnet"])
@pytest.mark.parametrize("factor", [0.5, 4.0])
def test_size_for_budget_is_the_closest_width(arch, factor):
    from packd.models import WIDTH_KEYS, size_for_budget

    student = SMALL_SIZES[arch]
    budget = int(factor * count_parameters(build_model(arch, student)))
    size = size_for_budget(arch, student, budget)
    key = WIDTH_KEYS[arch]
    assert {k: v for k, v in size.items() if k != key} == {
        k: v for k, v in student.items() if k != key
    }
    error = abs(count_parameters(build_model(arch, size)) - budget)
    for neighbour in (size[key] - 1, size[key] + 1):
        if neighbour >= 1:
            other = count_parameters(build_model(arch, {**size, key: neighbour}))
            assert error <= abs(other - budget)
