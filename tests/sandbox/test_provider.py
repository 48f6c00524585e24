"""Provider-side encryption helpers: choosing the domain's key, encrypting columns, declaring them."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from crypto import paillier
from sandbox.client.provider import EncryptionError, choose_key, encrypt_table, encrypted_meta, parse_column_option, read_table
from tests.conftest import PUMS_META


@pytest.fixture(scope="module")
def pair() -> paillier.KeyPair:
    return paillier.generate(2048)


@pytest.mark.parametrize(
    ("text", "parsed"),
    [("income", ("income", 0)), ("income:3", ("income", 3)), ("纳税额:2", ("纳税额", 2)), ("时间:小时:0", ("时间:小时", 0))],
    ids=["bare", "scale", "chinese", "name-with-a-colon"],
)
def test_column_options(text: str, parsed: tuple[str, int]) -> None:
    assert parse_column_option(text) == parsed


@pytest.mark.parametrize("text", [":2", "income:x", "income:13", "income:-1"])
def test_bad_column_options(text: str) -> None:
    with pytest.raises(EncryptionError):
        parse_column_option(text)


def test_a_pinned_fingerprint_must_be_among_the_domains_keys(pair: paillier.KeyPair) -> None:
    items = [pair.public.as_dict()]
    assert choose_key(items, None) == pair.public
    assert choose_key(items, pair.public.fingerprint) == pair.public
    with pytest.raises(EncryptionError, match="no Paillier key with fingerprint"):
        choose_key(items, "0" * 64)
    with pytest.raises(EncryptionError, match="no Paillier key registered"):
        choose_key([], None)


def test_a_key_whose_fingerprint_does_not_match_its_modulus_is_refused(pair: paillier.KeyPair) -> None:
    lying = pair.public.as_dict() | {"fingerprint": "f" * 64}
    with pytest.raises(Exception, match="fingerprint does not match"):
        choose_key([lying], "f" * 64)


def test_encrypted_columns_decrypt_to_the_values_and_are_declared(pair: paillier.KeyPair) -> None:
    table = pa.table({"pid": [1, 2, 3], "income": [12.25, None, -3.5]})
    encrypted = encrypt_table(table, {"income": 2}, pair.public)
    assert encrypted.column("pid").to_pylist() == [1, 2, 3]
    assert encrypted.schema.field("income").type == pa.binary(pair.public.ciphertext_bytes)
    ciphertexts = paillier.from_arrow(encrypted.column("income"))
    values = [None if c is None else paillier.decode(paillier.decrypt(pair.private, c), 2, pair.public) for c in ciphertexts]
    assert values == [pytest.approx(12.25), None, pytest.approx(-3.5)]
    meta = encrypted_meta(PUMS_META, {"income": 2}, pair.public)
    assert meta["columns"]["income"] == {"role": "sensitive", "type": "paillier", "paillier": {"key": pair.public.fingerprint, "scale": 2}}
    assert PUMS_META["columns"]["income"]["type"] == "int"  # the caller's meta is left alone


@pytest.mark.parametrize(
    ("table", "columns", "message"),
    [
        (pa.table({"income": ["a", "b"]}), {"income": 0}, "not numeric"),
        (pa.table({"wage": [1, 2]}), {"income": 0}, "not in the file"),
        (pa.table({"income": [float("inf"), 2.0]}), {"income": 0}, "not a finite number"),
    ],
    ids=["text", "missing", "infinite"],
)
def test_columns_that_cannot_be_encrypted_are_named(pair: paillier.KeyPair, table: pa.Table, columns: dict[str, int], message: str) -> None:
    with pytest.raises(EncryptionError, match=message):
        encrypt_table(table, columns, pair.public)


@pytest.mark.parametrize("encoding", ["utf-8-sig", "gbk", "gb18030"])
def test_a_provider_reads_csv_as_bureaus_export_it(tmp_path: Path, encoding: str) -> None:
    path = tmp_path / "tax.csv"
    path.write_bytes("统一社会信用代码,地区,纳税额\n91110101767493656Q,东城区,81.33\n".encode(encoding))
    table = read_table(path)
    assert table.column_names == ["统一社会信用代码", "地区", "纳税额"]
    assert table.column("地区").to_pylist() == ["东城区"]


def test_a_provider_refuses_undecodable_csv(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(b"a,b\n\xff\x80,1\n")
    with pytest.raises(EncryptionError, match="not UTF-8, GBK or GB18030"):
        read_table(path)
