"""beast.poly.wire_values: every kind of value round-trips exactly; anything else is refused."""

from __future__ import annotations

import numpy as np
import pytest

from beast.poly.wire_values import (decode_info, decode_values, encode_info, encode_value,
                                    encode_values)

VALUES = {
    "none": None, "text": "rgb_array ü", "empty": "", "flag": True, "count": -3, "big": 2**62,
    "ratio": 0.25, "f32": np.float32(1.5), "i8": np.int8(-7), "mask": np.array([True, False]),
    "frame": np.arange(24, dtype=np.uint8).reshape(2, 4, 3), "scalar_array": np.array(2.5),
}


def test_every_kind_round_trips_with_its_type_and_dtype() -> None:
    arrays = encode_values("option/", VALUES, "option")
    assert all(name.startswith("option/") for name in arrays)
    got = decode_values(arrays, "option/")
    assert set(got) == set(VALUES)
    for key, want in VALUES.items():
        assert type(got[key]) is type(want), key
        if isinstance(want, np.ndarray):
            np.testing.assert_array_equal(got[key], want)
            assert got[key].dtype == want.dtype and got[key].shape == want.shape
        else:
            assert got[key] == want, key


@pytest.mark.parametrize("value, named", [
    ({"a": 1}, "dict"), ([1, 2], "list"), (object(), "object"), (np.zeros(2, np.uint32), "uint32"),
    (np.array(["a"]), "<U1"), (2**70, "int"), (1 + 2j, "complex"),
])
def test_values_the_wire_cannot_carry_raise_type_error_naming_them(value, named) -> None:
    with pytest.raises(TypeError, match=f"option 'x'.*{named}|{named}.*option 'x'"):
        encode_values("option/", {"x": value}, "option")


def test_a_name_too_long_for_the_wire_is_refused() -> None:
    with pytest.raises(ValueError, match="too long"):
        encode_value("option/", "k" * 250, 1, "option")


def test_infos_keep_numeric_entries_nested_and_drop_the_rest() -> None:
    info = {"prob": np.array([1.0, 0.5]), "_prob": np.array([True, True]),
            "episode": {"r": np.array([3.0, 0.0]), "_r": np.array([True, False])},
            "names": np.array(["a", "b"], dtype=object)}
    arrays = encode_info(info, 2)
    assert sorted(arrays) == ["info/_prob", "info/episode/_r", "info/episode/r", "info/prob"]
    got = decode_info(arrays)
    assert set(got) == {"prob", "_prob", "episode"} and set(got["episode"]) == {"r", "_r"}
    np.testing.assert_array_equal(got["episode"]["r"], info["episode"]["r"])
