"""What a running job needs of the instance: the database-backed ``Services`` of ``sandbox.runtime.executor``.

Bound to one job: the differencing check's lookups of earlier released cells (same dataset version,
every organisation, another query), the domain's registered Paillier keys, the key custodian's
decryption with its ``he.decrypted`` ledger record, and a score job's quotas and consents. Released
query cells are recorded here too (``record_cells``), in the transaction that releases the job.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from crypto.paillier import PublicKey
from jobs.he import ScorePlan
from jobs.he.run_aggregate import Cell
from policies import differencing
from policies.model import Policy
from sandbox import keys
from sandbox.instance import Instance
from sandbox.models import GrantPolicy, Job, ReleasedCell
from sandbox.runtime import he_score
from sandbox.runtime.custodian import CustodianError
from sandbox.runtime.definition import JobDefinition
from sandbox.service import he_keys
from sandbox.service.jobs import QuerySpec


class DatabaseServices:
    """The worker's services for the run of ``definition`` under grant ``grant_id``; ``actor`` signs ledger events."""

    def __init__(self, instance: Instance, definition: JobDefinition, grant_id: str, actor: str) -> None:
        self.instance, self.definition, self.grant_id, self.actor = instance, definition, grant_id, actor

    def earlier_cells(self, version_id: str, low: int, high: int) -> list[differencing.Earlier]:
        job = self.definition
        with self.instance.db.sessions() as session:
            rows = session.execute(
                select(ReleasedCell.job_id, ReleasedCell.key, ReleasedCell.units)
                .join(Job, Job.id == ReleasedCell.job_id)
                .where(
                    ReleasedCell.dataset_version_id == version_id,
                    ReleasedCell.units.between(low, high),
                    ReleasedCell.job_id != job.job_id,
                    Job.spec_sha256 != job.spec_sha256,  # the same query over the same version covers the same people
                )
            ).all()
        return [differencing.Earlier(job_id, tuple(key), units) for job_id, key, units in rows]

    def earlier_query(self, job_id: str) -> tuple[str, Policy]:
        with self.instance.db.sessions() as session:
            old = session.get(Job, job_id)
            assert old is not None
            pinned = session.scalars(
                select(GrantPolicy).where(GrantPolicy.grant_id == old.grant_id, GrantPolicy.version == old.policy_version)
            ).one()
            return QuerySpec.model_validate(old.spec).sql, Policy.model_validate(pinned.policy)

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


def record_cells(session: Session, job: Job, cells: Sequence[differencing.Cell]) -> None:
    """Remember released cells of a single-dataset query job for later differencing checks."""
    if len(job.dataset_versions) != 1 or job.kind != "query":
        return
    version_id = next(iter(job.dataset_versions.values()))["version_id"]
    for index, cell in enumerate(cells):
        session.add(
            ReleasedCell(
                job_id=job.id, dataset_version_id=version_id, org_id=job.org_id, row_index=index, key=list(cell.key), units=cell.units
            )
        )
