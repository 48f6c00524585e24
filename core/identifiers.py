"""Chinese identifier formats and their check characters: 统一社会信用代码, 居民身份证号码, 手机号码.

Pure functions on text, for the demo's synthetic codes and for suggesting a column's role from a
sample of its values. A code is "valid" when its shape and its check character are right; whether
it was ever issued is beyond what a check character can say.
"""

from __future__ import annotations

import re

# GB 32100-2015: the unified social credit code's alphabet (no I, O, Z, S, V) and its check weights (3^i mod 31).
CREDIT_CODE_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
CREDIT_CODE_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
_CREDIT_CODE = re.compile(rf"[{CREDIT_CODE_CHARS}]{{18}}")
# GB 11643-1999: the resident identity number's weights (2^(17-i) mod 11) and check characters.
RESIDENT_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
RESIDENT_ID_CHECKS = "10X98765432"
_RESIDENT_ID = re.compile(r"\d{17}[\dX]")
# A mainland mobile number: 11 digits, 1 then 3-9 (the operators' number segments).
_MOBILE = re.compile(r"1[3-9]\d{9}")


def credit_code_check(first17: str) -> str:
    """The check character of a unified social credit code's first 17 characters."""
    total = sum(CREDIT_CODE_CHARS.index(c) * w for c, w in zip(first17, CREDIT_CODE_WEIGHTS, strict=True))
    return CREDIT_CODE_CHARS[(31 - total % 31) % 31]


def is_credit_code(text: str) -> bool:
    """18 characters of the code's alphabet whose last is the check character of the others."""
    return _CREDIT_CODE.fullmatch(text) is not None and credit_code_check(text[:17]) == text[17]


def resident_id_check(first17: str) -> str:
    total = sum(int(c) * w for c, w in zip(first17, RESIDENT_ID_WEIGHTS, strict=True))
    return RESIDENT_ID_CHECKS[total % 11]


def is_resident_id(text: str) -> bool:
    """18 characters, 17 digits and a check digit (or X) that matches them."""
    return _RESIDENT_ID.fullmatch(text) is not None and resident_id_check(text[:17]) == text[17]


def is_mobile_number(text: str) -> bool:
    return _MOBILE.fullmatch(text) is not None
