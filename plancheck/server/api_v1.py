"""The JSON API under /api/v1: submit plans, read or long-poll their checks, rerun, cancel, list.

Every route authenticates a bearer token, checks its scope and project, then calls the Python API
(`plancheck.api.Plancheck`) and nothing else. Request bodies are pydantic models that refuse
unknown fields.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from starlette.concurrency import run_in_threadpool

from plancheck.api import MAX_PAGE
from plancheck.api.access import Scope
from plancheck.api.present import json_text
from plancheck.core.states import RunStatus
from plancheck.server.auth import GrantDep, api_of, authorize

MAX_WAIT_SECONDS = 60.0
PLAN_ID_MAX = 2**63 - 1

router = APIRouter(prefix="/api/v1", tags=["plans"])
PlanId = Annotated[int, Path(ge=1, le=PLAN_ID_MAX, description="Plan id.")]
ProjectKey = Annotated[str, Path(max_length=200, description="Project key.")]


def _storable(value: str) -> str:
    """Refuse text PostgreSQL cannot store: lone surrogates (not UTF-8) and NUL characters."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"not valid UTF-8 text (character {exc.start} is a lone surrogate)") from None
    if "\x00" in value:
        raise ValueError("contains NUL characters")
    return value


Text = Annotated[str, AfterValidator(_storable)]


class JsonDocument(Response):
    """JSON written by the CLI's serializer, so a document here is byte-for-byte what `--json` prints
    (datetimes as ISO 8601 with +00:00, every field of the document kept)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return json_text(content).encode()


class PlanIn(BaseModel):
    """A plan: its SQL and either target databases or one database group of the project."""

    model_config = ConfigDict(extra="forbid")
    sql: Text = Field(description="The plan's SQL (UTF-8, at most 16 MiB).")
    targets: list[Text] | None = Field(None, description='Target databases as "INSTANCE/DATABASE".')
    group: Text | None = Field(None, description="A database group of the project.")
    title: Text | None = Field(None, max_length=500, description="Plan title.")

    @model_validator(mode="after")
    def _targets_or_group(self) -> PlanIn:
        if bool(self.targets) == bool(self.group):
            raise ValueError('give either "targets" (a non-empty list) or "group", not both')
        return self


class PlanCreated(BaseModel):
    plan_id: int


class Requeued(BaseModel):
    plan_id: int
    status: str


class Canceled(BaseModel):
    plan_id: int
    canceled: bool


@router.post("/projects/{project}/plans", status_code=201, response_model=PlanCreated)
def create_plan(
    project: ProjectKey, plan: PlanIn, grant: GrantDep, request: Request, response: Response
) -> PlanCreated:
    """Store a plan; its checks start at once. Needs submit scope."""
    authorize(request, grant, Scope.SUBMIT, project=project)
    plan_id = api_of(request).create_plan(project, plan.sql, plan.targets or (), plan.group, plan.title)
    response.headers["Location"] = f"/api/v1/plans/{plan_id}/checks"
    return PlanCreated(plan_id=plan_id)


@router.get("/plans/{plan_id}/checks", response_class=JsonDocument)
async def plan_checks(
    plan_id: PlanId,
    grant: GrantDep,
    request: Request,
    wait: Annotated[
        float,
        Query(
            ge=0,
            description=f"Long-poll: wait up to this many seconds (at most "
            f"{MAX_WAIT_SECONDS:g}) for the run to finish.",
        ),
    ] = 0,
) -> JsonDocument:
    """The plan's checks, the same document as `plancheck plan checks --json`. Needs read scope."""
    await run_in_threadpool(authorize, request, grant, Scope.READ, plan_id=plan_id)
    api = api_of(request)
    checks = await run_in_threadpool(api.checks, plan_id)
    if wait > 0 and not checks.finished:
        await request.app.state.watcher.wait(plan_id, min(wait, MAX_WAIT_SECONDS))
        checks = await run_in_threadpool(api.checks, plan_id)
    return JsonDocument(checks.to_json())


@router.post("/plans/{plan_id}/rerun", status_code=202, response_model=Requeued)
def rerun(plan_id: PlanId, grant: GrantDep, request: Request) -> Requeued:
    """Run the plan's checks again (a run in progress is superseded). Needs submit scope."""
    authorize(request, grant, Scope.SUBMIT, plan_id=plan_id)
    api_of(request).rerun(plan_id)
    return Requeued(plan_id=plan_id, status=RunStatus.AVAILABLE)


@router.post("/plans/{plan_id}/cancel", response_model=Canceled)
def cancel(plan_id: PlanId, grant: GrantDep, request: Request) -> Canceled:
    """Cancel the plan's unfinished checks; `canceled` is false when they had finished. Needs submit scope."""
    authorize(request, grant, Scope.SUBMIT, plan_id=plan_id)
    return Canceled(plan_id=plan_id, canceled=bool(api_of(request).cancel([plan_id])))


@router.get("/projects", response_class=JsonDocument)
def projects(grant: GrantDep, request: Request) -> JsonDocument:
    """The projects this token may see. Needs read scope."""
    grant.require(Scope.READ, grant.project)
    visible = [project for project in api_of(request).list_projects() if grant.can_see(project["key"])]
    return JsonDocument({"projects": visible})


@router.get("/projects/{project}/plans", response_class=JsonDocument)
def project_plans(
    project: ProjectKey,
    grant: GrantDep,
    request: Request,
    status: Annotated[str | None, Query(description="Only plans whose run has this status.")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    before: Annotated[int | None, Query(ge=1, le=PLAN_ID_MAX, description="The previous page's next_before.")] = None,
) -> JsonDocument:
    """The project's plans, newest first, with status and finding counts. Needs read scope."""
    authorize(request, grant, Scope.READ, project=project)
    return JsonDocument(api_of(request).list_plans(project, status, limit, before))
