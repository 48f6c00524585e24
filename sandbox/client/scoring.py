"""The analyst's side of scoring (``he`` op ``score``): its own Paillier key, its model encrypted, the scores decrypted.

    >>> from sandbox.client import Client
    >>> bank = Client("http://127.0.0.1:8000", token)
    >>> df = bank.score(grant_id, "firms", {"revenue": 0.8, "employees": -0.02}, intercept=1.5, entities=["9131...", "9144..."])
    >>> df                          # entity, score: decrypted here, never seen by the domain
    >>> df.attrs["summary"]         # requested, scored, over_quota, unavailable, the scale of the scores

The key pair is generated here and the private key never leaves this process (pass ``key`` to keep
one across jobs). Weights and intercept are encrypted at ``scale`` decimal digits; the domain
multiplies them by the features (integers, or floats rounded at ``feature_scale`` digits) and adds
them up under encryption. Before submitting, the declared bounds of the features (public catalogue
metadata) are used to check that no score can overflow the key's range.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pandas as pd

from crypto import paillier
from crypto.paillier import KeyPair, PublicKey

if TYPE_CHECKING:
    from sandbox.client import Client

Number = float | int | str | Decimal


@dataclass(frozen=True)
class Submitted:
    job_id: str
    key: KeyPair  # the private half decrypts the scores; keep it, never send it


def encrypt_model(public: PublicKey, weights: Sequence[Number], intercept: Number, scale: int) -> tuple[list[str], str]:
    """Weights and intercept encoded at ``scale`` digits and encrypted, as the decimal strings a spec carries."""
    encrypted = [str(paillier.encrypt(public, paillier.encode(w, scale, public))) for w in weights]
    return encrypted, str(paillier.encrypt(public, paillier.encode(intercept, scale, public)))


def check_range(
    public: PublicKey, columns: Mapping[str, Any], weights: Mapping[str, Number], intercept: Number, scale: int, feature_scale: int
) -> None:
    """Refuse a model whose score could leave the key's range over the features' declared bounds."""
    largest = abs(Decimal(str(intercept)))
    for name, weight in weights.items():
        bounds = (columns.get(name) or {}).get("bounds")
        if not bounds:
            raise ValueError(f"feature {name} has no declared bounds in the catalogue")
        reach = max(abs(Decimal(str(bounds["lower"]))), abs(Decimal(str(bounds["upper"]))))
        largest += abs(Decimal(str(weight))) * reach
    if largest.scaleb(scale + feature_scale) + len(weights) + 1 > public.max_int:
        raise ValueError("a score could overflow the key's range: use a larger key or smaller scales")


def spec(
    public: PublicKey,
    dataset: str,
    weights: Mapping[str, Number],
    intercept: Number,
    entities: Sequence[str],
    scale: int,
    feature_scale: int | None,
) -> dict[str, Any]:
    """The ``he`` job spec of a scoring request (weights in the order of the features)."""
    encrypted, encrypted_intercept = encrypt_model(public, list(weights.values()), intercept, scale)
    body: dict[str, Any] = {
        "op": "score",
        "dataset": dataset,
        "features": list(weights),
        "public_key": public.as_dict(),
        "scale": scale,
        "weights": encrypted,
        "intercept": encrypted_intercept,
        "entities": [str(e) for e in entities],
    }
    if feature_scale is not None:
        body["feature_scale"] = feature_scale
    return body


def submit(
    client: Client,
    grant_id: str,
    dataset: str,
    weights: Mapping[str, Number],
    intercept: Number,
    entities: Sequence[str],
    *,
    scale: int = 6,
    feature_scale: int | None = None,
    key: KeyPair | None = None,
) -> Submitted:
    """Encrypt the model under a key of our own (generated unless given) and submit the scoring job."""
    key = key or paillier.generate()
    meta = next((d for d in client.datasets() if d["name"] == dataset), None)
    if meta is not None:
        check_range(key.public, meta["columns"], weights, intercept, scale, feature_scale or 0)
    body = {"grant_id": grant_id, "kind": "he", "spec": spec(key.public, dataset, weights, intercept, entities, scale, feature_scale)}
    return Submitted(str(client.request("POST", "/jobs", json=body)["id"]), key)


def decrypt(result: pd.DataFrame, key: KeyPair) -> pd.DataFrame:
    """The released scores (``Client.wait``'s frame) decrypted: ``entity``, ``score`` as floats (exact decimals in ``score_exact``)."""
    summary = result.attrs.get("summary", {})
    if summary.get("key") != key.public.fingerprint:
        raise ValueError("the result was not computed under this key")
    scale = int(summary["scale"])
    exact = [paillier.decode(paillier.decrypt(key.private, int(c)), scale, key.public) for c in result["score"]]
    frame = pd.DataFrame({"entity": list(result["entity"]), "score": [float(v) for v in exact], "score_exact": exact})
    frame.attrs["summary"] = summary
    return frame


def collect(client: Client, submitted: Submitted, timeout: float | None = None) -> pd.DataFrame:
    """Wait for the job and decrypt its scores."""
    return decrypt(client.wait(submitted.job_id, timeout=timeout), submitted.key)


def score(
    client: Client,
    grant_id: str,
    dataset: str,
    weights: Mapping[str, Number],
    intercept: Number,
    entities: Sequence[str],
    *,
    scale: int = 6,
    feature_scale: int | None = None,
    key: KeyPair | None = None,
    timeout: float | None = None,
) -> pd.DataFrame:
    """Submit, wait, decrypt: a DataFrame of (entity, score) for the entities the domain scored."""
    submitted = submit(client, grant_id, dataset, weights, intercept, entities, scale=scale, feature_scale=feature_scale, key=key)
    return collect(client, submitted, timeout)
