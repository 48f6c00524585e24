"""Attacks as a corpus: each module is one class of disclosure attack, each case a parametrized id.

Every case goes through the API with a worker under ``release_mode: auto`` and asserts that the
protected value (PUMS's one race-5 person's income, 56000; a teacher's scores) cannot be computed
from what was released: a refused query is a 422 naming the rule, and nothing ran.
"""
