import pytest

from lepton.models import ModelSpec
from lepton.train import TensorBatches, TrainConfig, fit, seed_everything

DIGITS_CFG = TrainConfig(epochs=5, batch_size=32, lr=0.05, seed=0, threads=1)


def train_lenet300_on_digits(digits):
    """LeNet-300-100 trained on digits: the model the compression unit tests start from."""
    seed_everything(DIGITS_CFG.seed, DIGITS_CFG.threads)
    model = ModelSpec("lenet-300-100", digits.input_shape, digits.num_classes).build()
    x, y = digits.tensors("train")
    fit(model, TensorBatches(x, y, DIGITS_CFG.batch_size, seed=DIGITS_CFG.seed), DIGITS_CFG, progress=False)
    return model


@pytest.fixture(scope="session")
def trained(digits):
    """Built once for the whole run; tests that change a model deep-copy it first."""
    return train_lenet300_on_digits(digits)
