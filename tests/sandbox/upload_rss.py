"""Run in a subprocess by ``test_upload_bounds``: one upload, and how much the process's resident memory grew for it.

Arguments: instance path, database URL, steward token, meta JSON file, file to upload. Prints JSON
``{status, code, growth_bytes}``. The peak is Linux's VmHWM, reset just before the request
(``/proc/self/clear_refs``), so the growth is the request's own: peak during it minus resident before.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from urllib3 import encode_multipart_formdata

from sandbox import create_app


def _kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} missing from /proc/self/status")


def main(instance: str, database_url: str, token: str, meta_file: str, data_file: str) -> None:
    app = create_app({"INSTANCE_PATH": instance, "DATABASE_URL": database_url, "TESTING": True})
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    name = Path(data_file).name
    body, content_type = encode_multipart_formdata({"meta": Path(meta_file).read_text(), "file": (name, Path(data_file).read_bytes())})
    warm, warm_type = encode_multipart_formdata({"meta": "{}", "file": (name, Path(data_file).read_bytes())})
    client.post("/api/v1/datasets", headers=headers, data=warm, content_type=warm_type)  # code paths loaded once
    Path("/proc/self/clear_refs").write_text("5")
    before = _kib("VmRSS")
    response = client.post("/api/v1/datasets", headers=headers, data=body, content_type=content_type)
    growth = (_kib("VmHWM") - before) * 1024
    error = (response.get_json() or {}).get("error") or {}
    print(json.dumps({"status": response.status_code, "code": error.get("code"), "growth_bytes": growth}))


if __name__ == "__main__":
    main(*sys.argv[1:6])
