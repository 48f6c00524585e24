"""Wording shared by error messages."""

from __future__ import annotations


def a(word: str) -> str:
    """``word`` with its indefinite article: "an identifier", "a steward", "an ols" (by its first letter).

    The words are this project's own names (roles, uses, ops), none starting with a silent h or a
    vowel read as a consonant ("a unit"), so the first letter decides.
    """
    return f"{'an' if word[:1].lower() in 'aeiou' else 'a'} {word}"
