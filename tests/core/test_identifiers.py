"""Check characters of Chinese identifiers, against codes published as examples (and one character changed)."""

from __future__ import annotations

import pytest

from core.identifiers import is_credit_code, is_mobile_number, is_resident_id


@pytest.mark.parametrize(
    ("code", "valid"),
    [
        pytest.param("91350100M000100Y43", True, id="the-standards-example"),
        pytest.param("91440300708461136T", True, id="a-letter-check"),
        pytest.param("91350100M000100Y42", False, id="wrong-check"),
        pytest.param("91350100M000100Y4", False, id="seventeen"),
        pytest.param("91350100M000100I43", False, id="letter-outside-the-alphabet"),
        pytest.param("91350100m000100y43", False, id="lower-case"),
    ],
)
def test_credit_codes(code: str, valid: bool) -> None:
    assert is_credit_code(code) is valid


@pytest.mark.parametrize(
    ("number", "valid"),
    [
        pytest.param("11010519491231002X", True, id="gb11643-example-x"),
        pytest.param("440524188001010014", True, id="gb11643-example-digit"),
        pytest.param("110105194912310021", False, id="wrong-check"),
        pytest.param("11010519491231002x", False, id="lower-case-x"),
        pytest.param("1101051949123100", False, id="short"),
    ],
)
def test_resident_ids(number: str, valid: bool) -> None:
    assert is_resident_id(number) is valid


@pytest.mark.parametrize(
    ("number", "valid"),
    [("13812345678", True), ("19912345678", True), ("12812345678", False), ("1381234567", False), ("138123456789", False)],
)
def test_mobile_numbers(number: str, valid: bool) -> None:
    assert is_mobile_number(number) is valid
