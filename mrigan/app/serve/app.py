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
import json
import mimetypes
import os
import shutil
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from mrigan import __version__
from mrigan.app.analysis import Analyzer
from mrigan.app.serve.config import ServeConfig
from mrigan.app.serve.paths import PathRefused, resolve_under
from mrigan.app.serve.security import Gate
from mrigan.app.serve.store import FINISHED, Case, CaseStore, new_id
from mrigan.app.serve.worker import Workers
from mrigan.media import is_image, sniff_file

STATIC = Path(__file__).resolve().parent / "static"
STATIC_FILES = {"page.js": "text/javascript; charset=utf-8", "page.css": "text/css; charset=utf-8"}
PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'")
REPORT_CSP = ("default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; "
              "form-action 'none'; base-uri 'none'; frame-ancestors 'self'")
MEDIA_LIST_LIMIT = 1000
CHUNK = 1 << 20


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def display_name(filename: str | None) -> str:
    """An uploaded file's name as shown: its last component, control characters dropped."""
    base = PurePosixPath((filename or "").replace("\\", "/")).name
    clean = "".join(c for c in base if c.isprintable())[:200]
    return clean or "upload"


def safe_stem(name: str) -> str:
    """A file-system-safe stem for the stored upload (the suffix comes from the content)."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(name).stem)[:60] or "upload"


class Api:
    """The handlers, sharing the config, the case store and the workers."""

    def __init__(self, cfg: ServeConfig, store: CaseStore, workers: Workers) -> None:
        self.cfg = cfg
        self.store = store
        self.workers = workers
        self._summaries: dict[str, tuple[tuple[int, int], list[dict[str, Any]], str | None]] = {}

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
        views = await run_in_threadpool(lambda: [self.view(c) for c in self.store.all()])
        return JSONResponse({"cases": views})

    async def get_case(self, request: Request) -> Response:
        case = self.store.get(request.path_params["case_id"])
        if case is None:
            return error(404, "no such case")
        return JSONResponse(await run_in_threadpool(self.view, case))

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
        except _Refused as exc:
            return error(exc.status, exc.message)
        self.workers.submit(case)
        return JSONResponse(self.view(case), status_code=201)

    async def _upload(self, request: Request) -> Case:
        form = await request.form(max_files=1, max_fields=1)
        try:
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise _Refused(400, 'no file: send it in the multipart field "file"')
            name = display_name(upload.filename)
            case_id = new_id()
            folder = self.store.upload_dir(case_id)
            return await run_in_threadpool(self._keep_upload, upload, name, case_id, folder)
        finally:
            await form.close()

    def _keep_upload(self, upload: UploadFile, name: str, case_id: str, folder: Path) -> Case:
        folder.mkdir(parents=True)
        part = folder / ".upload.part"
        try:
            with open(part, "wb") as fh:
                shutil.copyfileobj(upload.file, fh, CHUNK)
            found = sniff_file(part)
            if found is None:
                raise _Refused(415, f"{name}: not an image or video (its content is no known "
                                    "image or video format; the name does not count)")
            kind, suffix = found
            dest = folder / f"{safe_stem(name)}{suffix}"
            os.replace(part, dest)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return self.store.add(Case(id=case_id, name=name, input=str(dest), kind=kind,
                                   source="upload"))

    async def _pick(self, request: Request) -> Case:
        if self.cfg.media_root is None:
            raise _Refused(404, "this server has no --media-root: upload the file instead")
        try:
            data = await request.json()
        except ValueError as exc:
            raise _Refused(400, f"the body is not JSON: {exc}") from exc
        rel = data.get("path") if isinstance(data, dict) else None
        if not isinstance(rel, str):
            raise _Refused(400, 'expected JSON {"path": "relative/path/under/the/media/root"}')
        return await run_in_threadpool(self._pick_file, rel)

    def _pick_file(self, rel: str) -> Case:
        path = self._under_media(rel)
        if not path.is_file():
            raise _Refused(404, f"{rel}: no such file under the media root")
        found = sniff_file(path)
        if found is None:
            raise _Refused(415, f"{rel}: not an image or video (its content is no known image "
                                "or video format)")
        kind = found[0]
        if (kind == "image") != is_image(path):
            raise _Refused(415, f"{rel}: its content is {'an image' if kind == 'image' else 'a video'}"
                                " but its name says otherwise: rename the file")
        case_id = new_id()
        return self.store.add(Case(id=case_id, name=rel, input=str(path), kind=kind,
                                   source="media-root"))

    def _under_media(self, rel: str) -> Path:
        assert self.cfg.media_root is not None
        try:
            return resolve_under(self.cfg.media_root, rel)
        except PathRefused as exc:
            raise _Refused(403, f"{rel}: {exc.problem}") from exc

    async def media(self, request: Request) -> Response:
        if self.cfg.media_root is None:
            return error(404, "this server has no --media-root")
        rel = request.query_params.get("dir", "")
        try:
            listing = await run_in_threadpool(self._listing, rel)
        except _Refused as exc:
            return error(exc.status, exc.message)
        return JSONResponse(listing)

    def _listing(self, rel: str) -> dict[str, Any]:
        root = self.cfg.media_root
        assert root is not None
        folder = root if rel in ("", ".") else self._under_media(rel)
        if not folder.is_dir():
            raise _Refused(404, f"{rel}: no such folder under the media root")
        entries = []
        for child in sorted(folder.iterdir(), key=lambda p: p.name.lower()):
            if child.name.startswith(".") or child.is_symlink():
                continue
            path = child.relative_to(root).as_posix()
            if child.is_dir():
                entries.append({"name": child.name, "path": path, "kind": "folder"})
            elif child.is_file():
                found = _sniff_quietly(child)
                if found is not None and (found[0] == "image") == is_image(child):
                    entries.append({"name": child.name, "path": path, "kind": found[0],
                                    "size": child.stat().st_size})
            if len(entries) >= MEDIA_LIST_LIMIT:
                break
        parent = None if folder == root else folder.parent.relative_to(root).as_posix()
        return {"dir": "" if folder == root else folder.relative_to(root).as_posix(),
                "parent": "" if parent == "." else parent, "entries": entries}

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
        spool = await run_in_threadpool(_zip_folder, self.store.case_dir(case.id), case.id)
        return StreamingResponse(
            _chunks(spool), media_type="application/zip",
            headers={"content-disposition": f'attachment; filename="mrigan-case-{case.id}.zip"'})

    # -- what the API says about a case

    def view(self, case: Case) -> dict[str, Any]:
        now = time.time()
        live = case.live
        running = case.status == "running"
        progress = 1.0 if case.status == "done" else float(live.get("progress", 0.0))
        elapsed = None if case.started is None else (case.finished or now) - case.started
        eta = None
        if running and elapsed is not None and progress >= 0.02:
            eta = elapsed * (1.0 - progress) / progress
        out = self.store.case_dir(case.id)
        inputs, warning = self._summary(case, out)
        has_report = (out / "report.html").is_file() and case.status in FINISHED
        has_results = (out / "results.json").is_file() and case.status in FINISHED
        return {
            "id": case.id, "name": case.name, "kind": case.kind, "source": case.source,
            "status": case.status, "progress": round(progress, 4), "error": case.error,
            "phase": live.get("phase") if running else None,
            "frames_scanned": live.get("frames_scanned"), "frames_done": live.get("frames_done"),
            "frames_total": live.get("frames_total"),
            "faces": live.get("faces"), "created": case.created, "elapsed": elapsed, "eta": eta,
            "cancel_requested": case.cancel_requested, "inputs": inputs, "warning": warning,
            "report": f"/cases/{case.id}/report.html" if has_report else None,
            "results": f"/cases/{case.id}/results.json" if has_results else None,
            "zip": f"/api/cases/{case.id}/zip" if case.status in FINISHED else None,
        }

    def _summary(self, case: Case, out: Path) -> tuple[list[dict[str, Any]], str | None]:
        """The inputs of a case's results.json (cached until the file changes)."""
        path = out / "results.json"
        try:
            st = path.stat()
        except FileNotFoundError:
            return [], None
        key = (st.st_mtime_ns, st.st_size)
        cached = self._summaries.get(case.id)
        if cached is not None and cached[0] == key:
            return cached[1], cached[2]
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            return [], None  # being replaced: atomic writes make this rare; next poll reads it
        inputs = []
        for e in data.get("inputs", []):
            verdict = e.get("verdict") or {}
            inputs.append({"path": case.name, "status": e.get("status"),
                           "verdict": verdict.get("label"), "score": verdict.get("score"),
                           "faces": e.get("faces", 0), "frames_read": e.get("frames_read", 0),
                           "reason": (e.get("reason") or "").replace(case.input, case.name) or None})
        warning = ((data.get("generator") or {}).get("card") or {}).get("warning") or None
        self._summaries[case.id] = (key, inputs, warning)
        return inputs, warning


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _sniff_quietly(path: Path) -> tuple[str, str] | None:
    try:
        return sniff_file(path)
    except OSError:
        return None  # unreadable: not offered


def _zip_folder(folder: Path, case_id: str):
    """The folder's files (no links) in a zip, spooled to disk past 32 MB; rewound."""
    spool = tempfile.SpooledTemporaryFile(max_size=32 << 20)
    with zipfile.ZipFile(spool, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and not path.is_symlink() and not path.name.startswith("."):
                zf.write(path, f"{case_id}/{path.relative_to(folder).as_posix()}")
    spool.seek(0)
    return spool


def _chunks(spool) -> Iterator[bytes]:
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
