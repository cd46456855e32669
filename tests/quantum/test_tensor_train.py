"""TTLinear and TT-SVD against dense references (nn.Linear, x @ W.T + b, hand-counted parameters)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lepton.errors import ConfigError
from lepton.models.tensor_train import (
    TTLinear,
    apply_tt_layout,
    check_tt_layout,
    factorize,
    tt_for_ratio,
    tt_layout,
    tt_svd,
)


def test_factorize_products_and_balance() -> None:
    assert factorize(784, 4) == (4, 4, 7, 7)
    assert factorize(300, 4) == (3, 4, 5, 5)
    assert factorize(13, 3) == (1, 1, 13)
    for n, d in [(1, 2), (96, 3), (1000, 3), (97, 1)]:
        f = factorize(n, d)
        assert len(f) == d and torch.tensor(f).prod().item() == n
    with pytest.raises(ConfigError):
        factorize(0, 2)


@pytest.mark.parametrize("in_modes,out_modes", [((4, 6), (3, 5)), ((2, 3, 4), (5, 1, 2)), ((12,), (7,))])
def test_full_rank_tt_svd_reproduces_linear(in_modes: tuple[int, ...], out_modes: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    lin = nn.Linear(int(torch.tensor(in_modes).prod()), int(torch.tensor(out_modes).prod()))
    tt = tt_svd(lin, in_modes, out_modes)
    x = torch.randn(9, lin.in_features)
    torch.testing.assert_close(tt.full_weight(), lin.weight.detach(), atol=1e-5, rtol=0)
    torch.testing.assert_close(tt(x), lin(x), atol=1e-5, rtol=0)


def test_truncation_is_the_best_rank_r_for_two_cores() -> None:
    # With two cores the TT-SVD is one truncated SVD of the (i1 j1) x (i2 j2) unfolding: Eckart–Young error.
    torch.manual_seed(1)
    w = torch.randn(6, 8, dtype=torch.float64)
    tt = tt_svd(w, (2, 4), (2, 3), max_rank=2)
    unf = w.reshape(2, 3, 2, 4).permute(2, 0, 3, 1).reshape(4, 12)
    s = torch.linalg.svdvals(unf)
    err = torch.linalg.norm(tt.full_weight().detach() - w)
    assert tt.ranks == (1, 2, 1)
    assert err.item() == pytest.approx(s[2:].norm().item(), rel=1e-9)


def test_forward_matches_full_weight_and_gradients_flow() -> None:
    torch.manual_seed(2)
    tt = TTLinear((2, 3, 4), (3, 2, 2), ranks=[3, 2])
    with torch.no_grad():
        tt.bias.normal_()
    x = torch.randn(5, 7, 24)
    ref = x @ tt.full_weight().T + tt.bias
    torch.testing.assert_close(tt(x), ref, atol=1e-5, rtol=1e-5)
    tt(x).square().sum().backward()
    for p in tt.parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0
    # The gradient of the contraction equals the gradient through the materialised weight.
    g_fast = [p.grad.clone() for p in tt.parameters()]
    tt.zero_grad()
    (x @ tt.full_weight().T + tt.bias).square().sum().backward()
    for a, p in zip(g_fast, tt.parameters()):
        torch.testing.assert_close(a, p.grad, atol=1e-4, rtol=1e-4)


def test_parameter_count_and_ratio_by_hand() -> None:
    tt = TTLinear((4, 7, 4, 7), (3, 4, 5, 5), ranks=10)
    cores = 1 * 4 * 3 * 10 + 10 * 7 * 4 * 10 + 10 * 4 * 5 * 10 + 10 * 7 * 5 * 1  # 120 + 2800 + 2000 + 350
    assert tt.num_params() == cores + 300 == 5570
    assert tt.dense_params() == 784 * 300 + 300
    assert tt.compression_ratio() == pytest.approx(235500 / 5570)
    assert TTLinear((4, 7), (3, 5), ranks=2, bias=False).num_params() == 4 * 3 * 2 + 2 * 7 * 5


def test_bad_modes_and_ranks_raise_config_error() -> None:
    with pytest.raises(ConfigError, match="do not match"):
        tt_svd(nn.Linear(784, 300), (4, 7, 4, 8), (3, 4, 5, 5), max_rank=4)
    with pytest.raises(ConfigError, match="same length"):
        TTLinear((4, 7), (3, 4, 5), ranks=2)
    with pytest.raises(ConfigError, match="ranks"):
        TTLinear((4, 7, 2), (3, 4, 5), ranks=[2])
    with pytest.raises(ConfigError, match="max_rank"):
        tt_svd(nn.Linear(6, 6), (2, 3), (2, 3), max_rank=0)
    with pytest.raises(ConfigError, match="features"):
        TTLinear((2, 3), (2, 3), ranks=2)(torch.randn(2, 5))


def test_tt_for_ratio_takes_the_largest_rank_that_meets_the_ratio() -> None:
    torch.manual_seed(0)
    layer = nn.Linear(784, 300)
    tt = tt_for_ratio(layer, 20)
    assert tt.in_modes == (4, 4, 7, 7) and tt.out_modes == (3, 4, 5, 5) and tt.compression_ratio() >= 20
    bigger = tt_svd(layer, tt.in_modes, tt.out_modes, max_rank=max(tt.ranks) + 1)
    assert bigger.compression_ratio() < 20  # one more rank would miss the ratio
    assert torch.equal(tt.bias, layer.bias)
    with pytest.raises(ConfigError, match="no TT rank compresses"):
        tt_for_ratio(nn.Linear(8, 8), 1000)


def test_layout_round_trips_and_rebuilds_the_same_function() -> None:
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(12, 20), nn.ReLU(), nn.Linear(20, 3))
    model[0] = tt_for_ratio(model[0], 1.5, cores=2)
    layout = tt_layout(model)
    assert layout == {"0": {"in_modes": [3, 4], "out_modes": [4, 5], "ranks": [model[0].ranks[1]]}}
    fresh = apply_tt_layout(nn.Sequential(nn.Linear(12, 20), nn.ReLU(), nn.Linear(20, 3)), layout)
    fresh.load_state_dict(model.state_dict())
    x = torch.randn(5, 12)
    assert torch.equal(fresh(x), model(x))


@pytest.mark.parametrize(
    "layout, match",
    [
        ([], "must be a mapping"),
        ({"fc1": {"in_modes": [4], "out_modes": [3]}}, "exactly in_modes, out_modes"),
        ({"fc1": {"in_modes": [4, 4], "out_modes": [3], "ranks": []}}, "same length"),
        ({"fc1": {"in_modes": [4, 4], "out_modes": [3, 3], "ranks": [1.5]}}, "same length"),
        ({"fc1": {"in_modes": [4, 0], "out_modes": [3, 3], "ranks": [2]}}, r"modes must be in \[1"),
        ({"fc1": {"in_modes": [4, 4], "out_modes": [3, 3], "ranks": [10**9]}}, r"ranks in \[1"),
        ({"fc1": {"in_modes": [1 << 20] * 4, "out_modes": [1 << 20] * 4, "ranks": [4096] * 3}}, "more than"),
    ],
)
def test_forged_layouts_are_refused_before_allocating(layout: object, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        check_tt_layout(layout)


def test_layout_must_fit_the_model() -> None:
    model = nn.Sequential(nn.Linear(12, 20))
    with pytest.raises(ConfigError, match="has no such layer"):
        apply_tt_layout(model, {"fc9": {"in_modes": [3, 4], "out_modes": [4, 5], "ranks": [2]}})
    with pytest.raises(ConfigError, match="give a 12x21 layer"):
        apply_tt_layout(model, {"0": {"in_modes": [3, 4], "out_modes": [3, 7], "ranks": [2]}})
