"""The strict JSON parser: equal to json.loads on valid documents, a one-line FormatError on everything else."""

import json
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lepton.errors import FormatError
from lepton.utils.strict_json import expect_dict, expect_list, loads, nesting_depth

_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
_VALUES = st.recursive(
    _SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4), max_leaves=30
)


@given(_VALUES, st.sampled_from([None, 1]), st.booleans())
@settings(max_examples=300, deadline=None)
def test_valid_documents_parse_as_json_loads(value, indent, ascii_only):
    text = json.dumps(value, indent=indent, ensure_ascii=ascii_only)
    assert loads(text, "doc") == json.loads(text)
    assert loads(text.encode("utf-8"), "doc") == json.loads(text)


@given(st.binary(max_size=200))
@settings(max_examples=300, deadline=None)
def test_arbitrary_bytes_parse_or_raise_format_error(data):
    try:
        value = loads(data, "doc")
    except FormatError as e:
        assert str(e).startswith("doc ") and "\n" not in str(e)
    else:
        assert value == json.loads(data.decode("utf-8"))


@given(st.text(alphabet='[]{}":,1\\ ', max_size=200))
@settings(max_examples=300, deadline=None)
def test_bracket_soup_never_crashes(text):
    try:
        loads(text, "doc", max_depth=3)
    except FormatError:
        pass


@pytest.mark.parametrize(
    "text, needle",
    [
        ('{"a": 1, "b": 2, "a": 3}', "duplicate JSON key 'a'"),
        ('[{"x": {"k": 1, "k": 1}}]', "duplicate JSON key 'k'"),
        ("[NaN]", "NaN"),
        ('{"w": Infinity}', "Infinity"),
        ("[-Infinity]", "-Infinity"),
        ("[1e999]", "1e999"),
        ('{"w": -1E400}', "-1E400"),
        ("[" + "9" * 5000 + "]", f"more than {sys.get_int_max_str_digits()} digits"),
        ('{"a": 1,}', "not valid JSON"),
        ("", "not valid JSON"),
        ('"unterminated', "not valid JSON"),
        ("\ufeff{}", "not valid JSON"),
    ],
)
def test_refuses_what_json_loads_accepts_or_crashes_on(text, needle):
    with pytest.raises(FormatError, match="^the test file ") as info:
        loads(text, "the test file")
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_refuses_invalid_utf8():
    with pytest.raises(FormatError, match="the index is not valid UTF-8"):
        loads(b'{"a": "\xff"}', "the index")


@pytest.mark.parametrize("depth", [65, 1000, 100_000])
def test_deep_nesting_is_refused_without_recursion(depth):
    for text in ("[" * depth + "]" * depth, '{"a":' * depth + "1" + "}" * depth, "[" * depth):
        with pytest.raises(FormatError, match=f"{depth} levels deep, over the limit of 64"):
            loads(text, "doc")


def test_depth_limit_is_inclusive_and_ignores_brackets_in_strings():
    assert loads("[" * 64 + "]" * 64, "doc") == json.loads("[" * 64 + "]" * 64)
    assert loads("[[1]]", "doc", max_depth=2) == [[1]]
    with pytest.raises(FormatError, match="3 levels deep"):
        loads("[[[1]]]", "doc", max_depth=2)
    quoted = json.dumps(["[" * 1000 + '\\"{' * 100])
    assert loads(quoted, "doc", max_depth=1) == json.loads(quoted)
    assert (nesting_depth(quoted), nesting_depth("3"), nesting_depth('{"a": [[], {}]}')) == (1, 0, 3)


def test_expect_helpers_name_the_value_and_the_type():
    assert expect_dict({"a": 1}, "x") == {"a": 1}
    assert expect_list([1], "x") == [1]
    with pytest.raises(FormatError, match=r"^the key 'model' of s.json must be a JSON object, got an integer 5;"):
        expect_dict(5, "the key 'model' of s.json")
    with pytest.raises(FormatError, match="must be a JSON array, got an object"):
        expect_list({}, "x")
