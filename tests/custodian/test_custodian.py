"""The key custodian alone: its files, and /decrypt's refusals (bad signature, stale, foreign key, unnamed ciphertext)."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient

from crypto import ledger as ledger_crypto
from crypto import paillier
from crypto import release_decision as decisions
from crypto.paillier import PublicKey
from custodian.app import create_app
from custodian.cli import main as custodian_cli
from custodian.config import Settings
from custodian.vault import Vault


class Domain:
    """The sandbox's side, reduced to its signing key: signs decisions as a worker would."""

    def __init__(self) -> None:
        self.private, self.public = ledger_crypto.generate_signing_key()

    def request(self, key: PublicKey, cells: dict[tuple[int, str], int], **overrides: Any) -> dict[str, Any]:
        named = [decisions.cell(row, column, paillier.to_bytes(key, c)) for (row, column), c in cells.items()]
        decision = decisions.decision("job-1", key, named) | overrides
        return {
            "decision": decision,
            "signature": decisions.sign(self.private, decision),
            "ciphertexts": [{"row": row, "column": column, "ciphertext": str(c)} for (row, column), c in cells.items()],
        }


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(directory=tmp_path / "custodian", domain_key_file=tmp_path / "custodian" / "domain.pub", max_age_seconds=120)


@pytest.fixture
def domain(settings: Settings) -> Domain:
    found = Domain()
    Vault(settings).init(2048)
    settings.domain_key_file.write_text(ledger_crypto.public_to_pem(found.public))
    return found


@pytest.fixture
def client(settings: Settings, domain: Domain) -> FlaskClient:
    return create_app(settings).test_client()


def public_of(client: FlaskClient) -> PublicKey:
    return PublicKey.from_dict(client.get("/public-key").get_json())


def log_of(settings: Settings) -> list[dict[str, Any]]:
    return [json.loads(line) for line in settings.log_file.read_text().splitlines()]


def test_init_is_idempotent_and_keeps_the_private_key_wrapped(settings: Settings) -> None:
    first, created = Vault(settings).init(2048)
    again, created_again = Vault(settings).init(3072)
    assert created
    assert not created_again
    assert again == first
    assert stat.S_IMODE(settings.directory.stat().st_mode) == 0o700
    assert stat.S_IMODE(settings.key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(settings.keyring_file.stat().st_mode) == 0o600
    private = Vault(settings).private()
    text = settings.key_file.read_text()
    assert str(private.p) not in text
    assert str(private.q) not in text
    assert json.loads(text)["public"]["fingerprint"] == first.fingerprint


def test_cli_init_prints_the_fingerprint(tmp_path: Path) -> None:
    env = {"SANDBOX_CUSTODIAN_DIR": str(tmp_path / "elsewhere")}
    result = CliRunner(env=env).invoke(custodian_cli, ["init"])
    assert result.exit_code == 0, result.output
    public = Vault(Settings.from_env(env)).public()
    assert f"fingerprint {public.fingerprint}" in result.output
    assert CliRunner(env=env).invoke(custodian_cli, ["init"]).output.count(public.fingerprint) == 1


def test_public_key_and_a_signed_decision_decrypt(client: FlaskClient, settings: Settings, domain: Domain) -> None:
    key = public_of(client)
    a = paillier.encrypt(key, paillier.encode(1234.5, 1, key))
    b = paillier.encrypt(key, paillier.encode(-7, 1, key))
    response = client.post("/decrypt", json=domain.request(key, {(0, "income"): a, (3, "income"): b}))
    assert response.status_code == 200, response.get_json()
    mantissas = {(p["row"], p["column"]): int(p["mantissa"]) for p in response.get_json()["plaintexts"]}
    assert paillier.decode(mantissas[(0, "income")], 1, key) == pytest.approx(1234.5)
    assert paillier.decode(mantissas[(3, "income")], 1, key) == -7
    (line,) = log_of(settings)
    assert line["outcome"] == "decrypted"
    assert line["cells"] == 2
    assert "12345" not in settings.log_file.read_text()


def refusal(client: FlaskClient, body: dict[str, Any], reason: str) -> None:
    response = client.post("/decrypt", json=body)
    assert response.status_code == 403, response.get_json()
    error = response.get_json()["error"]
    assert error["code"] == "forbidden"
    assert error["details"] == {"reason": reason}
    assert "plaintexts" not in response.get_json()


def test_a_decision_signed_by_another_key_is_refused(client: FlaskClient, settings: Settings) -> None:
    key = public_of(client)
    c = paillier.encrypt(key, 5)
    refusal(client, Domain().request(key, {(0, "income"): c}), "bad_signature")
    assert log_of(settings) == [{**log_of(settings)[0], "outcome": "refused", "reason": "bad_signature"}]


def test_a_decision_altered_after_signing_is_refused(client: FlaskClient, domain: Domain) -> None:
    key = public_of(client)
    body = domain.request(key, {(0, "income"): paillier.encrypt(key, 5)})
    body["decision"]["job_id"] = "job-2"
    refusal(client, body, "bad_signature")


@pytest.mark.parametrize(("age", "reason"), [(timedelta(minutes=10), "stale"), (-timedelta(minutes=10), "future")], ids=["stale", "future"])
def test_a_decision_outside_its_time_window_is_refused(client: FlaskClient, domain: Domain, age: timedelta, reason: str) -> None:
    key = public_of(client)
    issued = (datetime.now(UTC) - age).isoformat()
    refusal(client, domain.request(key, {(0, "income"): paillier.encrypt(key, 5)}, issued_at=issued), reason)


def test_a_decision_for_a_foreign_key_is_refused(client: FlaskClient, domain: Domain) -> None:
    foreign = paillier.generate(2048).public
    refusal(client, domain.request(foreign, {(0, "income"): paillier.encrypt(foreign, 5)}), "foreign_key")


def test_a_ciphertext_not_named_by_the_decision_refuses_the_whole_request(client: FlaskClient, domain: Domain, settings: Settings) -> None:
    key = public_of(client)
    released, suppressed = paillier.encrypt(key, 50), paillier.encrypt(key, 3)
    body = domain.request(key, {(0, "income"): released})
    body["ciphertexts"].append({"row": 5, "column": "income", "ciphertext": str(suppressed)})  # a suppressed cell, smuggled in
    refusal(client, body, "not_in_decision")
    assert [line["outcome"] for line in log_of(settings)] == ["refused"]


def test_a_ciphertext_swapped_under_a_named_cell_is_refused(client: FlaskClient, domain: Domain) -> None:
    key = public_of(client)
    body = domain.request(key, {(0, "income"): paillier.encrypt(key, 50)})
    body["ciphertexts"][0]["ciphertext"] = str(paillier.encrypt(key, 3))
    refusal(client, body, "digest_mismatch")


@pytest.mark.parametrize(
    "mangle",
    [
        lambda body: body.pop("signature"),
        lambda body: body["decision"].update(cells=[]),
        lambda body: body["ciphertexts"][0].update(ciphertext="12x"),
        lambda body: body["ciphertexts"][0].update(row="0"),
    ],
    ids=["no_signature", "no_cells", "not_decimal", "row_as_text"],
)
def test_malformed_requests_are_bad_input(client: FlaskClient, domain: Domain, mangle: Any) -> None:
    key = public_of(client)
    body = domain.request(key, {(0, "income"): paillier.encrypt(key, 5)})
    mangle(body)
    response = client.post("/decrypt", json=body)
    assert response.status_code == 400, response.get_json()
    assert set(response.get_json()["error"]) == {"code", "message", "details"}


def test_without_the_domain_key_nothing_is_decrypted(client: FlaskClient, domain: Domain, settings: Settings) -> None:
    key = public_of(client)
    settings.domain_key_file.unlink()
    response = client.post("/decrypt", json=domain.request(key, {(0, "income"): paillier.encrypt(key, 5)}))
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "unavailable"
