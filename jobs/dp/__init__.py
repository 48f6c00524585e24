"""Differentially private tables shared by query and statistics jobs: the plan of the exact cells, then the noisy answer.

``jobs.dp.plan`` says which keys and aggregates a DP table has and builds the SQL of its exact cells
(rows capped per unit, measures clamped); ``jobs.dp.answer`` selects keys without a declared domain,
lays out the released cells and noises them with ``policies.dp``.
"""
