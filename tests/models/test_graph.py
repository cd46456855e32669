"""Architectures as data: a user model is captured, stored as JSON and rebuilt without its code."""

import copy
import json
import subprocess
import sys

import pytest
import torch

from lepton.errors import ConfigError, FormatError, UntrustedCodeError
from lepton.models.graph import GraphModel, build_graph, capture
from lepton.models.registry import ModelSpec
from tests.fixtures.user_nets import Branchy, TinyResNet

X = torch.randn(6, 1, 28, 28, generator=torch.Generator().manual_seed(0))


def roundtrip(graph):
    return json.loads(json.dumps(graph))


def trained_like(model):
    """Non-trivial BatchNorm statistics and scales, so a wrong wiring cannot hide behind identity layers."""
    torch.manual_seed(1)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(16, 1, 28, 28))
        for name, p in model.named_parameters():
            if name.endswith("scale"):
                p.fill_(0.5)
    return model.eval()


def test_rebuilt_model_matches_the_original_bit_for_bit():
    model = trained_like(TinyResNet())
    rebuilt = build_graph(roundtrip(capture(model))).eval()
    assert list(rebuilt.state_dict()) == list(model.state_dict())  # same keys, same order
    rebuilt.load_state_dict(model.state_dict())
    assert torch.equal(rebuilt(X), model(X))


def test_dropout_follows_the_training_flag_not_the_one_at_capture():
    model = TinyResNet().train()
    rebuilt = build_graph(capture(model))
    rebuilt.load_state_dict(model.state_dict())
    rebuilt.eval()
    assert torch.equal(rebuilt(X), model.eval()(X))  # no dropout in eval, though captured in train mode
    rebuilt.train()
    model.train()
    torch.manual_seed(3)
    a = rebuilt(X)
    torch.manual_seed(3)
    assert torch.equal(a, model(X))


def test_a_rebuilt_model_captures_to_the_same_graph_and_traces_again():
    graph = capture(TinyResNet())
    rebuilt = build_graph(graph).eval()
    assert capture(rebuilt) == graph
    traced = torch.fx.symbolic_trace(rebuilt)  # fx bakes the training flag in: trace in eval mode
    assert torch.equal(traced(X), rebuilt(X))


def test_spec_with_graph_roundtrips_through_json_and_loads_weights():
    model = trained_like(TinyResNet())
    spec = ModelSpec("tests.fixtures.user_nets:make_resnet").with_graph(model)
    assert spec.graph is not None and not spec.needs_code
    back = ModelSpec.from_dict(roundtrip(spec.to_dict()))
    assert back == spec
    loaded = back.load(model.state_dict())
    assert isinstance(loaded, GraphModel) and torch.equal(loaded.eval()(X), model(X))


def test_registry_models_carry_a_graph_only_when_their_shapes_changed():
    spec = ModelSpec("resnet20")
    assert spec.with_graph(spec.build()) is spec and "graph" not in spec.to_dict()
    changed = spec.build()
    changed.fc = torch.nn.Linear(64, 10, bias=False)  # no longer what the registry builds
    with_graph = spec.with_graph(changed)
    assert with_graph.graph is not None and with_graph.name == "resnet20"
    back = ModelSpec.from_dict(roundtrip(with_graph.to_dict()))
    loaded = back.load(changed.state_dict())
    assert isinstance(loaded, GraphModel) and torch.equal(loaded.eval()(X), changed.eval()(X))


def test_untraceable_model_keeps_its_name_and_then_needs_trust(capsys):
    spec = ModelSpec("tests.fixtures.user_nets:Branchy").with_graph(Branchy())
    assert spec.graph is None and spec.needs_code
    assert "trust-code" in capsys.readouterr().err
    state = Branchy().state_dict()
    with pytest.raises(UntrustedCodeError, match="import module 'tests.fixtures.user_nets'"):
        spec.load(state)
    assert isinstance(spec.load(state, trust_code=True), Branchy)
    assert "importing 'tests.fixtures.user_nets'" in capsys.readouterr().err


def test_unsupported_layers_and_operators_are_named():
    class Odd(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = torch.nn.GRU(4, 4)

        def forward(self, x):
            return self.rnn(x)[0]

    with pytest.raises(ConfigError, match="layer 'rnn'.*GRU"):
        capture(Odd())

    class Erf(torch.nn.Module):
        def forward(self, x):
            return torch.special.erf(x)

    with pytest.raises(ConfigError, match="not among the supported operators"):
        capture(Erf())


def good_graph():
    return roundtrip(capture(TinyResNet()))


def forged(edit):
    g = good_graph()
    edit(g)
    return g


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda g: g["modules"]["head"].update(type="Module"), "layer type 'Module' is not supported"),
        (lambda g: g["modules"]["head"].update(type="os.system"), "is not supported"),
        (lambda g: g["nodes"][6].update(target="os:system"), "not among the supported operators"),
        (lambda g: g["nodes"][6].update(target="builtins.eval"), "not among the supported operators"),
        (lambda g: g["nodes"][-4].update(op="method", target="__class__"), "tensor method '__class__'"),
        (lambda g: g["nodes"][-4].update(op="method", target="numpy"), "tensor method 'numpy'"),
        (lambda g: g["nodes"][1].update(op="import"), "op 'import'"),
        (lambda g: g["modules"].update({"__class__": g["modules"].pop("head")}), "not a dotted path|reserved"),
        (lambda g: g["modules"].update({"_modules": g["modules"].pop("head")}), "reserved name '_modules'"),
        (lambda g: g["modules"].update({"a..b": g["modules"].pop("head")}), "not a dotted path"),
        (lambda g: g["modules"]["head"]["args"].update(in_features=-1), "out of range"),
        (lambda g: g["modules"]["head"]["args"].update(in_features=10**12), "out of range"),
        (lambda g: g["modules"]["head"]["args"].update(factory="os:system"), "takes no argument 'factory'"),
        (lambda g: g["modules"]["stem.1"]["args"].update(eps=float("nan")), "out of range"),
        (lambda g: g["nodes"][1].update(args=[{"node": "head"}]), "not a constant, a node reference"),
        (lambda g: g["nodes"][1].update(args=[{"call": "os.system"}]), "not a constant, a node reference"),
        (lambda g: g["nodes"][1].update(args=[[[[[[[[[[["x"]]]]]]]]]]]), "nested deeper"),
        (lambda g: g["nodes"][1].update(name="x"), "not a new identifier"),
        (lambda g: g["nodes"].append(dict(g["nodes"][-1], name="out2")), "exactly one output"),
        (lambda g: g.update(version=2), "version 2 is not supported"),
        (lambda g: g.update(extra=1), "exactly version, modules, attrs and nodes"),
        (lambda g: g["attrs"]["blocks.0.scale"].update(dtype="object"), "kind .parameter or buffer"),
    ],
)
def test_forged_graphs_are_refused_with_one_line(edit, match):
    with pytest.raises(FormatError, match=match) as info:
        build_graph(forged(edit))
    assert "\n" not in str(info.value)


def test_graph_that_does_not_fit_its_input_is_refused_before_allocating():
    model = TinyResNet()
    spec = ModelSpec("user", (1, 28, 28), 10, graph=capture(model))
    bad = copy.deepcopy(spec.graph)
    bad["modules"]["head"]["args"]["in_features"] = 9  # the layer no longer fits the 8 pooled channels
    state = model.state_dict()
    state["head.weight"] = torch.zeros(10, 9)
    with pytest.raises(FormatError, match="cannot be built for input"):
        ModelSpec("user", (1, 28, 28), 10, graph=bad).load(state)


def test_weights_must_match_the_spec_before_the_model_is_built():
    spec = ModelSpec("user", (1, 28, 28), 10, graph=capture(TinyResNet()))
    state = TinyResNet(width=9).state_dict()
    with pytest.raises(FormatError, match=r"do not fit model 'user' \(.*file vs model"):
        spec.load(state)
    state = TinyResNet().state_dict()
    del state["head.bias"]
    with pytest.raises(FormatError, match="missing: head.bias"):
        spec.load(state)


@pytest.mark.parametrize(
    "spec, match",
    [
        ({"name": "lenet5", "input_shape": [1, 1400, 1400], "num_classes": 10, "kwargs": {}}, "over the limit"),
        ({"name": "lenet5", "input_shape": [1, 100, 100], "num_classes": 10, "kwargs": {}}, "do not fit"),
        ({"name": "lenet5", "input_shape": [1, 28, 28], "num_classes": 10, "kwargs": {"fc1": 10**9}}, "over the limit"),
        (
            {"name": "lenet5", "input_shape": [1, 28, 28], "num_classes": 10, "kwargs": {"fc1": 10**30}},
            "cannot be built",
        ),
    ],
)
def test_forged_registry_specs_cost_nothing(spec, match):
    state = ModelSpec("lenet5").build().state_dict()
    with pytest.raises(FormatError, match=match):
        ModelSpec.from_dict(spec).load(state)


@pytest.mark.parametrize(
    "edit, match",
    [
        ({"num_classes": -1}, "num_classes"),
        ({"num_classes": 1e12}, "num_classes"),
        ({"num_classes": True}, "num_classes"),
        ({"input_shape": [1, 28]}, "input_shape"),
        ({"input_shape": [0, 28, 28]}, "input_shape"),
        ({"input_shape": [1, 10**6, 28]}, "input_shape"),
        ({"name": 5}, "name"),
        ({"name": ""}, "name"),
        ({"kwargs": {"cmd": {"nested": "object"}}}, "kwargs"),
        ({"kwargs": {"x": float("inf")}}, "kwargs"),
        ({"kwargs": [1]}, "kwargs"),
        ({"factory": "os:system"}, "unknown keys factory"),
    ],
)
def test_spec_fields_are_checked(edit, match):
    with pytest.raises(ConfigError, match=match):
        ModelSpec.from_dict({**ModelSpec("lenet5").to_dict(), **edit})


def test_a_spec_naming_code_never_imports_it(tmp_path):
    marker = tmp_path / "marker"
    spec = ModelSpec.from_dict(
        {
            "name": "subprocess:getoutput",
            "input_shape": [1, 28, 28],
            "num_classes": 10,
            "kwargs": {"cmd": f"touch {marker}"},
        }
    )
    with pytest.raises(UntrustedCodeError, match="import module 'subprocess' and call 'getoutput'"):
        spec.load({})
    with pytest.raises(UntrustedCodeError):
        spec.build()
    assert not marker.exists()


@pytest.mark.slow
def test_user_model_reloads_in_a_process_that_never_imports_its_module(tmp_path):
    from lepton.compress.container import save_lep
    from lepton.train.checkpoint import save_checkpoint

    model = trained_like(TinyResNet())
    spec = ModelSpec("tests.fixtures.user_nets:make_resnet").with_graph(model)
    save_lep(tmp_path / "m.lep", spec, model.state_dict())
    save_checkpoint(tmp_path / "ckpt", model, spec)
    torch.save(model(X), tmp_path / "expected.pt")
    torch.save(X, tmp_path / "x.pt")
    code = f"""
import sys, torch
from lepton.artifacts import load_model_file
x, expected = torch.load({str(tmp_path / "x.pt")!r}), torch.load({str(tmp_path / "expected.pt")!r})
for name in ("m.lep", "ckpt.safetensors"):
    model = load_model_file({str(tmp_path)!r} + "/" + name).model
    assert torch.equal(model(x), expected), name
assert not any(m.startswith("tests") for m in sys.modules), "the user's module was imported"
print("ok")
"""
    r = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_rebuilt_model_exports_to_onnx(tmp_path):
    from lepton.edge.export import export_onnx, max_abs_diff, onnx_session

    model = trained_like(TinyResNet())
    rebuilt = build_graph(capture(model)).eval()
    rebuilt.load_state_dict(model.state_dict())
    export_onnx(rebuilt, tmp_path / "m.onnx", input_shape=(1, 28, 28))
    assert max_abs_diff(model, onnx_session(tmp_path / "m.onnx"), X) < 1e-4
