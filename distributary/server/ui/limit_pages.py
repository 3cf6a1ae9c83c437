"""The web UI's concurrency-limits page: global concurrency limits (and rate limits) and tag-based task-run limits,
each with its limit, occupied slots and whether it is active; a form that creates one and a button that deletes
one (same-origin POSTs, answered with a redirect to the page, as the deployment page's "Run" form)."""
from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from ...errors import ConfigurationError, ObjectNotFound
from ...schemas.concurrency import TAG_PREFIX
from .deployment_pages import _same_origin
from .pages import _page, _storage, _uuid_or_404, html_errors

router = APIRouter(include_in_schema=False)
PAGE = "/concurrency-limits"


@router.get(PAGE, response_class=HTMLResponse)
@html_errors
def concurrency_limits(request: Request, error: str | None = None, form: dict[str, str] | None = None) -> HTMLResponse:
    st = _storage(request)
    limits = st.read_concurrency_limits()
    tagged = [g for g in limits if g.name.startswith(TAG_PREFIX)]
    holders = st.read_concurrency_holders([g.id for g in tagged])
    task_runs = {str(g.id): [h["id"] for h in holders.get(str(g.id), [])
                             if isinstance(h, dict) and h.get("type") == "task_run" and h.get("id")] for g in tagged}
    return _page("concurrency_limits.html", "concurrency-limits", status=422 if error else 200, error=error,
                 form=form or {}, global_limits=[g for g in limits if not g.name.startswith(TAG_PREFIX)],
                 tag_limits=tagged, tag_prefix=TAG_PREFIX, task_runs=task_runs)


def _form(body: bytes) -> dict[str, str]:
    return {k: v[0].strip() for k, v in parse_qs(body.decode("utf-8", "replace")).items() if v}


@router.post(PAGE, response_class=HTMLResponse)
async def create_limit(request: Request) -> Any:
    """The "Create" form: a global limit named `name`, or the task-run limit of the tag `name`."""
    return _create(request, _form(await request.body()))


@html_errors
def _create(request: Request, form: dict[str, str]) -> Any:
    if not _same_origin(request):
        raise HTTPException(403, "a concurrency limit can only be changed from this server's own pages")
    st, name, kind = _storage(request), form.get("name", ""), form.get("kind", "global")
    try:
        limit = int(form.get("limit", ""))
    except ValueError:
        return concurrency_limits(request, error=f"The limit must be a whole number, not {form.get('limit')!r}.",
                                  form=form)
    try:
        if not name:
            raise ConfigurationError("a concurrency limit needs a name (a tag, for a task-run limit)")
        if kind == "tag":
            st.create_tag_concurrency_limit(name, limit)
        elif name.startswith(TAG_PREFIX):
            raise ConfigurationError(f"names starting with {TAG_PREFIX!r} are task-run limits: choose 'tag' and "
                                     f"give the tag alone")
        else:
            st.create_concurrency_limit(name, limit)
    except ConfigurationError as exc:
        return concurrency_limits(request, error=str(exc), form=form)
    return RedirectResponse(PAGE, status_code=303)


@router.post(PAGE + "/{limit_id}/delete", response_class=HTMLResponse)
@html_errors
def delete_limit(request: Request, limit_id: str) -> Any:
    if not _same_origin(request):
        raise HTTPException(403, "a concurrency limit can only be changed from this server's own pages")
    lid = _uuid_or_404(limit_id, "concurrency limit")
    try:
        _storage(request).delete_concurrency_limit(lid)
    except ObjectNotFound as exc:
        raise HTTPException(404, str(exc)) from None
    return RedirectResponse(PAGE, status_code=303)
