"""The demo of ``make run``: organisations, users, real public datasets (``data/``, with provenance) and
grants (``seed``), and the he slice encrypted under the custodian's key (``he_slice``).

May import anything of ``sandbox`` but ``sandbox.api``; nothing imports the demo but the command line,
tests and benchmarks.
"""
