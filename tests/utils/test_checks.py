import math

import pytest

from lepton.errors import ConfigError
from lepton.utils.checks import check_float, check_int, check_name, interval


def test_one_message_template():
    with pytest.raises(
        ConfigError,
        match=r"^The 'n_components' parameter of PCA must be an int in \[1, inf\)\. "
        r"Got -3 instead\.$",
    ):
        check_int(-3, "n_components", 1, owner="PCA")
    with pytest.raises(
        ConfigError,
        match=r"^The 'alpha' parameter must be a float in \(0, 1\] or None\. Got 0 "
        r"instead\. A hint\.$",
    ):
        check_float(0, "alpha", 0, 1, lo_open=True, allow_none=True, hint="A hint.")


@pytest.mark.parametrize("value", [True, 1.0, "1", 0, 11, None])
def test_check_int_refuses(value):
    with pytest.raises(ValueError):
        check_int(value, "x", 1, 10, error=ValueError)


@pytest.mark.parametrize("value", [True, "0.5", math.nan, 1.0, -0.1])
def test_check_float_refuses(value):
    with pytest.raises(ConfigError):
        check_float(value, "x", 0, 1, hi_open=True)


def test_accepted_values_come_back_unchanged():
    assert check_int(3, "x", 1) == 3 and check_int(None, "x", 1, allow_none=True) is None
    assert check_float(1, "x", 0, 1) == 1 and type(check_float(1, "x", 0, 1)) is int
    assert interval(None, None) == "(-inf, inf)" and interval(0, 1, hi_open=True) == "[0, 1)"


def test_names():
    assert check_name("a.b_c-1", "model name") == "a.b_c-1"
    assert check_name("_labels", "field name", max_len=64, segment=False) == "_labels"
    for bad in ["", ".", "..", "-x", "_x", "a/b", "é", "a" * 129, 5]:
        with pytest.raises(ConfigError, match="is invalid: use 1-128 characters"):
            check_name(bad, "model name")
    with pytest.raises(ConfigError, match="1-64"):
        check_name("a" * 65, "field name", max_len=64, segment=False)
