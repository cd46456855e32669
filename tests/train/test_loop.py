import math

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, confusion_matrix

from lepton.models import ModelSpec
from lepton.train import TensorBatches, TrainConfig, evaluate, fit, load_checkpoint, lr_at, seed_everything

CFG = TrainConfig(epochs=3, batch_size=32, lr=0.05, seed=7, threads=1)


def _train(digits, cfg=CFG, **kw):
    seed_everything(cfg.seed, cfg.threads)
    spec = ModelSpec("lenet-300-100", digits.input_shape, digits.num_classes)
    model = spec.build()
    x, y = digits.tensors("train")
    report = fit(
        model,
        TensorBatches(x, y, cfg.batch_size, seed=cfg.seed),
        cfg,
        spec=spec,
        eval_data=digits.tensors("test"),
        progress=False,
        **kw,
    )
    return model, report


def test_training_learns_digits(digits):
    _, report = _train(digits)
    assert report.final_test_accuracy > 0.85
    assert [r.epoch for r in report.history] == [1, 2, 3]
    assert report.history[-1].train_loss < report.history[0].train_loss


def test_same_seed_gives_identical_weights(digits):
    a, _ = _train(digits)
    b, _ = _train(digits)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), name


def test_different_seed_gives_different_weights(digits):
    a, _ = _train(digits)
    b, _ = _train(digits, CFG.model_copy(update={"seed": 8}))
    assert not torch.equal(a.fc1.weight, b.fc1.weight)


class _Interrupt(Exception):
    pass


def test_resume_reproduces_an_uninterrupted_run(digits, tmp_path):
    full, _ = _train(digits)
    steps = {"n": 0}
    per_epoch = math.ceil(len(digits.x_train) / CFG.batch_size)

    def crash_in_epoch_three(_model):
        steps["n"] += 1
        if steps["n"] == 2 * per_epoch + 5:
            raise _Interrupt

    with pytest.raises(_Interrupt):
        _train(digits, checkpoint_dir=tmp_path, after_step=crash_in_epoch_three)
    assert load_checkpoint(tmp_path / "last").meta["train"]["epoch"] == 2
    resumed, report = _train(digits, checkpoint_dir=tmp_path, resume=True)
    assert report.resumed_from_epoch == 2 and len(report.history) == 3
    for (name, pa), pb in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(pa, pb), name


def test_after_step_hook_keeps_a_mask(digits):
    mask = torch.rand(300, 64, generator=torch.Generator().manual_seed(0)) > 0.5

    def apply_mask(model):
        with torch.no_grad():
            model.fc1.weight.mul_(mask)

    model, _ = _train(digits, after_step=apply_mask)
    assert torch.all(model.fc1.weight[~mask] == 0)


def test_custom_objective_is_used(digits):
    calls = []

    def objective(logits, y, x):
        calls.append(x.shape[0])
        return torch.nn.functional.cross_entropy(logits, y)

    _train(digits, CFG.model_copy(update={"epochs": 1}), objective=objective)
    assert sum(calls) == len(digits.x_train)


def test_lr_schedule():
    cfg = TrainConfig(epochs=10, lr=1.0, warmup_epochs=1, schedule="cosine")
    assert lr_at(cfg, 0, 100) == pytest.approx(0.1)
    assert lr_at(cfg, 50, 100) == pytest.approx(0.55)
    assert lr_at(cfg, 100, 100) == pytest.approx(1.0)
    assert lr_at(cfg, 550, 100) == pytest.approx(0.5)
    assert lr_at(cfg, 1000, 100) == pytest.approx(0.0, abs=1e-12)
    step = TrainConfig(epochs=10, lr=1.0, schedule="step", step_epochs=3, step_gamma=0.5)
    assert [lr_at(step, e * 100, 100) for e in (0, 2, 3, 6, 9)] == [1.0, 1.0, 0.5, 0.25, 0.125]


def test_batches_cover_every_sample_once_per_epoch():
    x = torch.arange(103).float().unsqueeze(1)
    b = TensorBatches(x, torch.arange(103), 10, seed=1)
    b.set_epoch(0)
    first = torch.cat([xb for xb, _ in b]).flatten()
    b.set_epoch(1)
    second = torch.cat([xb for xb, _ in b]).flatten()
    assert len(b) == 11 and sorted(first.tolist()) == list(range(103))
    assert not torch.equal(first, second)


def test_evaluate_against_sklearn(digits):
    model, _ = _train(digits, CFG.model_copy(update={"epochs": 1}))
    x, y = digits.tensors("test")
    ev = evaluate(model, x, y, num_classes=10, batch_size=64)
    pred = model.eval()(x).argmax(1).numpy()
    assert ev.accuracy == pytest.approx(accuracy_score(y.numpy(), pred))
    cm = confusion_matrix(y.numpy(), pred, labels=range(10))
    assert ev.confusion == cm.tolist()
    np.testing.assert_allclose(ev.per_class_accuracy, cm.diagonal() / cm.sum(1), atol=1e-6)
