"""The web application of ``mrigan serve`` (Starlette): the page, its JSON API, the case files.

``create_app(config, make_analyzer)`` builds it; ``mrigan.app.commands.serve`` runs it under
uvicorn, tests drive it in-process (``starlette.testclient``) or on a real port. Routes:

* ``GET /`` the page (``static/``), ``GET /api/health``
* ``GET /api/cases``, ``POST /api/cases`` (multipart field ``file``, or JSON ``{"path": ...}``
  relative to ``--media-root``) -> ``{"id", ...}``, ``GET /api/cases/{id}``,
  ``DELETE /api/cases/{id}`` (cancels a queued or running case, removes a finished one),
  ``GET /api/cases/{id}/zip`` (the case folder as a zip)
* ``GET /api/media?dir=REL``: images and videos (by content) and folders under ``--media-root``
* ``GET /cases/{id}/{file}``: a case's files (``report.html``, ``results.json``, images)

Every request passes :class:`mrigan.app.serve.security.Gate` (token, host, origin, body size);
every path from a request passes :func:`mrigan.app.serve.paths.resolve_under`.
"""

from __future__ import annotations

import contextlib
import mimetypes
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from mrigan import __version__
from mrigan.app.analysis import Analyzer
from mrigan.app.serve.config import ServeConfig
from mrigan.app.serve.intake import CHUNK, Refused, keep_upload, media_listing, pick_file
from mrigan.app.serve.paths import PathRefused, resolve_under
from mrigan.app.serve.security import Gate
from mrigan.app.serve.store import FINISHED, Case, CaseStore
from mrigan.app.serve.views import CaseViews
from mrigan.app.serve.worker import Workers

STATIC = Path(__file__).resolve().parent / "static"
STATIC_FILES = {"page.js": "text/javascript; charset=utf-8", "page.css": "text/css; charset=utf-8"}
PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'")
REPORT_CSP = ("default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; "
              "form-action 'none'; base-uri 'none'; frame-ancestors 'self'")


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


class Api:
    """The handlers, sharing the config, the case store and the workers."""

    def __init__(self, cfg: ServeConfig, store: CaseStore, workers: Workers) -> None:
        self.cfg = cfg
        self.store = store
        self.workers = workers
        self.views = CaseViews(store)

    # -- the page

    async def page(self, request: Request) -> Response:
        return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8",
                            headers={"content-security-policy": PAGE_CSP,
                                     "cache-control": "no-store"})

    async def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC_FILES:
            return error(404, "no such file")
        return FileResponse(STATIC / name, media_type=STATIC_FILES[name],
                            headers={"cache-control": "no-store"})

    # -- the API

    async def health(self, request: Request) -> Response:
        cases = self.store.all()
        return JSONResponse({
            "status": "ok", "version": __version__, "cases": len(cases),
            "queued": sum(c.status == "queued" for c in cases),
            "running": sum(c.status == "running" for c in cases),
            "workers": self.cfg.workers, "media_root": self.cfg.media_root is not None,
            "max_upload_bytes": self.cfg.max_upload_bytes,
            "token_required": self.cfg.token is not None})

    async def list_cases(self, request: Request) -> Response:
        views = await run_in_threadpool(lambda: [self.views.view(c) for c in self.store.all()])
        return JSONResponse({"cases": views})

    async def get_case(self, request: Request) -> Response:
        case = self.store.get(request.path_params["case_id"])
        if case is None:
            return error(404, "no such case")
        return JSONResponse(await run_in_threadpool(self.views.view, case))

    async def delete_case(self, request: Request) -> Response:
        case = self.store.get(request.path_params["case_id"])
        if case is None:
            return error(404, "no such case")
        if case.status in FINISHED:
            await run_in_threadpool(self.store.remove, case)
            return JSONResponse({"id": case.id, "removed": True})
        self.workers.cancel(case)
        done = case.status == "cancelled"
        return JSONResponse({"id": case.id, "status": case.status, "cancel_requested": True},
                            status_code=200 if done else 202)

    async def create_case(self, request: Request) -> Response:
        ctype = request.headers.get("content-type", "")
        try:
            if ctype.startswith("multipart/form-data"):
                case = await self._upload(request)
            elif ctype.startswith("application/json"):
                case = await self._pick(request)
            else:
                return error(415, 'send a multipart form with a "file" field, or JSON '
                                  '{"path": ...} relative to the media root')
        except Refused as exc:
            return error(exc.status, exc.message)
        self.workers.submit(case)
        return JSONResponse(self.views.view(case), status_code=201)

    async def _upload(self, request: Request) -> Case:
        form = await request.form(max_files=1, max_fields=1)
        try:
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise Refused(400, 'no file: send it in the multipart field "file"')
            return await run_in_threadpool(keep_upload, self.store, upload.file, upload.filename)
        finally:
            await form.close()

    async def _pick(self, request: Request) -> Case:
        if self.cfg.media_root is None:
            raise Refused(404, "this server has no --media-root: upload the file instead")
        try:
            data = await request.json()
        except ValueError as exc:
            raise Refused(400, f"the body is not JSON: {exc}") from exc
        rel = data.get("path") if isinstance(data, dict) else None
        if not isinstance(rel, str):
            raise Refused(400, 'expected JSON {"path": "relative/path/under/the/media/root"}')
        return await run_in_threadpool(pick_file, self.store, self.cfg.media_root, rel)

    async def media(self, request: Request) -> Response:
        if self.cfg.media_root is None:
            return error(404, "this server has no --media-root")
        rel = request.query_params.get("dir", "")
        try:
            listing = await run_in_threadpool(media_listing, self.cfg.media_root, rel)
        except Refused as exc:
            return error(exc.status, exc.message)
        return JSONResponse(listing)

    # -- case files

    async def case_file(self, request: Request) -> Response:
        case = self.store.get(request.path_params["case_id"])
        if case is None:
            return error(404, "no such case")
        try:
            path = resolve_under(self.store.case_dir(case.id), request.path_params["path"])
        except PathRefused as exc:
            return error(403, exc.problem)
        if not path.is_file():
            return error(404, "no such file in this case")
        media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        headers = {"cache-control": "no-store"}
        if media_type == "text/html":
            media_type = "text/html; charset=utf-8"
            headers["content-security-policy"] = REPORT_CSP
        return FileResponse(path, media_type=media_type, headers=headers)

    async def case_zip(self, request: Request) -> Response:
        case = self.store.get(request.path_params["case_id"])
        if case is None:
            return error(404, "no such case")
        if case.status not in FINISHED:
            return error(409, f"the case is {case.status}: its folder is still being written")
        spool = await run_in_threadpool(self.store.zip, case)
        return StreamingResponse(
            _chunks(spool), media_type="application/zip",
            headers={"content-disposition": f'attachment; filename="mrigan-case-{case.id}.zip"'})


def _chunks(spool: IO[bytes]) -> Iterator[bytes]:
    with contextlib.closing(spool):
        while chunk := spool.read(CHUNK):
            yield chunk


def create_app(cfg: ServeConfig, make_analyzer: Callable[[], Analyzer],
               first: Analyzer | None = None) -> Starlette:
    """The application for ``cfg`` (already checked: :func:`mrigan.app.serve.config.checked`).
    Cases left on disk are read back now; the workers start with the application (its
    lifespan) and stop with it."""
    store = CaseStore(cfg.cases)
    queued = store.load()
    workers = Workers(store, make_analyzer, cfg.workers, first)
    api = Api(cfg, store, workers)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        workers.start()
        for case in queued:
            workers.submit(case)
        try:
            yield
        finally:
            await run_in_threadpool(workers.stop)

    routes = [
        Route("/", api.page),
        Route("/static/{name}", api.static),
        Route("/api/health", api.health),
        Route("/api/media", api.media),
        Route("/api/cases", api.list_cases, methods=["GET"]),
        Route("/api/cases", api.create_case, methods=["POST"]),
        Route("/api/cases/{case_id}", api.get_case, methods=["GET"]),
        Route("/api/cases/{case_id}", api.delete_case, methods=["DELETE"]),
        Route("/api/cases/{case_id}/zip", api.case_zip),
        Route("/cases/{case_id}/{path:path}", api.case_file),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.store, app.state.workers, app.state.config = store, workers, cfg
    app.add_middleware(Gate, token=cfg.token, max_body=cfg.max_upload_bytes,
                       allowed_hosts=cfg.allowed_hosts())
    return app
