"""The steward's pages: onboarding with suggested roles, datasets and versions, ε caps, the grant queue and its
policy editor, consents; each as the API does it for the same person, and refused to every other role.
"""

from __future__ import annotations

import builtins
import io
import json
import os
import re
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.test import encode_multipart

from tests.conftest import World, auth, request_grant
from tests.sandbox.console.kit import API, People, csrf_of, give_password, signed_in_client, user_id_of
from tests.sandbox.console.stewardkit import form_fields


def text_of(client: FlaskClient, path: str, status: int = 200) -> str:
    response = client.get(path)
    assert response.status_code == status, (path, response.status_code, response.get_data(as_text=True)[:300])
    return response.get_data(as_text=True)


# Values that must never come back from the role suggestion.
SECRET_CODE, SECRET_INCOME = "91350100M000100Y43", "98765.4321"
TABLE = (
    "统一社会信用代码,地区,营业收入\n"
    + f"{SECRET_CODE},东城区,{SECRET_INCOME}\n"
    + "".join(f"91440300708461136T,{'西城区' if i % 2 else '东城区'},{1000 + i}.5\n" for i in range(30))
).encode()


def upload_form(name: str, **overrides: str) -> dict[str, Any]:
    """The upload form for ``TABLE`` as a steward fills it in after the suggestion."""
    form: dict[str, Any] = {
        "name": name,
        "title": "企业营收",
        "description": "",
        "level": "重要",
        "encoding": "",
        "privacy_unit": "统一社会信用代码",
        "columns": "3",
        "col-0-name": "统一社会信用代码", "col-0-role": "identifier", "col-0-type": "string",
        "col-1-name": "地区", "col-1-role": "quasi_identifier", "col-1-type": "string", "col-1-domain": "东城区,西城区",
        "col-2-name": "营业收入", "col-2-role": "sensitive", "col-2-type": "float", "col-2-lower": "0", "col-2-upper": "100000",
    }  # fmt: skip
    return form | overrides


@pytest.fixture
def steward(app: Flask, people: People) -> FlaskClient:
    return signed_in_client(app, people.steward)


def other_steward(app: Flask, world: World) -> FlaskClient:
    """The steward of the other bureau, signed in."""
    give_password(app, world, user_id_of(world, "steward", world.ids["bureau2"]), "other-steward")
    return signed_in_client(app, "other-steward")


def other_dataset(world: World) -> str:
    """A dataset of the other bureau, uploaded through the API."""
    form = upload_form(f"other_{uuid.uuid4().hex[:6]}")
    columns = {form[f"col-{i}-name"]: {"role": form[f"col-{i}-role"], "type": form[f"col-{i}-type"]} for i in range(3)}
    columns["营业收入"]["bounds"] = [0, 100000]
    meta = {"name": form["name"], "title": "t", "level": "一般", "privacy_unit": "统一社会信用代码", "columns": columns}
    response = world.client.post(
        f"{API}/datasets",
        headers=auth(world.other_steward),
        data={"meta": json.dumps(meta), "file": (io.BytesIO(TABLE), "t.csv")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 201, response.json
    return str(response.json["id"])


def post_form(client: FlaskClient, path: str, data: dict[str, Any] | MultiDict[str, str], page: str = "/", **kwargs: Any) -> Any:
    fields = data.to_dict(flat=False) if isinstance(data, MultiDict) else dict(data)
    fields["csrf_token"] = csrf_of(client, page)
    return client.post(path, data=fields, **kwargs)


def post_upload(client: FlaskClient, form: dict[str, Any], table: bytes = TABLE, path: str = "/steward/datasets/new") -> Any:
    return post_form(client, path, form | {"file": (io.BytesIO(table), "t.csv")}, content_type="multipart/form-data")


# --- onboarding ------------------------------------------------------------------------------------


def test_the_suggestion_returns_the_header_and_the_roles_never_a_value(steward: FlaskClient) -> None:
    response = post_upload(steward, {}, path="/steward/datasets/suggest")
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert re.findall(r'data-column="([^"]+)"', page) == ["统一社会信用代码", "地区", "营业收入"]
    assert re.findall(r'data-reason="([^"]+)"', page) == ["credit_code", "quasi_name", "number"]
    assert 'value="统一社会信用代码" aria-label="隐私单位: 统一社会信用代码" checked' in page
    for value in (SECRET_CODE, SECRET_INCOME, "东城区", "91440300708461136T", "1000.5"):
        assert value not in page


def test_the_suggestion_never_writes_the_file_to_disk(steward: FlaskClient, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A 1 MB upload (Werkzeug would spool it to a temporary file past 500 kB): nothing is opened for writing."""
    big = TABLE + b"".join(b"91440300708461136T,\xe4\xb8\x9c\xe5\x9f\x8e\xe5\x8c\xba,%d.5\n" % i for i in range(30_000))
    assert len(big) > 1_000_000
    written: list[str] = []
    real_open, real_os_open = builtins.open, os.open

    def watched_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if any(flag in mode for flag in "wax+"):
            written.append(str(file))
        return real_open(file, mode, *args, **kwargs)

    def watched_os_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            written.append(str(path))
        return real_os_open(path, flags, *args, **kwargs)

    def no_temporary_file(*args: Any, **kwargs: Any) -> Any:
        written.append("a temporary file")
        raise AssertionError("a temporary file")

    fields = {
        "csrf_token": csrf_of(steward, "/steward/datasets/new"),
        "file": FileStorage(io.BytesIO(big), "big.csv", content_type="text/csv"),
    }
    boundary, body = encode_multipart(fields)  # in memory, before watching (the test client would spool it)
    monkeypatch.setattr(builtins, "open", watched_open)
    monkeypatch.setattr(os, "open", watched_os_open)
    for name in ("TemporaryFile", "NamedTemporaryFile", "SpooledTemporaryFile", "mkstemp"):
        monkeypatch.setattr(tempfile, name, no_temporary_file)
    response = steward.post("/steward/datasets/suggest", data=body, content_type=f"multipart/form-data; boundary={boundary}")
    monkeypatch.undo()
    assert response.status_code == 200
    assert 'data-reason="credit_code"' in response.get_data(as_text=True)
    assert written == []


def test_a_file_the_suggestion_cannot_read_is_explained(steward: FlaskClient) -> None:
    response = post_form(
        steward, "/steward/datasets/suggest", {"file": (io.BytesIO(b"PAR1xx"), "t.parquet")}, content_type="multipart/form-data"
    )
    page = response.get_data(as_text=True)
    assert 'role="alert"' in page
    assert "Parquet" in page


def test_uploading_through_the_form_puts_the_dataset_on_the_shelf_as_the_api_does(world: World, steward: FlaskClient) -> None:
    name = f"revenue_{uuid.uuid4().hex[:6]}"
    response = post_upload(steward, upload_form(name))
    assert response.status_code == 302, response.get_data(as_text=True)[-1500:]
    dataset_id = response.headers["Location"].rsplit("/", 1)[1]
    api = world.client.get(f"{API}/datasets/{dataset_id}", headers=auth(world.steward)).json
    assert api["name"] == name
    assert api["level"] == "重要"
    assert api["row_count"] == 31
    assert api["columns"]["地区"] == {"role": "quasi_identifier", "type": "string", "bounds": None, "domain": ["东城区", "西城区"],
                                      "paillier": None, "description": ""}  # fmt: skip
    assert api["columns"]["营业收入"]["bounds"] == {"lower": 0.0, "upper": 100000.0}
    page = text_of(steward, response.headers["Location"])
    assert "已上架" in page


@pytest.mark.parametrize(
    ("overrides", "status", "says"),
    [
        pytest.param({"col-2-lower": "", "col-2-upper": ""}, 400, "bounds", id="sensitive-without-bounds"),
        pytest.param({"privacy_unit": "nope"}, 400, "privacy_unit", id="unknown-privacy-unit"),
        pytest.param({"level": "secret"}, 400, "level", id="unknown-level"),
        pytest.param({"col-2-upper": "1000"}, 400, "营业收入", id="value-outside-bounds"),
    ],
)
def test_an_upload_the_api_refuses_is_explained_on_the_form(
    world: World, steward: FlaskClient, overrides: dict[str, str], status: int, says: str
) -> None:
    name = f"refused_{uuid.uuid4().hex[:6]}"
    response = post_upload(steward, upload_form(name, **overrides))
    page = response.get_data(as_text=True)
    assert response.status_code == status
    assert "拒绝" in page
    assert says in page.split('role="alert"', 1)[1]
    assert SECRET_INCOME not in page
    assert name not in {d["name"] for d in world.client.get(f"{API}/datasets", headers=auth(world.steward)).json["items"]}
    assert 'value="营业收入"' in page  # the form keeps what the steward typed


def test_a_taken_name_is_a_conflict_on_the_form(steward: FlaskClient) -> None:
    name = f"twice_{uuid.uuid4().hex[:6]}"
    assert post_upload(steward, upload_form(name)).status_code == 302
    again = post_upload(steward, upload_form(name))
    assert again.status_code == 409
    assert "exists already" in again.get_data(as_text=True)


# --- datasets, versions, ε caps ----------------------------------------------------------------------


@pytest.fixture
def revenue(steward: FlaskClient) -> str:
    response = post_upload(steward, upload_form(f"revenue_{uuid.uuid4().hex[:6]}"))
    assert response.status_code == 302
    return str(response.headers["Location"].rsplit("/", 1)[1])


def test_our_datasets_lists_the_bureaus_own_and_a_new_version_appears(world: World, steward: FlaskClient, revenue: str) -> None:
    listed = text_of(steward, "/steward/datasets")
    assert f"/steward/datasets/{revenue}" in listed
    assert other_dataset(world) not in text_of(steward, "/steward/datasets")
    response = post_form(
        steward, f"/steward/datasets/{revenue}/versions", {"file": (io.BytesIO(TABLE), "v2.csv")}, content_type="multipart/form-data"
    )
    assert response.status_code == 302
    page = text_of(steward, f"/steward/datasets/{revenue}")
    assert re.findall(r'data-version="(\d+)"', page) == ["2", "1"]
    assert world.client.get(f"{API}/datasets/{revenue}", headers=auth(world.steward)).json["current_version"] == 2


def test_a_version_the_api_refuses_is_explained(steward: FlaskClient, revenue: str) -> None:
    broken = TABLE.replace(b"\xe5\x9c\xb0\xe5\x8c\xba", b"district")  # the column 地区 renamed
    response = post_form(
        steward, f"/steward/datasets/{revenue}/versions", {"file": (io.BytesIO(broken), "v2.csv")}, content_type="multipart/form-data"
    )
    assert response.status_code == 400
    assert re.findall(r'data-version="(\d+)"', response.get_data(as_text=True)) == ["1"]


def test_the_epsilon_cap_is_set_as_the_api_sets_it(world: World, steward: FlaskClient, revenue: str) -> None:
    refused = post_form(steward, f"/steward/datasets/{revenue}/epsilon-cap", {"epsilon_cap": "-1"})
    assert refused.status_code == 400
    assert "epsilon_cap" in refused.get_data(as_text=True)
    assert post_form(steward, f"/steward/datasets/{revenue}/epsilon-cap", {"epsilon_cap": "2.5"}).status_code == 302
    assert 'data-field="epsilon_cap">2.5<' in text_of(steward, f"/steward/datasets/{revenue}")
    events = world.client.get(f"{API}/audit/events?limit=1000", headers=auth(world.auditor)).json["items"]
    assert [e["details"]["epsilon_cap"] for e in events if e["action"] == "dataset.epsilon_cap"] == ["2.5"]


def test_another_bureaus_dataset_is_a_404_page_and_its_cap_a_403_as_in_the_api(
    app: Flask, people: People, world: World, revenue: str
) -> None:
    other = other_steward(app, world)
    text_of(other, f"/steward/datasets/{revenue}", status=404)
    assert post_form(other, f"/steward/datasets/{revenue}/epsilon-cap", {"epsilon_cap": "1"}).status_code == 403
    api = world.client.post(f"{API}/datasets/{revenue}/epsilon-cap", headers=auth(world.other_steward), json={"epsilon_cap": 1})
    assert api.status_code == 403
    assert (
        post_form(
            other, f"/steward/datasets/{revenue}/versions", {"file": (io.BytesIO(TABLE), "v.csv")}, content_type="multipart/form-data"
        ).status_code
        == 404
    )


# --- the grant queue and the policy editor ----------------------------------------------------------


@pytest.fixture
def requested(world: World, pums: dict[str, Any]) -> dict[str, Any]:
    response = request_grant(world, [pums["id"]], kinds=["query", "stats"])
    assert response.status_code == 201, response.json
    return dict(response.json)


def editor_form(steward: FlaskClient, grant_id: str, query: str = "") -> MultiDict[str, str]:
    return form_fields(text_of(steward, f"/steward/grants/{grant_id}{query}"), f"/steward/grants/{grant_id}/approve")


def api_grant(world: World, grant_id: str) -> dict[str, Any]:
    return dict(world.client.get(f"{API}/grants/{grant_id}", headers=auth(world.steward)).json)


def test_the_queue_shows_the_request_with_its_organisation_and_scenario(steward: FlaskClient, requested: dict[str, Any]) -> None:
    page = text_of(steward, "/steward/grants")
    pending = page.split("待审批", 1)[1].split("已审批", 1)[0]
    assert f'data-grant="{requested["id"]}"' in pending
    assert "Example Bank" in pending
    assert "Income by education for a credit-risk model" in pending


def test_approving_with_the_preset_saves_the_policy_the_api_then_shows(
    world: World, steward: FlaskClient, requested: dict[str, Any]
) -> None:
    form = editor_form(steward, requested["id"])
    assert form["preset"] == "重要"  # PUMS's level
    response = post_form(steward, f"/steward/grants/{requested['id']}/approve", form)
    assert response.status_code == 302, response.get_data(as_text=True)[-2000:]
    grant = api_grant(world, requested["id"])
    assert grant["status"] == "approved"
    policy = grant["policy"]
    assert policy["columns"]["pums"]["pid"] == "deny"  # the privacy unit
    assert policy["columns"]["pums"]["income"] == "measure"
    assert set(policy["job_kinds"]) == {"query", "stats"}
    assert policy["disclosure"]["threshold"] == 10
    assert policy["release_mode"] == "review_on_flag"
    assert policy["dp"] is None


def test_the_core_preset_is_stricter(steward: FlaskClient, requested: dict[str, Any]) -> None:
    general, core = editor_form(steward, requested["id"], "?preset=一般"), editor_form(steward, requested["id"], "?preset=核心")
    assert int(core["disclosure.threshold"]) > int(general["disclosure.threshold"])
    assert float(core["disclosure.nk_k"]) < float(general["disclosure.nk_k"])
    assert core["release_mode"] == "always_review"
    assert int(core["reviewers"]) == 2
    assert "disclosure.rounding" in core
    assert "disclosure.rounding" not in general


@pytest.mark.parametrize(
    ("change", "field"),
    [
        pytest.param({"disclosure.threshold": "0"}, "disclosure.threshold", id="threshold-below-1"),
        pytest.param({"disclosure.nk_k": "many"}, "disclosure.nk_k", id="not-a-number"),
        pytest.param({"reviewers": "4"}, "reviewers", id="four-reviewers"),
        pytest.param(
            {"dp": "on", "dp.epsilon_total": "1", "dp.epsilon_per_job": "2", "dp.delta_total": "0", "dp.max_rows_per_unit": "1"},
            "dp",
            id="dp-per-job-over-total",
        ),
        pytest.param({"dp": "on", "dp.epsilon_total": "1"}, "dp.epsilon_per_job", id="dp-incomplete"),
        pytest.param({"use:0:0": "plain"}, "use:0:0", id="privacy-unit-plain"),
        pytest.param({"expires_on": "2000-01-01"}, "expires_on", id="expired"),
        pytest.param({"job_kinds": "script"}, "job_kinds", id="kind-not-requested"),
    ],
)
def test_a_policy_the_model_refuses_is_not_saved_and_the_error_names_the_field(
    world: World, steward: FlaskClient, requested: dict[str, Any], change: dict[str, str], field: str
) -> None:
    form = editor_form(steward, requested["id"])
    for key, value in change.items():
        form.setlist(key, [value])
    response = post_form(steward, f"/steward/grants/{requested['id']}/approve", form)
    page = response.get_data(as_text=True)
    assert response.status_code == 400, page[-1500:]
    assert f'data-error="{field}"' in page
    assert "未保存" in page
    assert api_grant(world, requested["id"])["status"] == "requested"
    kept = form_fields(page, f"/steward/grants/{requested['id']}/approve")
    typed = {key: value for key, value in change.items() if not key.startswith(("use:", "job_kinds"))}  # text fields and boxes
    assert {key: kept.get(key) for key in typed} == typed  # the form keeps what was typed


def test_a_dp_policy_without_the_datasets_cap_is_refused_with_the_apis_reason(
    world: World, steward: FlaskClient, requested: dict[str, Any]
) -> None:
    form = editor_form(steward, requested["id"])
    dp = {"dp": "on", "dp.epsilon_total": "1", "dp.epsilon_per_job": "0.5", "dp.delta_total": "0", "dp.max_rows_per_unit": "1"}
    for key, value in dp.items():
        form.setlist(key, [value])
    response = post_form(steward, f"/steward/grants/{requested['id']}/approve", form)
    assert response.status_code == 409
    assert "epsilon cap" in response.get_data(as_text=True)
    assert api_grant(world, requested["id"])["status"] == "requested"


def test_rejecting_needs_a_reason_and_then_closes_the_request(world: World, steward: FlaskClient, requested: dict[str, Any]) -> None:
    short = post_form(steward, f"/steward/grants/{requested['id']}/reject", {"reason": "no"})
    assert short.status_code == 400
    assert 'data-error="reason"' in short.get_data(as_text=True)
    assert post_form(steward, f"/steward/grants/{requested['id']}/reject", {"reason": "场景与数据用途不符"}).status_code == 302
    grant = api_grant(world, requested["id"])
    assert (grant["status"], grant["reason"]) == ("rejected", "场景与数据用途不符")
    again = post_form(steward, f"/steward/grants/{requested['id']}/reject", {"reason": "twice over"})
    assert again.status_code == 409


def test_another_bureaus_grant_is_a_404_as_in_the_api(app: Flask, world: World, requested: dict[str, Any]) -> None:
    other = other_steward(app, world)
    unknown = str(uuid.uuid4())
    assert world.client.get(f"{API}/grants/{requested['id']}", headers=auth(world.other_steward)).status_code == 404
    for path in (f"/steward/grants/{requested['id']}", f"/steward/grants/{unknown}", f"/steward/grants/{requested['id']}/consents"):
        text_of(other, path, status=404)
    for action in ("approve", "reject", "revoke"):
        assert post_form(other, f"/steward/grants/{requested['id']}/{action}", {"reason": "not mine"}).status_code == 404
    assert requested["id"] not in text_of(other, "/steward/grants")
    assert api_grant(world, requested["id"])["status"] == "requested"


# --- consents ---------------------------------------------------------------------------------------


def test_consents_are_registered_listed_and_revoked_as_the_api_does(world: World, steward: FlaskClient, pums: dict[str, Any]) -> None:
    grant = request_grant(world, [pums["id"]], kinds=["he"]).json
    assert "/consents" in text_of(steward, f"/steward/grants/{grant['id']}")
    path = f"/steward/grants/{grant['id']}/consents"
    refused = post_form(steward, path, {"entities": "1\n2", "valid_until": "2000-01-01"})
    assert refused.status_code == 400
    assert post_form(steward, path, {"entities": "1\n2\n2\n3", "valid_until": "2099-12-31"}).status_code == 302
    assert post_form(steward, f"{path}/revoke", {"entities": "3\n4"}).status_code == 302
    page = text_of(steward, path)
    assert re.findall(r'data-count="(\w+)">(\d+)<', page) == [("active", "2"), ("expired", "0"), ("revoked", "1")]
    api = world.client.get(f"{API}/grants/{grant['id']}/consents", headers=auth(world.steward)).json
    assert {item["entity"]: item["status"] for item in api["items"]} == {"1": "active", "2": "active", "3": "revoked"}
    assert re.findall(r'<td data-status="(\w+)">', page) == ["active", "active", "revoked"]


# --- who may do what --------------------------------------------------------------------------------

STEWARD_GETS = ["/steward/datasets", "/steward/datasets/new", "/steward/datasets/{dataset}", "/steward/grants", "/steward/grants/{grant}",
                "/steward/grants/{grant}/consents"]  # fmt: skip
STEWARD_POSTS = [
    "/steward/datasets/new",
    "/steward/datasets/suggest",
    "/steward/datasets/{dataset}/versions",
    "/steward/datasets/{dataset}/epsilon-cap",
    "/steward/grants/{grant}/approve",
    "/steward/grants/{grant}/reject",
    "/steward/grants/{grant}/revoke",
    "/steward/grants/{grant}/consents",
    "/steward/grants/{grant}/consents/revoke",
]


@pytest.mark.parametrize("role", ["analyst", "auditor", "admin"])
def test_no_other_role_opens_a_steward_page_or_posts_to_one(
    app: Flask, people: People, world: World, requested: dict[str, Any], role: str
) -> None:
    client = signed_in_client(app, getattr(people, role))
    ids = {"dataset": requested["dataset_ids"][0], "grant": requested["id"]}
    for path in STEWARD_GETS:
        assert "您的角色无权打开此页面" in text_of(client, path.format(**ids), status=403)
    for path in STEWARD_POSTS:
        response = post_form(client, path.format(**ids), {"reason": "a reason", "epsilon_cap": "1", "entities": "1"}, page="/catalogue")
        assert response.status_code == 403, path
    assert api_grant(world, requested["id"])["status"] == "requested"


def test_every_steward_form_needs_its_csrf_token(world: World, steward: FlaskClient, requested: dict[str, Any]) -> None:
    ids = {"dataset": requested["dataset_ids"][0], "grant": requested["id"]}
    form = editor_form(steward, requested["id"]).to_dict(flat=False)
    del form["csrf_token"]
    for path in STEWARD_POSTS:
        response = steward.post(path.format(**ids), data=form | {"reason": ["a good reason"], "epsilon_cap": ["5"], "entities": ["1"]})
        assert response.status_code == 400, path
        assert "表单已过期" in response.get_data(as_text=True)
    assert api_grant(world, requested["id"])["status"] == "requested"
    assert world.client.get(f"{API}/datasets/{ids['dataset']}", headers=auth(world.steward)).json["current_version"] == 1


def test_the_stewards_home_points_to_the_stewards_pages(steward: FlaskClient) -> None:
    home = text_of(steward, "/").split('<main id="main">', 1)[1]
    assert re.findall(r'<li><a href="([^"]+)"', home) == ["/steward/datasets/new", "/steward/datasets", "/steward/grants"]
    assert "尚未建成" not in home


@pytest.mark.parametrize("path", ["/steward/datasets", "/steward/datasets/new", "/steward/grants", "/steward/grants/{grant}"])
def test_the_steward_pages_speak_english_on_request(steward: FlaskClient, requested: dict[str, Any], path: str) -> None:
    page = text_of(steward, path.format(grant=requested["id"]) + "?lang=en")
    assert '<html lang="en">' in page
    assert re.search(r"(Our datasets|Put a new dataset on the shelf|Grant requests|Grant request of)", page)
    for chinese in ("本单位数据集", "授权申请", "上架", "策略", "驳回"):
        assert chinese not in page


def test_an_upload_over_the_sites_limit_is_a_413_page(app: Flask, steward: FlaskClient) -> None:
    app.config["MAX_CONTENT_LENGTH"] = 2_000
    response = post_upload(steward, upload_form("too_big"), table=TABLE * 20)
    assert response.status_code == 413
    assert "文件或表单超出了本站可接受的大小" in response.get_data(as_text=True)


@pytest.mark.parametrize(
    ("path", "fields"),
    [
        pytest.param("/steward/datasets/new", {"columns": "many"}, id="column-count-not-a-number"),
        pytest.param("/steward/datasets/new", {"columns": "99999", "name": "x\x00y"}, id="nul-and-huge-count"),
        pytest.param(
            "/steward/grants/{grant}/approve", {"expires_on": "soon", "reviewers": "", "aggregates": "everything"}, id="garbage-policy"
        ),
        pytest.param("/steward/grants/{grant}/approve", {"dp": "on", "dp.epsilon_total": "nan", "dp.epsilon_per_job": "inf"}, id="dp-nan"),
        pytest.param("/steward/grants/{grant}/reject", {"reason": "x" * 6000}, id="reason-too-long"),
        pytest.param("/steward/datasets/{dataset}/epsilon-cap", {"epsilon_cap": "nan"}, id="cap-nan"),
        pytest.param("/steward/grants/{grant}/consents", {"entities": "", "valid_until": "never"}, id="consents-empty"),
        pytest.param("/steward/grants/{grant}/consents", {"entities": "a\x00b", "valid_until": "2099-01-01"}, id="consents-nul"),
    ],
)
def test_bad_input_is_a_clear_refusal_never_a_500(
    steward: FlaskClient, requested: dict[str, Any], path: str, fields: dict[str, str]
) -> None:
    ids = {"dataset": requested["dataset_ids"][0], "grant": requested["id"]}
    response = post_form(steward, path.format(**ids), fields)
    page = response.get_data(as_text=True)
    assert response.status_code == 400, page[-800:]
    assert 'role="alert"' in page or "无法理解该请求" in page


@pytest.mark.parametrize(("query", "status"), [("?after=%00", 400), ("?after=" + "9" * 300, 400), ("?after=zz", 200)])
def test_bad_query_parameters_are_never_a_500(steward: FlaskClient, requested: dict[str, Any], query: str, status: int) -> None:
    assert steward.get(f"/steward/grants/{requested['id']}/consents{query}").status_code == status
    assert steward.get(f"/steward/grants/{requested['id']}?preset=%00").status_code == 200  # an unknown preset: the level's
