import pytest
import torch

from lepton.errors import ConfigError
from lepton.models import MODELS, ModelSpec, build_model, count_macs, count_params


@pytest.mark.parametrize(
    "name, params, macs",
    [
        ("lenet5", 431_080, 2_293_000),
        ("lenet5-classic", 61_706, 416_520),
        ("lenet-300-100", 266_610, 266_200),
    ],
)
def test_exact_parameter_and_mac_counts(name, params, macs):
    m = build_model(name)
    assert count_params(m) == params
    assert count_macs(m, (1, 28, 28)) == macs
    assert m(torch.zeros(3, 1, 28, 28)).shape == (3, 10)


def test_macs_by_hand_for_lenet5():
    # conv1 24*24*20*25, conv2 8*8*50*20*25, fc1 800*500, fc2 500*10
    assert count_macs(build_model("lenet5"), (1, 28, 28)) == 24 * 24 * 20 * 25 + 8 * 8 * 50 * 20 * 25 + 800 * 500 + 5000


def test_shapes_follow_the_dataset():
    m = build_model("lenet-300-100", (1, 8, 8), 4)
    assert m(torch.zeros(2, 1, 8, 8)).shape == (2, 4)
    assert count_params(m) == 64 * 300 + 300 + 300 * 100 + 100 + 100 * 4 + 4


def test_lenet5_refuses_tiny_images():
    with pytest.raises(ConfigError, match="at least 12x12"):
        build_model("lenet5", (1, 8, 8))


def test_user_factory_gets_shape_arguments():
    spec = ModelSpec("tests.fixtures.custom_model:make", (1, 8, 8), 3, {"hidden": 5})
    m = spec.build(trust_code=True)
    assert m(torch.zeros(1, 1, 8, 8)).shape == (1, 3)
    assert count_params(m) == 64 * 5 + 5 + 5 * 3 + 3
    assert ModelSpec.from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize(
    "name, match",
    [
        ("resnet9000", "unknown model 'resnet9000'"),
        ("no_such_module_xyz:make", "cannot import"),
        ("tests.fixtures.custom_model:missing", "cannot import"),
        ("tests.fixtures.custom_model:not_a_factory", "not callable"),
    ],
)
def test_bad_model_names(name, match):
    with pytest.raises(ConfigError, match=match):
        build_model(name, trust_code=True)


def test_bad_factory_arguments():
    with pytest.raises(ConfigError, match="lenet5"):
        build_model("lenet5", width=3)


def test_registry_descriptions():
    """Each description states the parameter count the model really has on 28x28 MNIST."""
    assert set(MODELS) == {
        "lenet5",
        "lenet5-classic",
        "lenet-300-100",
        "resnet20",
        "mobilenetv2-small",
        "mlp-mixer-small",
    }
    for name, (_, description) in MODELS.items():
        assert f"{count_params(build_model(name)):,} params" in description, (name, description)


def test_trained_dataset_reads_free_metadata_or_names_the_bad_entry():
    from lepton.artifacts import trained_dataset
    from lepton.errors import FormatError

    assert trained_dataset({"dataset": {"name": "digits", "train": 1437}}, "m.lep") == "digits"
    assert trained_dataset({"dataset_name": "fashion-mnist"}, "m.lep") == "fashion-mnist"
    assert trained_dataset({}, "m.lep") is None and trained_dataset({"dataset": {}}, "m.lep") is None
    assert trained_dataset({"dataset": None}, "m.lep") is None
    for meta, shown in (
        ({"dataset": 5}, "is 5"),
        ({"dataset": "digits"}, "is 'digits'"),
        ({"dataset": {"name": ["x"]}}, "is ['x']"),
        ({"dataset_name": 3}, "'dataset_name' is 3"),
    ):
        with pytest.raises(FormatError, match="^m.lep: the metadata's .*pass --data NAME") as info:
            trained_dataset(meta, "m.lep")
        assert f"{shown}, expected" in str(info.value)
