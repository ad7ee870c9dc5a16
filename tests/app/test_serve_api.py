"""`mrigan serve`'s JSON API, in-process (Starlette's TestClient), on real media and the real
analysis (a tiny generator, few frames): every endpoint, and every refusal the issue lists -
traversal, symbolic links, absolute paths, oversize bodies, wrong tokens, non-media files,
foreign hosts and origins - plus failed and cancelled cases and a restart."""

from __future__ import annotations

import io
import json
import os
import time
import zipfile
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="mrigan serve needs the extra: pip install 'mrigan[serve]'")
pytest.importorskip("multipart", reason="mrigan serve needs the extra: pip install 'mrigan[serve]'")
pytest.importorskip("httpx", reason="the in-process tests need httpx (mrigan[serve-test])")

from _gan_setup import write_tiny_generator  # noqa: E402
from _serve_setup import fast_analyzer, make_app  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402

from mrigan.app.cli import main as cli  # noqa: E402
from mrigan.app.serve import ServeConfig, ServeError, checked  # noqa: E402

pytestmark = pytest.mark.usefixtures("two_torch_threads")

BASE = "http://127.0.0.1:8765"
TOKEN = "a-test-token-of-enough-length"


@pytest.fixture(scope="module")
def analyzer(tmp_path_factory):
    gen = write_tiny_generator(tmp_path_factory.mktemp("serve_gen") / "gen.safetensors")
    return fast_analyzer(gen, max_frames=1)


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("serve_cases") / "cases"


@pytest.fixture(scope="module")
def media(tmp_path_factory, ff_examples, ffpp_root) -> Path:
    """A media root: a real image and video (copied: the root holds links to test refusals),
    a link to a file outside, a linked folder, a text file and a PNG named .mp4."""
    root = tmp_path_factory.mktemp("serve_media")
    (root / "case 1").mkdir()
    (root / "case 1" / "face.png").write_bytes((ff_examples / "ex_deepfakes.png").read_bytes())
    (root / "notes.txt").write_text("not media\n")
    (root / "image_named.mp4").write_bytes((ff_examples / "ex_deepfakes.png").read_bytes())
    (root / "outside.mp4").symlink_to(ffpp_root / "original_sequences/youtube/c23/videos/519.mp4")
    (root / "linked").symlink_to(ff_examples, target_is_directory=True)
    return root


@pytest.fixture(scope="module")
def client(analyzer, cases, media):
    with TestClient(make_app(analyzer, cases, media_root=media), base_url=BASE) as c:
        yield c


def wait_finished(client, case_id: str, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        view = client.get(f"/api/cases/{case_id}").json()
        if view["status"] in ("done", "failed", "cancelled"):
            return view
        time.sleep(0.1)
    raise AssertionError(f"case {case_id} did not finish in {timeout} s: {view}")


def upload(client, name: str, data: bytes, **kwargs):
    return client.post("/api/cases", files={"file": (name, data, "application/octet-stream")},
                       **kwargs)


# ----------------------------------------------------------------------------- the endpoints


def test_health_page_and_static_files(client):
    health = client.get("/api/health").json()
    assert health["status"] == "ok" and health["workers"] == 1 and health["media_root"] is True
    assert health["token_required"] is False
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    assert '<script src="/static/page.js"' in page.text
    assert client.get("/static/page.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/static/index.html").status_code == 404  # only the page's own files


def test_uploaded_image_is_analysed_and_its_files_served(client, ff_examples, cases):
    r = upload(client, "suspect.png", (ff_examples / "ex_deepfakes.png").read_bytes())
    assert r.status_code == 201, r.text
    case_id = r.json()["id"]
    assert len(case_id) == 16 and int(case_id, 16) >= 0  # random hex, not a name or a counter
    view = wait_finished(client, case_id)
    assert view["status"] == "done" and view["progress"] == 1.0 and view["error"] is None
    assert view["name"] == "suspect.png" and view["kind"] == "image"
    [entry] = view["inputs"]
    assert entry["path"] == "suspect.png" and entry["status"] == "analysed"
    assert entry["verdict"] in ("fake", "real") and 0.0 <= entry["score"] <= 1.0
    assert entry["faces"] >= 1
    assert [c["id"] for c in client.get("/api/cases").json()["cases"]].count(case_id) == 1

    report = client.get(view["report"])
    assert report.status_code == 200 and report.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in report.headers["content-security-policy"]
    assert 'data-verdict="' + entry["verdict"] + '"' in report.text
    results = client.get(view["results"]).json()
    assert results == json.loads((cases / case_id / "results.json").read_text())
    mri = results["inputs"][0]["frames"][0]["faces"][0]["files"]["mri"]
    png = client.get(f"/cases/{case_id}/{mri}")
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content.startswith(b"\x89PNG")

    archive = client.get(view["zip"])
    assert archive.headers["content-type"] == "application/zip"
    names = zipfile.ZipFile(io.BytesIO(archive.content)).namelist()
    assert {f"{case_id}/report.html", f"{case_id}/results.json", f"{case_id}/{mri}"} <= set(names)


def test_content_decides_the_kind_never_the_name(client, ff_examples, ffpp_root, cases):
    png = (ff_examples / "ex_deepfakes.png").read_bytes()
    as_image = upload(client, "holiday.mp4", png)  # a PNG named .mp4: an image
    assert as_image.status_code == 201 and as_image.json()["kind"] == "image"
    stored = Path(client.app.state.store.get(as_image.json()["id"]).input)
    assert stored.name == "holiday.png"
    wait_finished(client, as_image.json()["id"])
    before = sorted((cases / ".uploads").iterdir())
    for name, data in [("clip.mp4", b"#!/bin/sh\necho not a video\n" * 10),
                       ("face.png", b"GIF89a" + bytes(100)), ("empty.mp4", b"")]:
        r = upload(client, name, data)
        assert r.status_code == 415, (name, r.text)
        assert name in r.json()["error"] and "not an image or video" in r.json()["error"]
    assert sorted((cases / ".uploads").iterdir()) == before  # nothing kept of a refused upload


def test_media_root_listing_and_pick(client, media):
    listing = client.get("/api/media").json()
    shown = {e["name"]: e["kind"] for e in listing["entries"]}
    # links, the text file and the PNG named .mp4 are not offered
    assert shown == {"case 1": "folder"} and listing["parent"] is None
    inner = client.get("/api/media", params={"dir": "case 1"}).json()
    assert inner["parent"] == "" and [e["path"] for e in inner["entries"]] == ["case 1/face.png"]
    r = client.post("/api/cases", json={"path": "case 1/face.png"})
    assert r.status_code == 201 and r.json()["source"] == "media-root"
    view = wait_finished(client, r.json()["id"])
    assert view["status"] == "done" and view["inputs"][0]["path"] == "case 1/face.png"
    assert sorted(p.name for p in (media / "case 1").iterdir()) == ["face.png"]  # read only


@pytest.mark.parametrize(("path", "status", "words"), [
    ("../serve_media/case 1/face.png", 403, "'..'"),
    ("case 1/../../etc/passwd", 403, "'..'"),
    ("/etc/passwd", 403, "absolute"),
    ("outside.mp4", 403, "symbolic link"),
    ("linked/ex_deepfakes.png", 403, "symbolic link"),
    (".hidden.mp4", 403, "hidden"),
    ("notes.txt", 415, "not an image or video"),
    ("image_named.mp4", 415, "rename"),
    ("case 1/missing.mp4", 404, "no such file"),
    ("case 1", 404, "no such file"),
])
def test_media_pick_refusals(client, path, status, words):
    r = client.post("/api/cases", json={"path": path})
    assert r.status_code == status and words in r.json()["error"], r.text


def test_media_listing_refusals(client):
    assert client.get("/api/media", params={"dir": "../"}).status_code == 403
    assert client.get("/api/media", params={"dir": "/etc"}).status_code == 403
    assert client.get("/api/media", params={"dir": "linked"}).status_code == 403
    assert client.get("/api/media", params={"dir": "nothing"}).status_code == 404


def test_case_file_refusals(client, cases):
    case_id = client.get("/api/cases").json()["cases"][-1]["id"]
    folder = cases / case_id
    (folder / "passwd_link").symlink_to("/etc/passwd")
    try:
        for rel in ("%2e%2e/%2e%2e/etc/passwd", "..%2fcase.json", "%2fetc%2fpasswd",
                    "passwd_link", "%2e%2e/.uploads"):
            r = client.get(f"/cases/{case_id}/{rel}")
            assert r.status_code == 403, (rel, r.status_code, r.text)
            assert "root:" not in r.text
    finally:
        (folder / "passwd_link").unlink()
    assert client.get(f"/cases/{case_id}/nothing.html").status_code == 404
    assert client.get("/cases/0123456789abcdef/report.html").status_code == 404
    assert client.get("/cases/..%2f..%2fetc/passwd").status_code in (403, 404)
    assert client.get("/api/cases/not-a-case").status_code == 404
    assert client.delete("/api/cases/0123456789abcdef").status_code == 404


def test_bad_requests(client):
    assert client.post("/api/cases", content=b"x", headers={"content-type": "text/plain"}
                       ).status_code == 415
    assert client.post("/api/cases", content=b"{not json",
                       headers={"content-type": "application/json"}).status_code == 400
    assert client.post("/api/cases", json={"file": "x"}).status_code == 400
    assert client.post("/api/cases", data={"other": "x"},
                       files={"nofile": ("a.png", b"x")}).status_code == 400


def test_host_and_origin_refusals(client):
    evil = client.get("/api/health", headers={"host": "evil.example:8765"})
    assert evil.status_code == 421  # DNS rebinding: only loopback names on loopback
    assert client.get("/api/health", headers={"host": "localhost:8765"}).status_code == 200
    r = client.post("/api/cases", json={"path": "case 1/face.png"},
                    headers={"origin": "http://evil.example"})
    assert r.status_code == 403 and "another site" in r.json()["error"]


# ----------------------------------------------------------------------------- other servers


def test_oversize_uploads_are_refused(analyzer, tmp_path, ffpp_root):
    video = (ffpp_root / "original_sequences/youtube/c23/videos/519.mp4").read_bytes()
    with TestClient(make_app(analyzer, tmp_path / "cases", max_upload_bytes=100_000),
                    base_url=BASE) as c:
        r = upload(c, "519.mp4", video)
        assert r.status_code == 413 and "100000 bytes" in r.json()["error"]

        def chunks():  # no Content-Length: counted while it streams
            yield b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.mp4\"\r\n\r\n"
            for i in range(0, len(video), 65536):
                yield video[i:i + 65536]
            yield b"\r\n--b--\r\n"

        r = c.post("/api/cases", content=chunks(),
                   headers={"content-type": "multipart/form-data; boundary=b"})
        assert r.status_code == 413
        assert c.get("/api/cases").json()["cases"] == []
    assert not any((tmp_path / "cases" / ".uploads").glob("*/*"))


def test_token_is_required_when_given(analyzer, tmp_path):
    app = make_app(analyzer, tmp_path / "cases", token=TOKEN)
    with TestClient(app, base_url=BASE) as c:
        assert c.get("/api/health").status_code == 401
        assert c.get("/").status_code == 401
        assert c.get("/api/health", headers={"x-mrigan-token": "wrong" * 5}).status_code == 401
        assert c.get("/?token=wrong").status_code == 401
        assert c.get("/api/health", headers={"x-mrigan-token": TOKEN}).status_code == 200
        assert c.get("/api/health",
                     headers={"authorization": f"Bearer {TOKEN}"}).status_code == 200
        login = c.get(f"/?token={TOKEN}", follow_redirects=False)
        assert login.status_code == 303 and login.headers["location"] == "/"
        assert "HttpOnly" in login.headers["set-cookie"]
        assert "SameSite=Strict" in login.headers["set-cookie"]
        assert c.get("/api/health").status_code == 200  # the cookie from the login
        c.cookies.clear()
        assert c.get("/api/cases").status_code == 401


def test_binding_beyond_loopback_needs_a_token(tmp_path, capsys):
    cfg, generated = checked(ServeConfig(cases=tmp_path / "c", host="0.0.0.0"))
    assert generated and len(cfg.token) >= 16 and cfg.allowed_hosts() is None
    cfg, generated = checked(ServeConfig(cases=tmp_path / "c", host="0.0.0.0", token=TOKEN))
    assert not generated and cfg.token == TOKEN
    cfg, generated = checked(ServeConfig(cases=tmp_path / "c"))
    assert cfg.token is None and not generated and "localhost" in cfg.allowed_hosts()
    for bad in (dict(token="short"), dict(workers=0), dict(media_root=tmp_path),
                dict(media_root=tmp_path / "missing")):
        with pytest.raises(ServeError):
            checked(ServeConfig(cases=tmp_path / "c", **bad))
    (tmp_path / "file").write_text("x")
    assert cli(["serve", "--cases", str(tmp_path / "file")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mrigan serve: error:") and "--cases" in err[0]


@pytest.mark.parametrize("name,bad,edges,argv,message", [
    ("workers", 0, (1, 8), ["--workers", "0"], "--workers: 0 is below the minimum 1"),
    ("port", 65536, (0, 65535), ["--port", "65536"], "--port: 65536 is above the maximum 65535"),
    ("max_upload_bytes", 0, (1,), ["--max-upload-mb", "-3"],
     "--max-upload-mb: -3 must be greater than 0"),
])
def test_serve_ranges_are_field_bounds_that_errors_name_by_flag(tmp_path, capsys, name, bad,
                                                                 edges, argv, message):
    """The ranges live in ServeConfig's ``bounds`` metadata: built in Python, a value outside
    is a ServeError naming the field; on the command line one line naming the flag, exit 2,
    before anything is created."""
    with pytest.raises(ServeError, match=rf"^ServeConfig\.{name}: {bad} "):
        ServeConfig(cases=tmp_path / "c", **{name: bad})
    for good in edges:
        assert getattr(ServeConfig(cases=tmp_path / "c", **{name: good}), name) == good
    assert cli(["serve", "--cases", str(tmp_path / "c"), *argv]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"mrigan serve: error: {message}"]
    assert not (tmp_path / "c").exists()


def test_failed_cases_show_one_line_and_the_server_goes_on(analyzer, tmp_path, ffpp_root):
    from skimage import data

    from mrigan.fileio import atomic_save_image

    atomic_save_image(tmp_path / "coffee.png", data.coffee())  # no face
    video = (ffpp_root / "original_sequences/youtube/c23/videos/519.mp4").read_bytes()
    with TestClient(make_app(analyzer, tmp_path / "cases"), base_url=BASE) as c:
        no_face = upload(c, "coffee.png", (tmp_path / "coffee.png").read_bytes()).json()["id"]
        broken = upload(c, "partial.mp4", video[:2000]).json()["id"]
        a, b = wait_finished(c, no_face), wait_finished(c, broken)
        assert a["status"] == "failed" and a["error"] == "no_face: no face found in 1 frame(s)"
        assert b["status"] == "failed" and b["error"].startswith("unreadable: ")
        assert "partial.mp4" in b["error"] and ".uploads" not in b["error"]
        for view in (a, b):
            assert "\n" not in view["error"] and view["report"]  # the report says why too
        assert c.get("/api/health").json()["status"] == "ok"


def test_cancel_queued_and_running_cases_then_remove(tmp_path, analyzer, ffpp_root):
    video = (ffpp_root / "original_sequences/youtube/c23/videos/519.mp4").read_bytes()
    slow = fast_analyzer(Path(analyzer.generator_info["path"]), every=1)  # 751 frames
    cases = tmp_path / "cases"
    with TestClient(make_app(slow, cases), base_url=BASE) as c:
        running = upload(c, "long.mp4", video).json()["id"]
        queued = upload(c, "next.mp4", video).json()["id"]
        deadline = time.monotonic() + 60
        while True:  # until its frames are being decoded: mid-analysis
            view = c.get(f"/api/cases/{running}").json()
            if view["status"] == "running" and view["progress"] > 0:
                break
            assert time.monotonic() < deadline and view["status"] in ("queued", "running")
            time.sleep(0.05)
        assert view["phase"] == "finding faces" and view["frames_total"] == 751
        assert view["frames_scanned"] >= 1 and view["frames_done"] == 0
        r = c.delete(f"/api/cases/{queued}")
        assert r.status_code == 200 and r.json()["status"] == "cancelled"
        r = c.delete(f"/api/cases/{running}")
        assert r.status_code == 202 and r.json()["cancel_requested"] is True
        started = time.monotonic()
        view = wait_finished(c, running, timeout=30)
        assert view["status"] == "cancelled" and time.monotonic() - started < 15
        assert c.get(f"/api/cases/{queued}").json()["status"] == "cancelled"  # never ran
        assert not (cases / queued / "results.json").exists()
        for case_id in (running, queued):
            r = c.delete(f"/api/cases/{case_id}")
            assert r.status_code == 200 and r.json()["removed"] is True
            assert not (cases / case_id).exists() and not (cases / ".uploads" / case_id).exists()
        assert c.get("/api/cases").json()["cases"] == []
        stopped = upload(c, "stopped.mp4", video).json()["id"]
        while c.get(f"/api/cases/{stopped}").json()["progress"] == 0:
            assert time.monotonic() < deadline + 60
            time.sleep(0.05)
    # the server stopped while that case ran: on disk it says so (and a new server shows it)
    record = json.loads((cases / stopped / "case.json").read_text())
    assert record["status"] == "failed" and record["error"].startswith("interrupted")


def test_cases_survive_a_restart(client, analyzer, cases):
    """A new server on the same folder lists the finished cases as they were; a case that was
    running when its server died is failed (interrupted), never silently lost."""
    before = {c["id"]: c for c in client.get("/api/cases").json()["cases"]}
    done = [i for i, c in before.items() if c["status"] == "done"]
    assert done
    record = cases / done[0] / "case.json"
    killed = json.loads(record.read_text())
    killed_id = "f" * 16
    (cases / killed_id).mkdir()
    (cases / killed_id / "case.json").write_text(json.dumps({**killed, "id": killed_id,
                                                             "status": "running"}))
    waiting_id = "e" * 16  # queued when its server stopped: queued again, then analysed
    upload_dir = cases / ".uploads" / waiting_id
    upload_dir.mkdir(parents=True)
    (upload_dir / "face.png").write_bytes(Path(killed["input"]).read_bytes())
    (cases / waiting_id).mkdir()
    (cases / waiting_id / "case.json").write_text(json.dumps(
        {**killed, "id": waiting_id, "status": "queued", "name": "waiting.png",
         "input": str(upload_dir / "face.png"), "started": None, "finished": None}))
    with TestClient(make_app(analyzer, cases), base_url=BASE) as again:
        after = {c["id"]: c for c in again.get("/api/cases").json()["cases"]}
        for case_id in done:
            assert after[case_id]["status"] == "done"
            assert after[case_id]["inputs"] == before[case_id]["inputs"]
            assert again.get(after[case_id]["report"]).status_code == 200
        assert after[killed_id]["status"] == "failed"
        assert after[killed_id]["error"].startswith("interrupted")
        assert wait_finished(again, waiting_id)["status"] == "done"


def test_more_workers_each_with_its_own_analyzer(tmp_path, analyzer, ff_examples):
    from mrigan.app.serve.app import create_app

    gen = Path(analyzer.generator_info["path"])
    made = []

    def make():
        made.append(fast_analyzer(gen, max_frames=1))
        return made[-1]

    cfg, _ = checked(ServeConfig(cases=tmp_path / "cases", workers=2))
    png = (ff_examples / "ex_deepfakes.png").read_bytes()
    with TestClient(create_app(cfg, make), base_url=BASE) as c:
        assert c.get("/api/health").json()["workers"] == 2
        ids = [upload(c, f"face{i}.png", png).json()["id"] for i in range(2)]
        assert [wait_finished(c, i)["status"] for i in ids] == ["done", "done"]
    assert 1 <= len(made) <= 2 and len({id(a) for a in made}) == len(made)


def test_the_command_line_starts_the_server(tmp_path, analyzer):
    """`mrigan serve` as an analyst runs it: models checked, the address and token printed,
    the API answering only with the token; stopped by a signal."""
    import signal
    import socket
    import subprocess
    import sys

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = Path(__file__).resolve().parents[2]
    cmd = [sys.executable, "-m", "mrigan.app.cli", "serve", "--port", str(port), "--cases",
           str(tmp_path / "cases"), "--generator", analyzer.generator_info["path"],
           "--token", TOKEN, "--every", "100", "--device", "cpu"]
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, proc.stdout.read()
            try:
                r = httpx.get(f"{url}/api/health", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "mrigan serve did not start in 90 s"
                time.sleep(0.3)
        assert r.status_code == 401
        ok = httpx.get(f"{url}/api/health", headers={"x-mrigan-token": TOKEN}, timeout=5)
        assert ok.json()["status"] == "ok"
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    assert f"open {url}/?token={TOKEN}" in out
    assert proc.returncode == 0, out
