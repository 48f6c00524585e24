"""A small Python client of the REST API, for analysts, stewards and auditors.

    >>> from sandbox.client import Client
    >>> c = Client("http://127.0.0.1:8000", token)
    >>> job = c.submit_query(grant_id, "SELECT race, COUNT(*) AS n FROM pums GROUP BY race")
    >>> df = c.wait(job)          # a pandas DataFrame of the released result

Errors from the API raise ``ApiError`` with the API's ``code``, ``message`` and ``details``.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import requests
from tqdm import tqdm

from sandbox.client import provider, scoring

TERMINAL = {"released", "held", "blocked", "rejected", "failed", "cancelled"}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, details: dict[str, Any]) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.details = status, code, message, details


class JobNotReleased(ApiError):
    """The job ended without a released result (held for review, blocked, rejected, failed, cancelled)."""


class Client:
    def __init__(self, base_url: str, token: str, timeout: float = 60.0) -> None:
        self.base = base_url.rstrip("/") + "/api/v1"
        self.timeout = timeout
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {token}"

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.http.request(method, self.base + path, timeout=self.timeout, **kwargs)
        if response.status_code >= 400:
            try:
                error = response.json()["error"]
            except (ValueError, KeyError, TypeError):
                error = {"code": "http_error", "message": response.text[:200], "details": {}}
            raise ApiError(response.status_code, error["code"], error["message"], error.get("details", {}))
        return response.json()

    # everyone
    def me(self) -> dict[str, Any]:
        return dict(self.request("GET", "/me"))

    def datasets(self) -> list[dict[str, Any]]:
        return list(self.request("GET", "/datasets")["items"])

    def mock(self, dataset_id: str, rows: int = 20, seed: int | None = None) -> pd.DataFrame:
        params = {"rows": rows} | ({"seed": seed} if seed is not None else {})
        return pd.DataFrame(self.request("GET", f"/datasets/{dataset_id}/mock", params=params)["rows"])

    # analysts
    def request_grant(self, dataset_ids: list[str], scenario: str, job_kinds: list[str]) -> dict[str, Any]:
        body = {"dataset_ids": dataset_ids, "scenario": scenario, "requested": {"job_kinds": job_kinds}}
        return dict(self.request("POST", "/grants", json=body))

    def grants(self) -> list[dict[str, Any]]:
        return list(self.request("GET", "/grants")["items"])

    def submit(self, grant_id: str, kind: str, spec: dict[str, Any], timeout_seconds: int | None = None) -> str:
        """Submit a job of any kind; returns its id. A policy refusal raises ApiError (422) at once."""
        spec = spec | ({"timeout_seconds": timeout_seconds} if timeout_seconds else {})
        return str(self.request("POST", "/jobs", json={"grant_id": grant_id, "kind": kind, "spec": spec})["id"])

    def submit_query(self, grant_id: str, sql: str, timeout_seconds: int | None = None, epsilon: float | None = None) -> str:
        """Submit a query job; on a differentially private grant state the job's ``epsilon``."""
        return self.submit(grant_id, "query", {"sql": sql} | _options(timeout_seconds, epsilon))

    def submit_stats(self, grant_id: str, spec: dict[str, Any], timeout_seconds: int | None = None, epsilon: float | None = None) -> str:
        """Submit a statistics job (``spec``: op, dataset and the op's arguments)."""
        return self.submit(grant_id, "stats", spec | _options(timeout_seconds, epsilon))

    def dry_run(self, grant_id: str, sql: str, rows: int = 1_000, seed: int | None = None, epsilon: float | None = None) -> pd.DataFrame:
        """The query on mock rows, at once, charging nothing (on a DP grant: noised at ``epsilon``).

        Columns in the query's order; notes and summary in ``attrs``, as from ``wait``.
        """
        spec = {"sql": sql} | _options(None, epsilon)
        body = {"grant_id": grant_id, "kind": "query", "spec": spec, "rows": rows} | ({"seed": seed} if seed is not None else {})
        return to_frame(self.request("POST", "/jobs/dry-run", json=body))

    def score(
        self, grant_id: str, dataset: str, weights: dict[str, Any], intercept: Any, entities: list[str], **options: Any
    ) -> pd.DataFrame:
        """Score entities with a model encrypted under a key of our own; the decrypted (entity, score) frame.

        ``weights`` maps feature columns to weights; ``options``: ``scale`` (digits of the weights, 6),
        ``feature_scale`` (for float features), ``key``, ``timeout``. See ``sandbox.client.scoring``.
        """
        return scoring.score(self, grant_id, dataset, weights, intercept, entities, **options)

    def job(self, job_id: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/jobs/{job_id}"))

    def cancel(self, job_id: str) -> dict[str, Any]:
        return dict(self.request("POST", f"/jobs/{job_id}/cancel"))

    def result(self, job_id: str) -> dict[str, Any]:
        """The released result as the API sends it: columns, rows, per-cell notes, summary."""
        return dict(self.request("GET", f"/jobs/{job_id}/result"))

    def wait(self, job_id: str, poll: float = 0.2, timeout: float | None = None, progress: bool | None = None) -> pd.DataFrame:
        """Wait for the job to end; return the released table as a DataFrame (withheld cells are NaN/None).

        The per-cell notes are in ``df.attrs["notes"]`` and the summary in ``df.attrs["summary"]``.
        Shows a progress bar when standard error is a terminal (or when ``progress`` is True).
        """
        show = sys.stderr.isatty() if progress is None else progress
        bar = tqdm(total=100, desc=f"job {job_id[:8]}", unit="%", disable=not show, leave=False)
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                job = self.job(job_id)
                bar.set_postfix_str(f"{job['status']} / {job['stage']}")
                bar.update(int(job["progress"] * 100) - bar.n)
                if job["status"] in TERMINAL:
                    break
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"job {job_id} still {job['status']} after {timeout} s")
                time.sleep(poll)
        finally:
            bar.close()
        if job["status"] != "released":
            raise JobNotReleased(409, job["status"], job.get("reason") or f"the job is {job['status']}", {"job": job})
        return to_frame(self.result(job_id))

    # stewards
    def upload(self, path: str | Path, meta: dict[str, Any]) -> dict[str, Any]:
        path = Path(path)
        with path.open("rb") as handle:
            return dict(self.request("POST", "/datasets", files={"file": (path.name, handle)}, data={"meta": json.dumps(meta)}))

    def he_keys(self) -> list[dict[str, Any]]:
        """The domain's Paillier public keys (the key custodian's)."""
        return list(self.request("GET", "/he/keys")["items"])

    def upload_encrypted(
        self, path: str | Path, meta: dict[str, Any], encrypt: Mapping[str, int], key_fingerprint: str | None = None
    ) -> dict[str, Any]:
        """Encrypt the columns of ``encrypt`` ({column: scale}) here, under the domain's key, and upload.

        The key comes from ``GET /he/keys``: the one pinned by ``key_fingerprint`` (recommended: the
        fingerprint the bureau published), else the only one registered. The file is read, encrypted
        and sent as Parquet in memory; the plaintext of the encrypted columns never leaves this process.
        """
        path = Path(path)
        public = provider.choose_key(self.he_keys(), key_fingerprint)
        table = provider.encrypt_table(provider.read_table(path), encrypt, public)
        declared = provider.encrypted_meta(meta, encrypt, public)
        parts = {"file": (path.stem + ".parquet", provider.parquet_bytes(table))}
        return dict(self.request("POST", "/datasets", files=parts, data={"meta": json.dumps(declared)}))

    def approve(self, grant_id: str, policy: dict[str, Any], expires_at: str) -> dict[str, Any]:
        return dict(self.request("POST", f"/grants/{grant_id}/approve", json={"policy": policy, "expires_at": expires_at}))

    def register_consents(self, grant_id: str, entities: list[str], valid_until: str) -> dict[str, Any]:
        """Record entities' consent to be scored under the grant until ``valid_until`` (ISO 8601, in the future)."""
        body = {"entities": entities, "valid_until": valid_until}
        return dict(self.request("POST", f"/grants/{grant_id}/consents", json=body))

    def revoke_consents(self, grant_id: str, entities: list[str]) -> dict[str, Any]:
        return dict(self.request("POST", f"/grants/{grant_id}/consents/revoke", json={"entities": entities}))

    # stewards, auditors; the grant's enterprise sees counts only
    def consents(self, grant_id: str, after: str | None = None, limit: int = 1_000) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit} | ({"after": after} if after is not None else {})
        return dict(self.request("GET", f"/grants/{grant_id}/consents", params=params))

    # auditors
    def submit_script(
        self, grant_id: str, code: str, datasets: list[str], outputs: dict[str, str], timeout_seconds: int | None = None
    ) -> str:
        """Submit a Python script (``outputs``: name -> "table", "figure" or "text"); a real run is always held for review."""
        return self.submit(grant_id, "script", _script(code, datasets, outputs), timeout_seconds)

    def dry_run_script(
        self, grant_id: str, code: str, datasets: list[str], outputs: dict[str, str], rows: int = 1_000, seed: int | None = None
    ) -> dict[str, Any]:
        """The script on mock rows, isolated as a real run: ``{"outputs": {name: ...}, "run": {exit_status, stdout, stderr, ...}}``."""
        body = {"grant_id": grant_id, "kind": "script", "spec": _script(code, datasets, outputs), "rows": rows}
        answer = self.request("POST", "/jobs/dry-run", json=body | ({"seed": seed} if seed is not None else {}))
        return {"outputs": answer["outputs"], "run": answer["run"]}

    def reviews(self) -> list[dict[str, Any]]:
        return list(self.request("GET", "/reviews")["items"])

    def review(self, job_id: str, decision: str, reason: str, outputs: list[str] | None = None) -> dict[str, Any]:
        """Release or reject a held output; for a script job's release, ``outputs`` names the outputs released (default all)."""
        body = {"decision": decision, "reason": reason} | ({"outputs": outputs} if outputs is not None else {})
        return dict(self.request("POST", f"/reviews/{job_id}", json=body))

    def verify_ledger(self) -> dict[str, Any]:
        return dict(self.request("GET", "/audit/verify"))


def _script(code: str, datasets: list[str], outputs: dict[str, str]) -> dict[str, Any]:
    return {"language": "python", "code": code, "datasets": datasets, "outputs": {name: {"type": kind} for name, kind in outputs.items()}}


def _options(timeout_seconds: int | None, epsilon: float | None) -> dict[str, Any]:
    return ({"timeout_seconds": timeout_seconds} if timeout_seconds else {}) | ({"epsilon": epsilon} if epsilon is not None else {})


def to_frame(result: dict[str, Any]) -> pd.DataFrame:
    names = [c["name"] for c in result["columns"]]
    frame = pd.DataFrame(result["rows"], columns=names)
    frame.attrs["notes"] = result["notes"]
    frame.attrs["summary"] = result["summary"]
    return frame
