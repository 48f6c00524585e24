"""The domain's services: identity and tokens, datasets, grants, consents, the privacy budget, jobs
(submission and the policy pre-check), reviews, and the audit ledger.

Each function works inside a database session it is handed, checks who may do what, and writes its
change and its ledger event in the same transaction. May import: ``core``, ``crypto``, ``policies``,
``jobs``, the shell's infrastructure (``sandbox.db``, ``models``, ``keys``, ``storage``). Never Flask,
``sandbox.api``, ``sandbox.runtime`` or ``sandbox.client``.
"""
