"""Wording of messages: the indefinite article before the project's own words."""

from __future__ import annotations

import pytest

from core.text import a
from core.values import ColumnRole, Role


@pytest.mark.parametrize(
    ("word", "phrase"),
    [
        ("identifier", "an identifier"),
        ("quasi_identifier", "a quasi_identifier"),
        ("attribute", "an attribute"),
        ("sensitive", "a sensitive"),
        ("analyst", "an analyst"),
        ("auditor", "an auditor"),
        ("admin", "an admin"),
        ("steward", "a steward"),
        ("ols", "an ols"),
        ("logit", "a logit"),
    ],
)
def test_the_article_fits_the_word(word: str, phrase: str) -> None:
    assert a(word) == phrase


def test_every_role_and_column_role_reads_well() -> None:
    phrases = [a(r.value) for r in [*Role, *ColumnRole]]
    assert not [p for p in phrases if p.startswith("a ") and p[2] in "aeiou"]
