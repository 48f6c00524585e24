"""Job outputs at rest: the raw table (for auditors) and the released form (for the analyst), sealed.

Each output has its own data key, wrapped by the master key and bound to the job id. The raw
table keeps the evidence columns (privacy units per cell) that output control used.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
from pyarrow import ipc

from crypto import envelope, keywrap
from crypto.keyring import KeyStore
from sandbox.models import JobOutput


def output_context(job_id: str) -> str:
    return f"job-output:{job_id}"


def table_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue())


def table_from_bytes(data: bytes) -> pa.Table:
    return ipc.open_stream(pa.BufferReader(data)).read_all()


def seal(keys: KeyStore, job_id: str, raw: pa.Table, released: dict[str, Any]) -> JobOutput:
    data_key = keywrap.generate_key()
    wrapped, master_key_id = keys.wrap(data_key, context=output_context(job_id))
    released_bytes = json.dumps(released, ensure_ascii=False, allow_nan=False).encode("utf-8")
    return JobOutput(
        job_id=job_id,
        raw=envelope.encrypt(data_key, table_bytes(raw), key_id=f"{job_id}:raw"),
        released=envelope.encrypt(data_key, released_bytes, key_id=f"{job_id}:released"),
        wrapped_key=wrapped,
        master_key_id=master_key_id,
    )


def open_released(keys: KeyStore, output: JobOutput) -> dict[str, Any]:
    data_key = keys.unwrap(output.wrapped_key, output.master_key_id, context=output_context(output.job_id))
    released: dict[str, Any] = json.loads(envelope.decrypt(data_key, output.released, key_id=f"{output.job_id}:released"))
    return released


def open_raw(keys: KeyStore, output: JobOutput) -> pa.Table:
    data_key = keys.unwrap(output.wrapped_key, output.master_key_id, context=output_context(output.job_id))
    return table_from_bytes(envelope.decrypt(data_key, output.raw, key_id=f"{output.job_id}:raw"))
