"""The sandbox's master keyring (``crypto.keyring``), data-key wrapping, and the domain's ledger signing key.

The master key never enters the database: a stolen database alone decrypts nothing. The keyring
file holds the current master key and, during a rotation, the previous one, so that a rotation
interrupted at any point can simply be run again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.errors import Conflict
from crypto import keywrap
from crypto import ledger as ledger_crypto
from crypto.keyring import Keyring, KeyStore
from sandbox.models import DatasetVersion, DomainKey

if TYPE_CHECKING:
    from flask import Flask

SIGNING_KEY_KIND = "ledger_signing"


def version_context(version_id: str) -> str:
    return f"dataset-version:{version_id}"


def signing_context(kind: str) -> str:
    return f"domain-key:{kind}"


def get_keys() -> KeyStore:
    from flask import current_app  # noqa: PLC0415 - the web app's helper; workers import this module without Flask

    store: KeyStore = current_app.extensions["sandbox.keys"]
    return store


def ensure_signing_key(session: Session, store: KeyStore) -> DomainKey:
    key = session.scalar(select(DomainKey).where(DomainKey.kind == SIGNING_KEY_KIND))
    if key is not None:
        return key
    private_der, public_der = ledger_crypto.generate_signing_key()
    wrapped, master_id = store.wrap(private_der, context=signing_context(SIGNING_KEY_KIND))
    key = DomainKey(kind=SIGNING_KEY_KIND, public_der=public_der, wrapped_private=wrapped, master_key_id=master_id)
    session.add(key)
    session.flush()
    return key


class WrappedSigningKey(NamedTuple):
    """The ledger signing key as stored: its public key, and its private key wrapped by a master key."""

    master_key_id: str
    wrapped_private: bytes
    public_der: bytes


def signing_key(session: Session, store: KeyStore) -> tuple[bytes, bytes]:
    """(private DER, public DER) of the ledger signing key."""
    key = wrapped_signing_key(session)
    return unwrap_signing_key(key, store), key.public_der


def wrapped_signing_key(session: Session) -> WrappedSigningKey:
    """The ledger signing key's row (three columns, read without loading an ORM object: the ledger reads it often)."""
    columns = (DomainKey.master_key_id, DomainKey.wrapped_private, DomainKey.public_der)
    row = session.execute(select(*columns).where(DomainKey.kind == SIGNING_KEY_KIND)).one_or_none()
    if row is None:
        raise Conflict("the instance has no signing key yet: run `python -m sandbox init`")
    return WrappedSigningKey(row.master_key_id, bytes(row.wrapped_private), bytes(row.public_der))


def unwrap_signing_key(key: WrappedSigningKey, store: KeyStore) -> bytes:
    """The private DER of ``key``, unwrapped with the keyring's master key."""
    return store.unwrap(key.wrapped_private, key.master_key_id, context=signing_context(SIGNING_KEY_KIND))


def rotate(session: Session, store: KeyStore) -> dict[str, object]:
    """Re-wrap every data key and domain key under a new master key; no data is re-encrypted.

    The caller commits ``session``; afterwards ``retire_old_keys`` drops keys no longer used. Until
    then the keyring holds both, so a crash anywhere leaves every wrapped key readable.
    """
    ring = store.load()
    new_id = keywrap.new_key_id()
    ring = Keyring(current=new_id, keys={**ring.keys, new_id: keywrap.generate_key()})
    store.save(ring)
    new_key = ring.key(new_id)
    count = 0
    for version in session.scalars(select(DatasetVersion)):
        context = version_context(version.id)
        data_key = keywrap.unwrap(ring.key(version.master_key_id), version.master_key_id, version.wrapped_key, context=context)
        version.wrapped_key = keywrap.wrap(new_key, new_id, data_key, context=context)
        version.master_key_id = new_id
        count += 1
    for domain_key in session.scalars(select(DomainKey)):
        context = signing_context(domain_key.kind)
        private = keywrap.unwrap(ring.key(domain_key.master_key_id), domain_key.master_key_id, domain_key.wrapped_private, context=context)
        domain_key.wrapped_private = keywrap.wrap(new_key, new_id, private, context=context)
        domain_key.master_key_id = new_id
        count += 1
    return {"master_key_id": new_id, "rewrapped": count}


def retire_old_keys(store: KeyStore) -> list[str]:
    """After a committed rotation: remove every master key but the current one from the keyring."""
    ring = store.load()
    retired = [key_id for key_id in ring.keys if key_id != ring.current]
    store.save(Keyring(current=ring.current, keys={ring.current: ring.key(ring.current)}))
    return retired


def get_keys_of(app: Flask) -> KeyStore:
    found: KeyStore = app.extensions["sandbox.keys"]
    return found
