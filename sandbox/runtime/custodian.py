"""The worker's side of the key custodian: sign a release decision, send it with its ciphertexts, check the answer.

The HTTP transport is injectable (``Transport``), so that in-process tests can hand requests to
the custodian's Flask test client; the default uses ``requests``. Failures are ``CustodianError``:
the worker ends the job as failed with that message (never stuck, never a half release).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import requests

from core.errors import SandboxError
from crypto import paillier
from crypto import release_decision as decisions
from crypto.paillier import PublicKey

# (url, JSON body, timeout in seconds) -> (HTTP status, parsed JSON body or None)
Transport = Callable[[str, dict[str, Any], float], tuple[int, Any]]
Cell = tuple[int, str]  # (row, encrypted column)

DEFAULT_TIMEOUT = 120.0


class CustodianError(SandboxError):
    """The custodian could not be reached, refused, or answered nonsense: nothing is decrypted or released."""

    code = "custodian_error"
    status = 502


def requests_transport(url: str, body: dict[str, Any], timeout: float) -> tuple[int, Any]:
    try:
        response = requests.post(url, json=body, timeout=timeout)
    except requests.RequestException as exc:
        raise CustodianError(f"the key custodian is unreachable ({type(exc).__name__})") from None
    try:
        return response.status_code, response.json()
    except ValueError:
        return response.status_code, None


@dataclass(frozen=True)
class Decrypted:
    mantissas: dict[Cell, int]  # mod n, as the custodian answered
    decision_sha256: str


class Custodian:
    def __init__(self, url: str, transport: Transport | None = None, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.url = url.rstrip("/")
        self.transport = transport or requests_transport
        self.timeout = timeout

    def decrypt(self, job_id: str, public: PublicKey, ciphertexts: Mapping[Cell, int], signing_key: bytes) -> Decrypted:
        """Decrypt exactly ``ciphertexts`` under a decision naming exactly them, signed with ``signing_key``."""
        serialised = {cell: paillier.to_bytes(public, c) for cell, c in ciphertexts.items()}
        decision = decisions.decision(job_id, public, [decisions.cell(row, column, data) for (row, column), data in serialised.items()])
        body = {
            "decision": decision,
            "signature": decisions.sign(signing_key, decision),
            "ciphertexts": [{"row": row, "column": column, "ciphertext": str(c)} for (row, column), c in ciphertexts.items()],
        }
        status, answer = self.transport(self.url + "/decrypt", body, self.timeout)
        if status != 200:
            raise CustodianError(f"the key custodian refused to decrypt ({status}): {_message(answer)}")
        return Decrypted(_mantissas(answer, list(ciphertexts), public), decisions.decision_digest(decision))


def _message(answer: Any) -> str:
    try:
        return str(answer["error"]["message"])[:300]
    except (TypeError, KeyError):
        return "no error message"


def _mantissas(answer: Any, cells: Sequence[Cell], public: PublicKey) -> dict[Cell, int]:
    """The answer's mantissas by cell, once it answers exactly the cells asked, each below n."""
    try:
        items = answer["plaintexts"]
        found = {(int(item["row"]), str(item["column"])): int(item["mantissa"]) for item in items}
    except (TypeError, KeyError, ValueError):
        raise CustodianError("the key custodian's answer is malformed") from None
    if len(items) != len(cells) or set(found) != set(cells) or any(not 0 <= m < public.n for m in found.values()):
        raise CustodianError("the key custodian's answer does not match the cells asked")
    return found
