"""The split planner over DAGs: every listed cut is checked independently of lepton.edge.cuts.

For each cut the test walks its own fx trace of the model (tensor outputs found with torch's ShapeProp) and
counts the tensors that the edge side computes and the cloud side reads, which must be exactly one; head then
tail must equal the model bit for bit; and no residual block may be split.
"""

import pytest
import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from lepton.compress.container import save_lep
from lepton.edge.cuts import find_cuts, head_tail, layer_chain, trace
from lepton.errors import ConfigError
from lepton.models import ModelSpec
from lepton.models.graph import GraphModel
from lepton.models.registry import build_model
from lepton.train.checkpoint import save_checkpoint
from tests.fixtures.user_nets import Branchy, TinyResNet


def _segment_nodes(segment: nn.Module) -> set[str]:
    return {n.name for n in segment.graph.nodes if n.op not in ("placeholder", "output", "get_attr")}


def _module_targets(segments: list[nn.Module]) -> set[str]:
    return {str(n.target) for s in segments for n in s.graph.nodes if n.op == "call_module"}


def check_every_cut(model: nn.Module, example: torch.Tensor) -> list[tuple[str, nn.Module]]:
    """The chain of ``model``, after checking each cut against the test's own walk of the fx graph."""
    model.eval()
    chain = layer_chain(model, example[:1])
    ref_gm = fx.symbolic_trace(model)
    ShapeProp(ref_gm).propagate(example[:1])
    tensors = {
        n.name for n in ref_gm.graph.nodes if isinstance(n.meta.get("tensor_meta"), fx.passes.shape_prop.TensorMetadata)
    }
    compute = {n.name for n in ref_gm.graph.nodes if n.op not in ("placeholder", "output", "get_attr")}
    users = {n.name: {u.name if u.op != "output" else "<output>" for u in n.users} for n in ref_gm.graph.nodes}
    (inp,) = (n.name for n in ref_gm.graph.nodes if n.op == "placeholder")
    segments = [m for _, m in chain]
    assert set().union(*map(_segment_nodes, segments)) == compute  # every node runs somewhere
    with torch.no_grad():
        ref = model(example)
        for k in range(len(chain) + 1):
            edge = set().union(set(), *map(_segment_nodes, segments[:k]))
            cloud = set().union(set(), *map(_segment_nodes, segments[k:]))
            assert not edge & cloud & tensors, "a tensor is computed on both sides"
            crossing = [v for v in edge | {inp} if v in tensors and users[v] - edge]
            assert len(crossing) == 1, (k, crossing)
            head, tail = head_tail(chain, k)
            assert torch.equal(tail(head(example)), ref), k
    return chain


def _blocks_whole(chain, prefixes):
    """No cut separates the layers of a block (modules under one of ``prefixes``)."""
    segments = [m for _, m in chain]
    for k in range(len(chain) + 1):
        edge, cloud = _module_targets(segments[:k]), _module_targets(segments[k:])
        for p in prefixes:
            assert not ({t for t in edge if t.startswith(p)} and {t for t in cloud if t.startswith(p)}), (k, p)


def test_resnet20_cuts_only_between_blocks():
    model = build_model("resnet20", (1, 28, 28), 10)
    chain = check_every_cut(model, torch.randn(3, 1, 28, 28))
    # stem conv, bn, relu; each of the 9 blocks, then its final ReLU (after the add only one tensor is left);
    # pooling, flatten, fc
    assert len(chain) == 3 + 9 * 2 + 3
    assert [n for n, _ in chain][3:7] == ["layers.0", "relu_2", "layers.1", "relu_4"]
    _blocks_whole(chain, [f"layers.{i}." for i in range(9)])


def test_mobilenet_keeps_residual_blocks_whole_and_cuts_inside_the_others():
    model = build_model("mobilenetv2-small", (1, 28, 28), 10)
    chain = check_every_cut(model, torch.randn(2, 1, 28, 28))
    residual = [f"blocks.{i}." for i, b in enumerate(model.blocks) if b.use_residual]
    assert len(residual) == 4
    # stem 3, a residual block is one segment, the other 3 blocks 8 layers each, head 3, pool, flatten, fc
    assert len(chain) == 3 + 4 + 3 * 8 + 3 + 3
    _blocks_whole(chain, residual)


def test_mixer_cuts_between_its_two_residual_halves():
    model = build_model("mlp-mixer-small", (1, 28, 28), 10)
    chain = check_every_cut(model, torch.randn(2, 1, 28, 28))
    assert len(chain) == 3 + 4 * 2 + 3  # embed, flatten, transpose; token and channel halves; norm, mean, fc


@pytest.mark.parametrize("name", ["lenet5", "lenet5-classic", "lenet-300-100"])
def test_a_chain_is_cut_after_every_layer(name):
    model = build_model(name, (1, 28, 28), 10)
    chain = check_every_cut(model, torch.randn(2, 1, 28, 28))
    nodes = [n for n in fx.symbolic_trace(model).graph.nodes if n.op not in ("placeholder", "output")]
    assert [n for n, _ in chain] == [n.name for n in nodes]


def _user_model() -> TinyResNet:
    torch.manual_seed(0)
    model = TinyResNet().eval()
    for m in model.modules():  # non-trivial BatchNorm statistics and residual scales
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2)
        if hasattr(m, "scale"):
            m.scale.data.normal_()
    return model


TINY_CUTS = ["stem_0", "stem_1", "stem_2", "blocks.0", "relu_1", "blocks.1", "relu_3", "view", "dropout", "head"]


def test_a_user_model_with_batchnorm_residuals_and_depthwise_convolutions():
    model = _user_model()
    chain = check_every_cut(model, torch.randn(3, 1, 28, 28))
    # after the pooling, view's size is read from the tensor before it: two values of different tensors cross
    assert [n for n, _ in chain] == TINY_CUTS
    _blocks_whole(chain, ["blocks.0.", "blocks.1."])


def test_the_same_cuts_from_a_checkpoint_and_a_lep_without_user_code(tmp_path):
    from lepton.artifacts import load_model_file

    model = _user_model()
    spec = ModelSpec("tests.fixtures.user_nets:make_resnet").with_graph(model)
    x = torch.randn(3, 1, 28, 28)
    save_lep(tmp_path / "m.lep", spec, model.state_dict())
    for path in (save_checkpoint(tmp_path / "m", model, spec), tmp_path / "m.lep"):
        loaded = load_model_file(path).model  # no trust_code: rebuilt from the stored graph
        assert isinstance(loaded, GraphModel)
        chain = check_every_cut(loaded, x)
        assert [n for n, _ in chain] == TINY_CUTS
        with torch.no_grad():
            for k in range(len(chain) + 1):
                head, tail = head_tail(chain, k)
                torch.testing.assert_close(tail(head(x)), model(x), rtol=0, atol=0)


class Sizes(nn.Module):
    """Sizes read from a parameter (recomputable anywhere) and from an intermediate tensor (cuts refused)."""

    def __init__(self) -> None:
        super().__init__()
        self.pos = nn.Parameter(torch.randn(4))
        self.fc1, self.fc2 = nn.Linear(4, 8), nn.Linear(8, 4)

    def forward(self, x):
        n = self.pos.size(0)
        h = x.flatten(1) + self.pos
        b = h.size(0)
        h = torch.relu(self.fc1(h))
        h = self.fc2(h).view(b, n)  # b crosses every cut between the add and here
        return h.reshape(-1, n) * 2


def test_sizes_are_recomputed_from_the_crossing_tensor_or_the_cut_is_refused():
    model = Sizes()
    chain = check_every_cut(model, torch.randn(5, 2, 2))
    assert [n for n, _ in chain] == ["flatten", "add", "view", "reshape", "mul"]
    cuts = find_cuts(trace(model), torch.randn(1, 2, 2))
    # n (from the parameter) is read up to the reshape; the cloud recomputes it from nothing but the weights
    assert [[r.name for r in c.recompute] for c in cuts] == [[], ["size"], ["size"], ["size"], [], []]


def test_models_that_cannot_be_cut_are_config_errors():
    class TwoInputs(nn.Module):
        def forward(self, x, y):
            return x + y

    class Pair(nn.Module):
        def forward(self, x):
            return x, x

    class Constant(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(2))

        def forward(self, x):
            return self.w * 2

    with pytest.raises(ConfigError, match="does not read its input"):
        layer_chain(Constant(), torch.zeros(1, 2))
    with pytest.raises(ConfigError, match="cannot trace Branchy"):
        layer_chain(Branchy(), torch.zeros(1, 1, 28, 28))
    with pytest.raises(ConfigError, match="2 inputs"):
        layer_chain(TwoInputs(), torch.zeros(1, 1))
    with pytest.raises(ConfigError, match="returns one tensor"):
        layer_chain(Pair(), torch.zeros(1, 1))


@pytest.mark.slow  # trains ResNet-20 on digits (a few seconds) and starts the cloud process
@pytest.mark.timeout(300)
def test_resnet20_split_across_two_processes_agrees_with_the_whole_model(digits, tmp_path):
    from lepton.api import train
    from lepton.edge.split import NetworkProfile, plan_split, profile_layers
    from lepton.edge.splitrun import run_split

    spec = ModelSpec("resnet20", digits.input_shape, digits.num_classes)
    trained = train(spec.build(), digits, epochs=4, batch_size=64, threads=1)
    assert trained.test.accuracy > 0.9
    path = save_checkpoint(tmp_path / "resnet20", trained.model.eval(), spec)
    images = digits.tensors("test")[0].numpy()
    profile = profile_layers(trained.model, images[:4], warmup=1, iterations=3)
    # a link fast enough and an edge slow enough that the plan cuts inside the network
    plan = plan_split(profile, NetworkProfile(bandwidth_bps="1Gbit", rtt_ms=0.1, edge_slowdown=1.5, encoding="int8"))
    mid = next(r.cut for r in plan.rows if r.after == "layers.4")
    for cut in sorted({plan.best_cut, mid}):
        run = run_split(path, cut, images, encoding="int8", batch=120, warmup=0)
        assert run.after == plan.rows[cut].after
        assert run.payload_bytes > 0 or cut == len(plan.rows) - 1  # edge-only sends nothing
        assert run.agreement >= 0.999, (cut, run.agreement)  # all 360 digits test images


@pytest.mark.slow  # starts the cloud process
@pytest.mark.timeout(120)
def test_a_user_model_splits_across_two_processes_without_its_code(tmp_path):
    from lepton.edge.splitrun import run_split

    model = _user_model()
    spec = ModelSpec("tests.fixtures.user_nets:make_resnet").with_graph(model)
    save_lep(tmp_path / "m.lep", spec, model.state_dict())
    images = torch.randn(20, 1, 28, 28).numpy()
    run = run_split(tmp_path / "m.lep", TINY_CUTS.index("relu_1") + 1, images, encoding="fp32", batch=7, warmup=1)
    assert run.after == "relu_1" and run.requests == 3 and run.agreement == 1.0
    assert run.payload_bytes == 7 * 8 * 14 * 14 * 4  # the median request carries 7 images of 8x14x14 floats
