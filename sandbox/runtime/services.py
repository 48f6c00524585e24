"""What a running job needs of the instance: the database-backed ``Services`` of ``sandbox.runtime.executor``.

Bound to one job: the domain's registered Paillier keys, the key custodian's decryption with its
``he.decrypted`` ledger record, and a score job's quotas and consents. (Earlier releases are not
looked up while a job runs: the queue audits its populations when it finishes, under the version's
lock, ``sandbox.runtime.audited``.)
"""

from __future__ import annotations

from crypto.paillier import PublicKey
from jobs.he import ScorePlan
from jobs.he.run_aggregate import Cell
from sandbox import keys
from sandbox.instance import Instance
from sandbox.runtime import he_score
from sandbox.runtime.custodian import CustodianError
from sandbox.runtime.definition import JobDefinition
from sandbox.service import he_keys


class DatabaseServices:
    """The worker's services for the run of ``definition`` under grant ``grant_id``; ``actor`` signs ledger events."""

    def __init__(self, instance: Instance, definition: JobDefinition, grant_id: str, actor: str) -> None:
        self.instance, self.definition, self.grant_id, self.actor = instance, definition, grant_id, actor

    def public_key(self, fingerprint: str) -> PublicKey | None:
        with self.instance.db.sessions() as session:
            return he_keys.public_keys(session, [fingerprint]).get(fingerprint)

    def decrypt(self, public: PublicKey, ciphertexts: dict[Cell, int]) -> tuple[dict[Cell, int], str]:
        """Through the custodian, then ``he.decrypted`` on the ledger: which job, key and decision, how many cells; never a value.

        Fails cleanly (``CustodianError``) when no custodian is configured, or it is unreachable or refuses.
        """
        custodian = self.instance.custodian
        if custodian is None:
            raise CustodianError("no key custodian is configured for this worker (SANDBOX_CUSTODIAN_URL)")
        with self.instance.db.sessions() as session:
            signing_key = keys.signing_key(session, self.instance.keys)[0]
        job_id = self.definition.job_id
        done = custodian.decrypt(job_id, public, ciphertexts, signing_key)
        details = {"job_id": job_id, "key": public.fingerprint, "cells": len(done.mantissas), "decision_sha256": done.decision_sha256}
        with self.instance.db.writing() as session:
            self.instance.ledger.append(
                session, actor=self.actor, action="he.decrypted", object_type="job", object_id=job_id, details=details
            )
        return done.mantissas, done.decision_sha256

    def eligibility(self, plan: ScorePlan) -> he_score.Eligibility:
        with self.instance.db.sessions() as session:
            return he_score.eligibility(session, plan, self.grant_id, self.definition.job_id)
