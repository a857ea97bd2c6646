"""Who may do what over HTTP, and what bad input gets: a real `plancheck api serve` process.

401 for a missing, malformed, unknown, wrong, expired or revoked token; 403 outside the token's scope
or project; every refusal logged, never a token; 4xx with a JSON error and nothing written for bad
input; page sessions with strict cookies and CSRF checks; user text always escaped.
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import text

from plancheck.api import Plancheck
from plancheck.core.settings import Settings
from plancheck.server.app import max_body_bytes
from tests.integration.conftest import ApiServer
from tests.integration.helpers import TargetDatabase, make_target, register_target
from tests.integration.test_api_server import submit, wait_finished
from tests.processes import Cluster

MAX_SQL_BYTES = Settings().max_sql_bytes
MAX_BODY_BYTES = max_body_bytes(MAX_SQL_BYTES)

TABLES = ("project", "database", "sheet", "plan", "plan_check_run", "outbox", "api_token")
SQL = "SELECT id FROM items WHERE id = 1;\n"


@pytest.fixture
def target(api: Plancheck, create_database: Callable[[str], str]) -> TargetDatabase:
    target = register_target(api, *make_target(create_database, rows=10))
    api.create_project("other")
    return target


@pytest.fixture
def plan_id(api: Plancheck, target: TargetDatabase) -> int:
    return api.create_plan("shop", SQL, [target.target])


def counts(api: Plancheck) -> dict[str, int]:
    with api.engine.connect() as conn:
        return {table: conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one() for table in TABLES}


def endpoints(plan_id: int, target: TargetDatabase) -> list[tuple[str, str, dict[str, Any] | None]]:
    """Every authenticated endpoint with a request that would succeed for an admin token."""
    return [
        ("POST", "/api/v1/projects/shop/plans", {"sql": SQL, "targets": [target.target]}),
        ("GET", f"/api/v1/plans/{plan_id}/checks", None),
        ("POST", f"/api/v1/plans/{plan_id}/rerun", None),
        ("POST", f"/api/v1/plans/{plan_id}/cancel", None),
        ("GET", "/api/v1/projects", None),
        ("GET", "/api/v1/projects/shop/plans", None),
        ("GET", "/metrics", None),
    ]


def call(
    server: ApiServer, method: str, path: str, body: dict[str, Any] | None, headers: dict[str, str]
) -> httpx.Response:
    return httpx.request(method, server.url + path, json=body, headers=headers, timeout=30)


def expire(api: Plancheck, token: str) -> None:
    with api.engine.begin() as conn:
        conn.execute(
            text("UPDATE api_token SET expires_at = now() - interval '1 second' WHERE key_id = :k"),
            {"k": token.split("_")[1]},
        )


def test_bad_credentials_get_401_and_are_logged_without_the_token(
    api: Plancheck, api_server: ApiServer, make_token: Callable[..., str], target: TargetDatabase, plan_id: int
) -> None:
    good = make_token("admin")
    expired, revoked = make_token("admin"), make_token("admin")
    expire(api, expired)
    api.revoke_token("admin-3")
    wrong_secret = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    unknown = "pct_0123456789ab_" + good.rsplit("_", 1)[1].rjust(43, "x")[-43:]
    presented = {
        "no header": {},
        "basic auth": {"Authorization": "Basic " + good},
        "empty bearer": {"Authorization": "Bearer"},
        "garbage": {"Authorization": "Bearer not-a-token"},
        "unknown key id": {"Authorization": f"Bearer {unknown}"},
        "wrong secret": {"Authorization": f"Bearer {wrong_secret}"},
        "expired": {"Authorization": f"Bearer {expired}"},
        "revoked": {"Authorization": f"Bearer {revoked}"},
    }
    before = counts(api)
    refusals = 0
    for case, headers in presented.items():
        for method, path, body in endpoints(plan_id, target):
            response = call(api_server, method, path, body, headers)
            assert response.status_code == 401, (case, path, response.text)
            assert response.json()["error"] == "unauthorized" and response.headers["www-authenticate"] == "Bearer"
            refusals += 1
    assert counts(api) == before
    assert api.checks(plan_id).generation == 1  # no rerun, no cancel got through
    messages = {
        call(api_server, "GET", "/api/v1/projects", None, headers).json()["message"] for headers in presented.values()
    }
    assert any("has expired" in message for message in messages)
    assert any("was revoked" in message for message in messages)

    log = api_server.log()
    assert len(re.findall(r"refused \w+ /\S+ from 127\.0\.0\.1: 401 ", log)) >= refusals
    for token in (good, expired, revoked, wrong_secret, unknown):
        assert token not in log and token.rsplit("_", 1)[1] not in log


def test_scope_and_project_limits_get_403(
    api: Plancheck, api_server: ApiServer, make_token: Callable[..., str], target: TargetDatabase, plan_id: int
) -> None:
    read = {"Authorization": f"Bearer {make_token('read')}"}
    for method, path, body in endpoints(plan_id, target):
        response = call(api_server, method, path, body, read)
        expected = 403 if method == "POST" else 200
        assert response.status_code == expected, (path, response.text)
        if expected == 403:
            assert response.json() == {
                "error": "forbidden",
                "message": "token 'read-1' has scope read; this needs submit",
            }

    other = {"Authorization": f"Bearer {make_token('admin', project='other')}"}
    for method, path, body in endpoints(plan_id, target):
        response = call(api_server, method, path, body, other)
        if path == "/api/v1/projects":
            assert [p["key"] for p in response.json()["projects"]] == ["other"]
            continue
        assert response.status_code == 403, (path, response.text)
        assert "limited to project 'other'" in response.json()["message"]
    # its own project works, and a target of another project is unknown there
    plans = call(api_server, "GET", "/api/v1/projects/other/plans", None, other)
    assert plans.status_code == 200 and plans.json()["plans"] == []
    foreign = call(api_server, "POST", "/api/v1/projects/other/plans", {"sql": SQL, "targets": [target.target]}, other)
    assert foreign.status_code == 404 and "not a database of this project" in foreign.json()["message"]
    assert api.checks(plan_id).generation == 1 and api.checks(plan_id).status != "CANCELED"
    assert len(re.findall(r"refused \w+ /\S+ from 127\.0\.0\.1: 403 ", api_server.log())) >= 9


BAD_BODIES: list[tuple[str, Any, int, str]] = [
    ("targets and group", {"sql": SQL, "targets": ["local/x"], "group": "g"}, 422, 'either "targets"'),
    ("neither targets nor group", {"sql": SQL}, 422, 'either "targets"'),
    ("empty targets", {"sql": SQL, "targets": []}, 422, 'either "targets"'),
    ("empty SQL", {"sql": "  \n", "targets": ["TARGET"]}, 422, "empty"),
    ("lone surrogate", '{"sql": "SELECT \'\\udcff\';", "targets": ["TARGET"]}', 422, "not valid UTF-8"),
    ("NUL character", {"sql": "SELECT 1;\u0000", "targets": ["TARGET"]}, 422, "NUL"),
    ("oversized SQL", {"sql": "-" * (MAX_SQL_BYTES + 1), "targets": ["TARGET"]}, 422, "limit"),
    ("unknown project", {"sql": SQL, "targets": ["TARGET"], "PROJECT": "nope"}, 404, "project 'nope' not found"),
    ("unknown target", {"sql": SQL, "targets": ["local/missing_db"]}, 404, "local/missing_db"),
    ("malformed target", {"sql": SQL, "targets": ["just-a-name"]}, 422, "instance/database"),
    ("unknown group", {"sql": SQL, "group": "nope"}, 404, "group 'nope' not found"),
    ("malformed JSON", '{"sql": "SELECT 1;", "targets": [', 400, "not valid JSON"),
    ("not UTF-8 at all", b'{"sql": "SELECT \xff\xfe;", "targets": ["TARGET"]}', 400, "body"),
    ("a JSON array", "[]", 422, "valid dictionary"),
    ("unknown field", {"sql": SQL, "targets": ["TARGET"], "priority": 1}, 422, "priority: Extra inputs"),
    ("wrong type", {"sql": 5, "targets": ["TARGET"]}, 422, "sql: Input should be a valid string"),
    ("title too long", {"sql": SQL, "targets": ["TARGET"], "title": "t" * 501}, 422, "title"),
]


def _body(body: Any, target: TargetDatabase) -> tuple[str, bytes]:
    """The project and the raw request body, with TARGET standing for the registered target."""
    if isinstance(body, dict):
        project = body.pop("PROJECT", "shop")
        body = json.dumps(body)
        return project, body.replace('"TARGET"', json.dumps(target.target)).encode()
    raw = body if isinstance(body, bytes) else body.encode()
    return "shop", raw.replace(b'"TARGET"', json.dumps(target.target).encode())


@pytest.mark.parametrize(("case", "body", "status", "message"), BAD_BODIES, ids=[case[0] for case in BAD_BODIES])
def test_bad_plans_get_a_json_error_and_nothing_is_written(
    api: Plancheck,
    api_server: ApiServer,
    make_token: Callable[..., str],
    target: TargetDatabase,
    case: str,
    body: Any,
    status: int,
    message: str,
) -> None:
    token = make_token("submit")
    project, raw = _body(dict(body) if isinstance(body, dict) else body, target)
    before = counts(api)
    response = httpx.post(
        f"{api_server.url}/api/v1/projects/{project}/plans",
        content=raw,
        timeout=60,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    assert response.status_code == status, response.text[:500]
    error = response.json()
    assert message in error["message"] and "\n" not in error["message"], error
    assert len(response.content) < 2000  # the SQL is never echoed back
    assert counts(api) == before


def test_an_archived_project_takes_no_plan(
    api: Plancheck, api_server: ApiServer, make_token: Callable[..., str], target: TargetDatabase
) -> None:
    api.set_project_archived("shop")
    with api_server.client(make_token("submit")) as http:
        response = http.post("/api/v1/projects/shop/plans", json={"sql": SQL, "targets": [target.target]})
    assert response.status_code == 422 and response.json()["message"] == "project 'shop' is archived"


def test_a_huge_body_is_refused_before_it_is_read(
    api: Plancheck, api_server: ApiServer, make_token: Callable[..., str], target: TargetDatabase
) -> None:
    """A declared 1 GiB body gets 413 after a few bytes; a chunked one is cut once past the limit."""
    token = make_token("submit")
    before = counts(api)
    address = urlsplit(api_server.url)
    with socket.create_connection((address.hostname, address.port), timeout=30) as sock:
        sock.sendall(
            b"POST /api/v1/projects/shop/plans HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + token.encode() + b'\r\nContent-Length: 1073741824\r\n\r\n{"sql": "'
        )
        answer = b"".join(iter(lambda: sock.recv(65536), b"")).decode(errors="replace")  # it closes after
    assert answer.startswith("HTTP/1.1 413"), answer
    assert answer.endswith('{"error":"too_large","message":"the request body is too large"}'), answer
    assert "x-frame-options: DENY" in answer

    def chunks() -> Iterator[bytes]:
        yield b'{"sql": "'
        for _ in range(MAX_BODY_BYTES // (1 << 20) + 2):
            yield b"-" * (1 << 20)

    try:
        response = httpx.post(
            f"{api_server.url}/api/v1/projects/shop/plans",
            content=chunks(),
            timeout=60,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        assert response.status_code == 413 and response.json()["error"] == "too_large"
    except httpx.WriteError:
        pass  # the server answered and closed while the client was still sending; its log says what
    assert api_server.log().count('"POST /api/v1/projects/shop/plans HTTP/1.1" 413') == 2
    assert counts(api) == before


# -- the results page: sessions, cookies, CSRF ----------------------------------------------------
def login(server: ApiServer, token: str, **headers: str) -> httpx.Response:
    return httpx.post(f"{server.url}/login", data={"token": token, "next": "/projects"}, headers=headers)


def session_cookie(response: httpx.Response) -> str:
    (cookie,) = [value for name, value in response.headers.multi_items() if name == "set-cookie"]
    return cookie


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match, page
    return match.group(1)


def test_login_sets_a_strict_http_only_session_cookie(
    api: Plancheck, api_server: ApiServer, make_token: Callable[..., str], target: TargetDatabase
) -> None:
    token = make_token("read")
    response = login(api_server, token)
    assert response.status_code == 303 and response.headers["location"] == "/projects"
    cookie = session_cookie(response)
    flags = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "path", "max-age", "samesite"} <= flags and "secure" not in flags
    assert "samesite=strict" in cookie.lower()
    assert token not in cookie and token.rsplit("_", 1)[1] not in cookie
    # behind a TLS-terminating proxy on the same host, the cookie is Secure
    assert "secure" in session_cookie(login(api_server, token, **{"X-Forwarded-Proto": "https"})).lower()

    page = httpx.get(f"{api_server.url}/projects", cookies=response.cookies)
    assert page.status_code == 200 and ">shop<" in page.text
    csp = page.headers["content-security-policy"]
    assert "script-src 'self';" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert page.headers["x-frame-options"] == "DENY" and page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["cache-control"] == "no-store"


def test_pages_need_a_valid_session(
    api: Plancheck, api_server: ApiServer, make_token: Callable[..., str], target: TargetDatabase, plan_id: int
) -> None:
    anonymous = httpx.get(f"{api_server.url}/plans/{plan_id}")
    assert anonymous.status_code == 303 and anonymous.headers["location"] == f"/login?next=/plans/{plan_id}"
    refused = login(api_server, "pct_0123456789ab_" + "x" * 43)
    assert refused.status_code == 401 and "set-cookie" not in refused.headers
    assert "the token is not valid" in refused.text
    # a login never redirects off this server
    away = httpx.post(f"{api_server.url}/login", data={"token": make_token("read"), "next": "//evil.example/x"})
    assert away.headers["location"] == "/projects"

    cookies = login(api_server, make_token("read", name="reviewer")).cookies
    value = cookies["plancheck_session"]
    tampered = httpx.get(f"{api_server.url}/projects", cookies={"plancheck_session": value[:-2] + "xx"})
    assert tampered.status_code == 303
    assert httpx.get(f"{api_server.url}/projects", cookies=cookies).status_code == 200
    api.revoke_token("reviewer")
    assert httpx.get(f"{api_server.url}/projects", cookies=cookies).status_code == 303  # revocation ends it

    limited = login(api_server, make_token("submit", project="other")).cookies
    assert httpx.get(f"{api_server.url}/plans/{plan_id}", cookies=limited).status_code == 403
    assert httpx.get(f"{api_server.url}/projects/shop", cookies=limited).status_code == 403


def test_rerun_and_cancel_buttons_need_submit_scope_and_the_csrf_token(
    api: Plancheck, api_server: ApiServer, make_token: Callable[..., str], target: TargetDatabase, plan_id: int
) -> None:
    reader = login(api_server, make_token("read")).cookies
    reader_page = httpx.get(f"{api_server.url}/plans/{plan_id}", cookies=reader)
    assert reader_page.status_code == 200 and 'id="rerun"' not in reader_page.text

    submitter = login(api_server, make_token("submit")).cookies
    page = httpx.get(f"{api_server.url}/plans/{plan_id}", cookies=submitter)
    assert 'id="rerun"' in page.text and 'id="cancel"' in page.text
    csrf = csrf_of(page.text)

    def press(action: str, cookies: httpx.Cookies, form: dict[str, str]) -> httpx.Response:
        return httpx.post(f"{api_server.url}/plans/{plan_id}/{action}", data=form, cookies=cookies)

    for form in ({}, {"csrf": ""}, {"csrf": csrf[:-1] + ("A" if csrf[-1] != "A" else "B")}):
        refused = press("rerun", submitter, form)
        assert refused.status_code == 403 and "CSRF" in refused.text
    assert press("rerun", reader, {"csrf": csrf_of(reader_page.text)}).status_code == 403  # read scope
    assert press("rerun", submitter, {"csrf": csrf_of(reader_page.text)}).status_code == 403  # another session's
    assert api.checks(plan_id).generation == 1

    done = press("rerun", submitter, {"csrf": csrf})
    assert done.status_code == 303 and done.headers["location"] == f"/plans/{plan_id}"
    assert api.checks(plan_id).generation == 2
    assert press("cancel", submitter, {"csrf": csrf}).status_code == 303
    assert api.checks(plan_id).status == "CANCELED"
    assert len(re.findall(r"refused POST /plans/\d+/rerun from 127\.0\.0\.1: 403 ", api_server.log())) == 5

    assert httpx.post(f"{api_server.url}/logout", cookies=submitter).status_code == 403
    out = httpx.post(f"{api_server.url}/logout", data={"csrf": csrf}, cookies=submitter)
    assert out.status_code == 303 and 'plancheck_session=""' in session_cookie(out)


EVIL_TITLE = '<script>alert("title")</script>'
EVIL_SQL = "SELECT 1; -- </td><script>alert('sql')</script>\nSELECT * FROM items WHERE id = 1;\n"
EVIL_DATABASE = '<script>alert("target")<!--'  # a target name holds no whitespace or slash


def test_user_text_is_escaped_everywhere(
    api: Plancheck, api_server: ApiServer, make_token: Callable[..., str], target: TargetDatabase, cluster: Cluster
) -> None:
    """A plan title, its SQL and a registered database name full of markup render as text."""
    with api.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO database (instance_id, name, environment, project_id) "
                "SELECT i.id, :name, 'test', p.id FROM instance i, project p "
                "WHERE i.key = 'local' AND p.key = 'shop'"
            ),
            {"name": EVIL_DATABASE},
        )
    cluster.worker("w1")
    token = make_token("submit")
    with api_server.client(token) as http:
        plan_id = submit(http, sql=EVIL_SQL, targets=[target.target, f"local/{EVIL_DATABASE}"], title=EVIL_TITLE)
        checks = wait_finished(http, plan_id)
    assert f"local/{EVIL_DATABASE}" in {result["target"] for result in checks["results"]}
    cookies = login(api_server, token).cookies
    for path in (f"/plans/{plan_id}", "/projects/shop"):
        page = httpx.get(api_server.url + path, cookies=cookies).text
        assert "<script>alert" not in page, path
        assert "&lt;script&gt;alert(&#34;title&#34;)&lt;/script&gt;" in page, path
    page = httpx.get(f"{api_server.url}/plans/{plan_id}", cookies=cookies).text
    assert "&lt;/td&gt;&lt;script&gt;alert(&#39;sql&#39;)&lt;/script&gt;" in page
    assert "local/&lt;script&gt;alert(&#34;target&#34;)&lt;!--" in page
    assert page.count("<script") == 0  # finished: not even live.js
