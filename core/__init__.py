"""Shared vocabulary of the sandbox: the exception root and the typed values every package uses.

Nothing here imports another package of the project; everything else may import from here.
"""
