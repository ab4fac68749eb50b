import numpy as np
import pytest
import torch

from packd.config import with_schema_defaults
from packd.kd_settings import KDSettings
from packd.models import build_model
from packd.train import (
    PhaseSettings,
    cosine_lr,
    predict_logits,
    recompute_batchnorm_statistics,
    resolve_device,
    seed_everything,
    train_model,
)
from tests.conftest import SCHEMA

TIMING_KEYS = {"seconds", "samples_per_s"}


def _task(n: int, seed: int):
    """Bit k (of 8) is set, with probability 0.2, exactly when the current chunk k is 0.9."""
    rng = np.random.default_rng(seed)
    inputs = rng.random((n, 10, 10)).astype(np.float32)
    bits_on = rng.random((n, 8)) < 0.2
    inputs[:, -1, :8] = np.where(bits_on, 0.9, 0.1)
    labels = np.zeros((n, 256), dtype=bool)
    labels[:, :8] = bits_on
    return inputs, labels


def _settings(**overrides) -> PhaseSettings:
    """A short CPU phase: 8 epochs at 3e-2, batches of 32, patience 3 (overrides: any field)."""
    fields = {"epochs": 8, "lr": 3e-2, "batch_size": 32, "patience": 3, "device": "cpu"}
    return PhaseSettings(**{**fields, **overrides})


def _train(seed: int = 0, *, kd: KDSettings | None = None, log=None, **overrides):
    seed_everything(seed)
    model = build_model("mixer", {"dim": 16, "depth": 1})
    settings = _settings(**overrides)
    return model, train_model(
        model, _task(2000, 1), _task(500, 2), settings, seed=seed, kd=kd, log=log
    )


def test_learns_trivial_task_well_above_chance():
    lines = []
    _, result = _train(log=lines.append)
    # chance: predicting all 8 candidate bits (20% positive) gives F1 = 2 * 0.2 / 1.2 = 0.33
    assert result.best_val_f1 > 0.8
    assert result.best_epoch == max(result.history, key=lambda h: h["val_f1"])["epoch"]
    assert result.device == "cpu"
    assert len(lines) == len(result.history) + 1
    assert "val_f1" in lines[0] and "samples/s" in lines[0]
    first = result.history[0]
    assert set(first) >= {"epoch", "train_loss", "val_loss", "val_f1", "val_threshold"}
    assert result.history[-1]["train_loss"] < first["train_loss"]


def test_same_seed_identical_history_and_weights():
    _, first = _train(epochs=2, seed=1)
    _, second = _train(epochs=2, seed=1)
    strip = [{k: v for k, v in h.items() if k not in TIMING_KEYS} for h in first.history]
    assert strip == [{k: v for k, v in h.items() if k not in TIMING_KEYS} for h in second.history]
    for name, tensor in first.best_state.items():
        torch.testing.assert_close(tensor, second.best_state[name])


def test_early_stopping_stops():
    # lr 0 never improves after epoch 1, so it stops after 1 + patience epochs
    _, result = _train(lr=0.0, epochs=20, patience=2)
    assert len(result.history) == 3
    assert result.best_epoch == 1
    assert "early stop" in result.stop_reason


def test_kd_loss_and_test_protocol_recorded():
    inputs, labels = _task(2000, 1)
    teacher_logits = np.where(labels, 6.0, -6.0).astype(np.float32)
    seed_everything(0)
    model = build_model("lstm", {"hidden": 16, "layers": 1})
    result = train_model(
        model,
        (inputs, labels, teacher_logits),
        _task(500, 2),
        _settings(epochs=2, lr=1e-2, batch_size=64, amp="auto"),
        seed=0,
        test=_task(300, 3),
        kd=KDSettings(alpha=0.5, temperature=2.0, scale_soft_by_t2=True),
    )
    record = result.history[-1]
    for key in ("test_f1_best_threshold", "test_best_threshold", "test_f1_at_0.5"):
        assert 0.0 <= record[key] <= 1.0
    model.load_state_dict(result.best_state)
    logits = predict_logits(model, _task(10, 4)[0], batch_size=4, device="cpu")
    assert logits.shape == (10, 256) and logits.dtype == np.float32


def test_kd_without_teacher_logits_and_bad_kd_settings_raise():
    with pytest.raises(ValueError, match="teacher logits"):
        _train(kd=KDSettings(alpha=0.5, temperature=1.0, scale_soft_by_t2=True))
    with pytest.raises(ValueError, match="KD needs"):
        KDSettings(alpha=1.5, temperature=1.0, scale_soft_by_t2=True)
    with pytest.raises(ValueError, match="KD needs"):
        KDSettings(alpha=0.5, temperature=0.0, scale_soft_by_t2=True)


def test_time_limit_stops_after_first_epoch():
    _, result = _train(max_seconds=0.0)
    assert len(result.history) == 1 and "time limit" in result.stop_reason


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in {"cpu", "cuda"}
    with pytest.raises(ValueError):
        resolve_device("tpu")


def test_no_early_stop_on_the_label_frequency_plateau() -> None:
    """A model whose validation F1 never rises above the plateau trains every epoch."""
    from packd.train import frequency_f1

    rng = np.random.default_rng(0)
    labels = rng.random((256, 256)) < 0.05
    inputs = rng.random((256, 10, 10)).astype(np.float32)  # noise: nothing to learn
    plateau = frequency_f1(labels, labels)
    settings = _settings(epochs=6, lr=1e-6, batch_size=128, patience=1)
    guarded = train_model(
        build_model("lstm", {"hidden": 4, "layers": 1}), (inputs, labels), (inputs, labels),
        settings, seed=0, plateau_f1=1.0,
    )  # fmt: skip
    assert len(guarded.history) == 6 and guarded.stop_reason == "max epochs"
    free = train_model(
        build_model("lstm", {"hidden": 4, "layers": 1}), (inputs, labels), (inputs, labels),
        settings, seed=0,
    )  # fmt: skip
    assert len(free.history) < 6
    assert 0 < plateau < 1


def test_cosine_lr_decays_from_the_rate_to_zero() -> None:
    assert cosine_lr(0.1, 0, 100) == pytest.approx(0.1)
    assert cosine_lr(0.1, 50, 100) == pytest.approx(0.05)
    assert cosine_lr(0.1, 100, 100) == pytest.approx(0.0)
    rates = [cosine_lr(0.1, step, 100) for step in range(101)]
    assert all(later <= earlier for earlier, later in zip(rates, rates[1:], strict=False))


def test_cosine_schedule_changes_training_and_bad_schedule_raises() -> None:
    _, constant = _train(seed=1)
    _, cosine = _train(seed=1, schedule="cosine")
    # Same seed, same first step (the rate starts at lr): only the decay makes them differ
    assert constant.history[0]["train_loss"] != cosine.history[0]["train_loss"]
    assert cosine.best_val_f1 > 0.45  # above chance (0.33): it trains
    with pytest.raises(ValueError, match="schedule"):
        _settings(epochs=1, schedule="linear")


def test_phase_settings_read_the_schedule() -> None:
    budget = {"epochs": 2, "lr": 0.01, "batch_size": 8, "patience": 1}
    config = {"teacher": {**budget, "schedule": "cosine"}, "student": budget}
    config = with_schema_defaults("train", config, SCHEMA)
    assert PhaseSettings.from_config(config, "teacher", "lstm").schedule == "cosine"
    assert PhaseSettings.from_config(config, "student", "lstm").schedule == "constant"


def test_an_initial_candidate_is_kept_when_no_epoch_beats_it() -> None:
    train, val = _task(512, 1), _task(256, 2)
    seed_everything(0)
    model = build_model("mixer", {"dim": 16, "depth": 1})
    trained = train_model(model, train, val, _settings(epochs=6, patience=6), seed=0)
    model.load_state_dict(trained.best_state)
    # A rate that wrecks the model in one step: no trained epoch can beat the warm start
    again = train_model(
        model, train, val, _settings(epochs=2, lr=50.0, patience=2), seed=0,
        initial_candidate=True,
    )  # fmt: skip
    assert again.history[0]["epoch"] == 0 and len(again.history) == 3
    assert again.best_epoch == 0
    assert again.best_val_f1 == pytest.approx(trained.best_val_f1)
    for name, tensor in trained.best_state.items():
        torch.testing.assert_close(again.best_state[name], tensor, rtol=0, atol=0)


def test_without_an_initial_candidate_epoch_0_is_not_scored() -> None:
    _, result = _train(epochs=2)
    assert [record["epoch"] for record in result.history] == [1, 2]


def test_batchnorm_statistics_are_recomputed_on_the_training_inputs() -> None:
    torch.manual_seed(0)
    model = build_model("resnet", {"block": "basic", "layers": [1], "width": 2})
    inputs = torch.randn(600, 10, 10) * 3.0 + 5.0
    subset = inputs[torch.linspace(0, 599, 300).long()]
    model.eval()
    with torch.no_grad():
        fresh_outputs = model(subset)
        batch_outputs = model.train()(subset)  # every norm on the subset's own statistics
    model.eval()
    assert recompute_batchnorm_statistics(model, inputs, 300, 60, "cpu")  # 5 equal batches
    assert not model.training  # the mode it was in is restored
    stem_norm = model.stem[1]
    assert stem_norm.momentum == 0.1  # the training momentum is back
    with torch.no_grad():
        stem_features = model.stem[0](subset.unsqueeze(1))
        recomputed_outputs = model(subset)
    assert torch.allclose(stem_norm.running_mean, stem_features.mean(dim=(0, 2, 3)), atol=1e-4)
    # Scored with the recomputed statistics, eval mode is close to the subset's own batch
    # statistics; with the fresh (0, 1) statistics it is far from them.
    recomputed_gap = (recomputed_outputs - batch_outputs).abs().max()
    assert recomputed_gap < 0.05 * (fresh_outputs - batch_outputs).abs().max()
    assert not recompute_batchnorm_statistics(model, inputs, 0, 64, "cpu")
    mixer = build_model("mixer", {"dim": 4, "depth": 1})  # LayerNorm only
    assert not recompute_batchnorm_statistics(mixer, inputs, 8, 4, "cpu")


def test_phase_settings_read_the_batchnorm_samples() -> None:
    budget = {"epochs": 2, "lr": 0.01, "batch_size": 8, "patience": 1}
    config = with_schema_defaults("train", {"teacher": budget, "student": budget}, SCHEMA)
    assert PhaseSettings.from_config(config, "student", "resnet").bn_stats_samples == 8192
    config["bn_stats_samples"] = 0
    assert PhaseSettings.from_config(config, "teacher", "resnet").bn_stats_samples == 0
