"""The results page: server-rendered HTML (Jinja2, autoescaped), read-only but for rerun and cancel.

Log in with any valid token; a session cookie follows. Rerun and cancel are POST forms that need
submit scope and the session's CSRF token. The only script is static/live.js, which polls a
running plan's progress and reloads the page when it changes.
"""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Annotated, Any
from urllib.parse import parse_qs

import jinja2
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from plancheck.api import Plancheck, rule_fixes
from plancheck.api.access import Grant, Scope
from plancheck.api.present import duration_text, json_text, level_counts, position_text, summary_text
from plancheck.core.errors import InvalidInput, Unauthorized
from plancheck.core.states import FINAL_STATUSES, RunStatus
from plancheck.server import views
from plancheck.server.api_v1 import PLAN_ID_MAX, PlanId
from plancheck.server.auth import (
    SESSION_COOKIE,
    Session,
    api_of,
    authorize,
    check_csrf,
    cookie_flags,
    log_refusal,
    page_session,
)

MAX_FORM_FIELDS = 4
PAGE_SIZE = 50

router = APIRouter(include_in_schema=False)
SessionDep = Annotated[tuple[Grant, Session], Depends(page_session)]


def _when(value: Any) -> str:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="seconds")
    return "" if value is None else str(value)


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("plancheck.server", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = _when
    env.filters["json"] = json_text
    env.globals.update(position_text=position_text, duration_text=duration_text, summary_text=summary_text)
    return env


templates = Jinja2Templates(env=_environment())


@cache
def _rule_help() -> dict[str, str]:
    return rule_fixes()


def render(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    return templates.TemplateResponse(request, name, context, status_code=status_code)


def safe_next(target: str | None) -> str:
    """Where to go after login: a path on this server only (never `//host` or a full URL)."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/projects"


async def form_fields(request: Request) -> dict[str, str]:
    """An urlencoded form's fields (the first value of each); anything else has none, so a POST that
    is not one of our forms fails its CSRF or token check. The body size limit applies."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
        return {}
    try:
        text = (await request.body()).decode("utf-8")
        fields = parse_qs(text, max_num_fields=MAX_FORM_FIELDS, strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        raise InvalidInput("the form is not valid UTF-8 urlencoded text") from None
    return {key: values[0] for key, values in fields.items()}


def _redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


# -- login ----------------------------------------------------------------------------------------
@router.get("/")
def home() -> Response:
    return _redirect("/projects")


@router.get("/login")
def login_form(request: Request, next: str | None = None) -> HTMLResponse:
    return render(request, "login.html", next=safe_next(next), error=None, grant=None)


@router.post("/login")
async def login(request: Request) -> Response:
    fields = await form_fields(request)
    target = safe_next(fields.get("next"))
    try:
        grant = await run_in_threadpool(api_of(request).authenticate, fields.get("token", "").strip())
    except Unauthorized as exc:
        log_refusal(request, 401, exc)
        return render(request, "login.html", 401, next=target, error=str(exc), grant=None)
    value, _ = request.app.state.sessions.issue(grant)
    response = _redirect(target)
    response.set_cookie(SESSION_COOKIE, value, max_age=request.app.state.sessions.max_age, **cookie_flags(request))
    return response


@router.post("/logout")
async def logout(request: Request, session: SessionDep) -> Response:
    check_csrf(request, session[1], (await form_fields(request)).get("csrf"))
    response = _redirect("/login")
    response.delete_cookie(SESSION_COOKIE, **cookie_flags(request))
    return response


# -- projects and plans ---------------------------------------------------------------------------
@router.get("/projects")
def projects_page(request: Request, session: SessionDep) -> HTMLResponse:
    grant, csrf = session[0], session[1].csrf
    projects = [project for project in api_of(request).list_projects() if grant.can_see(project["key"])]
    return render(request, "projects.html", grant=grant, csrf=csrf, projects=projects)


@router.get("/projects/{project}")
def project_page(
    request: Request,
    project: str,
    session: SessionDep,
    status: Annotated[str | None, Query()] = None,
    before: Annotated[int | None, Query(ge=1, le=PLAN_ID_MAX)] = None,
) -> HTMLResponse:
    grant = session[0]
    authorize(request, grant, Scope.READ, project=project)
    page = api_of(request).list_plans(project, status or None, PAGE_SIZE, before)
    return render(
        request,
        "project.html",
        grant=grant,
        csrf=session[1].csrf,
        project=project,
        status=status,
        page=page,
        statuses=tuple(RunStatus),
    )


@router.get("/plans/{plan_id}")
def plan_page(request: Request, plan_id: PlanId, session: SessionDep) -> HTMLResponse:
    grant = session[0]
    authorize(request, grant, Scope.READ, plan_id=plan_id)
    api = api_of(request)
    plan = api.plan(plan_id)
    checks = api.checks(plan_id).to_json()
    return render(
        request,
        "plan.html",
        **_plan_context(api, plan, checks),
        grant=grant,
        csrf=session[1].csrf,
        can_submit=grant.scope.includes(Scope.SUBMIT),
    )


def _plan_context(api: Plancheck, plan: dict[str, Any], checks: dict[str, Any]) -> dict[str, Any]:
    results = checks.get("results") or []
    specs = plan["specs"]
    sheets = []
    for spec in specs:
        targets = set(spec.get("targets") or [])
        own = results if len(specs) == 1 or not targets else [r for r in results if r.get("target") in targets]
        sheets.append({"spec": spec, "lines": views.sql_lines(spec["sql"], own)})
    attempts = checks.get("attempts") or []
    return {
        "plan": plan,
        "checks": checks,
        "sheets": sheets,
        "targets": views.target_views(results),
        "counts": level_counts(results),
        "attempts": attempts,
        "attempt_columns": views.attempt_columns(attempts),
        "extras": views.extra_fields(checks),
        "rule_help": _rule_help(),
        "finished": checks.get("status") in FINAL_STATUSES,
    }


@router.get("/plans/{plan_id}/progress")
def plan_progress(request: Request, plan_id: PlanId, session: SessionDep) -> dict[str, Any]:
    """The run's status and targets done, for live.js while the run is unfinished."""
    authorize(request, session[0], Scope.READ, plan_id=plan_id)
    state = api_of(request).progress([plan_id]).get(plan_id)
    return state or {"plan_id": plan_id, "status": None, "finished": True}


async def _plan_action(request: Request, plan_id: int, session: tuple[Grant, Session], action: str) -> Response:
    check_csrf(request, session[1], (await form_fields(request)).get("csrf"))
    await run_in_threadpool(authorize, request, session[0], Scope.SUBMIT, plan_id=plan_id)
    api = api_of(request)
    if action == "rerun":
        await run_in_threadpool(api.rerun, plan_id)
    else:
        await run_in_threadpool(api.cancel, [plan_id])
    return _redirect(f"/plans/{plan_id}")


@router.post("/plans/{plan_id}/rerun")
async def rerun_button(request: Request, plan_id: PlanId, session: SessionDep) -> Response:
    return await _plan_action(request, plan_id, session, "rerun")


@router.post("/plans/{plan_id}/cancel")
async def cancel_button(request: Request, plan_id: PlanId, session: SessionDep) -> Response:
    return await _plan_action(request, plan_id, session, "cancel")
