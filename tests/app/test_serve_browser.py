"""`mrigan serve`'s page in a real browser: Debian's Chromium driven by Playwright (no browser
download), against a real uvicorn server on 127.0.0.1 running the real analysis (a tiny
generator, every 100th frame of a FF++ video). An analyst uploads a FF++ video, watches its
progress reach done, opens the report and sees the verdict and an MRI; picks a long video
under --media-root and cancels it while it runs; restarts the server and finds the case again.
Dropped files work like chosen ones; file names are shown as text, never run as HTML; a failed
case shows its one-line error."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="mrigan serve needs the extra: pip install 'mrigan[serve]'")
pytest.importorskip("uvicorn", reason="mrigan serve needs the extra: pip install 'mrigan[serve]'")
pytest.importorskip("playwright", reason="the browser tests need playwright (mrigan[serve-test])")

from _gan_setup import write_tiny_generator  # noqa: E402
from _serve_setup import LiveServer, fast_analyzer, make_app  # noqa: E402

pytestmark = pytest.mark.usefixtures("two_torch_threads")

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]
VIDEO = "ffpp/original_sequences/youtube/c23/videos/519.mp4"
LONG_VIDEO = ("pairs", "ffpp_extra", "lrnet_real.mp4")  # 757 frames of 1280x720


@pytest.fixture(scope="module")
def chromium_path() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium; .ci/run does this)")
    return exe


@pytest.fixture(scope="module")
def browser(chromium_path):
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        try:
            b = p.chromium.launch(executable_path=chromium_path, args=CHROMIUM_FLAGS)
        except PlaywrightError as exc:
            pytest.skip(f"playwright could not start {chromium_path}: {exc.message.splitlines()[0]}")
        yield b
        b.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory, shared_data):
    """The server (restartable: ``site["restart"]()``) on a cases folder, media root = the
    shared data (read only)."""
    base = tmp_path_factory.mktemp("serve_browser")
    analyzer = fast_analyzer(write_tiny_generator(base / "gen.safetensors"))
    cases = base / "cases"
    state = {"cases": cases}

    def start():
        state["server"] = LiveServer(make_app(analyzer, cases, media_root=shared_data))
        state["url"] = state["server"].url

    def restart():
        state["server"].stop()
        start()

    start()
    state["restart"] = restart
    yield state
    state["server"].stop()


@pytest.fixture
def page(browser, site):
    context = browser.new_context(viewport={"width": 1200, "height": 800})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.goto(site["url"] + "/")
    yield pg
    context.close()
    assert errors == [], f"script errors on the page: {errors}"


def case_row(page, name: str):
    return page.locator(".case", has=page.locator(".name", has_text=name))


def watch(page, row, until: set[str], timeout: float = 120.0) -> list[tuple[str, float]]:
    """(status, progress bar value) of a case row, sampled until its status is in ``until``."""
    seen: list[tuple[str, float]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, value = row.evaluate(  # one read: both from the same rendering
            "e => [e.dataset.status, e.querySelector('progress').value]", timeout=10_000)
        if not seen or seen[-1] != (status, value):
            seen.append((status, value))
        if status in until:
            return seen
        time.sleep(0.1)
    raise AssertionError(f"case did not reach {until} in {timeout} s: {seen}")


def test_upload_a_video_watch_it_finish_and_open_its_report(page, site, shared_data):
    page.set_input_files("#file", str(shared_data / VIDEO))
    row = case_row(page, "519.mp4")
    row.wait_for(timeout=30_000)
    seen = watch(page, row, {"done", "failed", "cancelled"})
    assert seen[-1] == ("done", 1.0), seen
    running = [v for s, v in seen if s == "running"]
    assert running and all(0.0 <= v < 1.0 for v in running), seen  # live progress shown
    assert [v for s, v in seen if s == "running"] == sorted(running)  # never goes back
    assert "frame(s) analysed" in row.locator(".stats").inner_text()
    verdict = row.locator(".verdict")
    label = verdict.get_attribute("data-verdict")
    assert label in ("fake", "real") and verdict.inner_text().startswith(label.upper())
    assert row.locator("a.json").get_attribute("href").endswith("/results.json")
    assert row.locator("a.zip").get_attribute("href").endswith("/zip")
    assert row.locator("button.remove").is_visible() and not row.locator("button.cancel").is_visible()
    assert not row.locator("progress").is_visible()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "serve_page.png"))

    with page.context.expect_page() as popup:
        row.locator("a.open").click()
    report = popup.value
    report.wait_for_load_state()
    assert report.url.endswith("/report.html")
    badge = report.locator(".verdict .badge").first
    assert badge.inner_text().strip() == label.upper()
    mri = report.locator('img[alt$=": MRI"]').first
    assert mri.evaluate("i => i.complete && i.naturalWidth > 0")
    assert report.locator("h2", has_text="519.mp4").count() == 1
    report.close()


def drop(page, name: str, data: bytes, mime: str) -> None:
    """Drop a file on the page's drop zone, as a drag from the desktop does."""
    import base64

    transfer = page.evaluate_handle(
        """([name, b64, mime]) => {
             const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
             const dt = new DataTransfer();
             dt.items.add(new File([bytes], name, {type: mime}));
             return dt;
           }""", [name, base64.b64encode(data).decode(), mime])
    page.dispatch_event("#drop", "drop", {"dataTransfer": transfer})


def test_dropped_files_names_shown_as_text_and_a_failed_case_says_why(page, shared_data, tmp_path):
    from skimage import data as samples

    from mrigan.fileio import atomic_save_image

    name = "<img src=x onerror=window.pwned=1>&amp;.png"
    drop(page, name, (shared_data / "ff_examples" / "ex_deepfakes.png").read_bytes(), "image/png")
    row = case_row(page, "onerror")
    row.wait_for(timeout=30_000)
    assert row.locator(".name").inner_text() == name
    assert row.locator(".name img").count() == 0
    assert watch(page, row, {"done", "failed"})[-1][0] == "done"
    assert page.evaluate("() => window.pwned") is None

    atomic_save_image(tmp_path / "coffee.png", samples.coffee())  # a photo without a face
    drop(page, "coffee.png", (tmp_path / "coffee.png").read_bytes(), "image/png")
    row = case_row(page, "coffee.png")
    row.wait_for(timeout=30_000)
    assert watch(page, row, {"done", "failed"})[-1][0] == "failed"
    assert row.locator(".error").inner_text() == "no_face: no face found in 1 frame(s)"
    assert row.locator("a.open").is_visible()  # its report says why too


def test_refused_upload_shows_why(page, shared_data):
    data = (shared_data / "README.md").read_bytes()
    page.set_input_files("#file", files=[{"name": "notes.mp4", "mimeType": "video/mp4",
                                          "buffer": data}])
    line = page.locator(".upload.failed", has_text="notes.mp4")
    line.wait_for(timeout=30_000)
    assert "not an image or video" in line.inner_text()
    assert case_row(page, "notes.mp4").count() == 0


def test_pick_a_long_video_on_the_server_and_cancel_it_while_it_runs(page):
    for folder in LONG_VIDEO[:-1]:
        page.locator("#media-list button.folder", has_text=f"{folder}/").click()
        page.locator("#media-path", has_text=folder).wait_for(timeout=10_000)
    item = page.locator("#media-list li", has_text=LONG_VIDEO[-1])
    item.locator("button.analyse").click()
    row = case_row(page, "/".join(LONG_VIDEO))
    row.wait_for(timeout=30_000)
    watch(page, row, {"running"}, timeout=60)
    assert not row.locator("button.remove").is_visible()
    row.locator("button.cancel").click()
    seen = watch(page, row, {"done", "failed", "cancelled"}, timeout=60)
    assert seen[-1][0] == "cancelled", seen
    assert row.locator("button.remove").is_visible() and not row.locator("a.open").is_visible()
    assert not row.locator("button.cancel").is_visible()


def test_restart_the_server_and_find_the_case_again(browser, site):
    site["restart"]()
    context = browser.new_context()
    pg = context.new_page()
    pg.goto(site["url"] + "/")
    row = case_row(pg, "519.mp4")
    row.wait_for(timeout=30_000)
    assert row.get_attribute("data-status") == "done"
    assert row.locator(".verdict").get_attribute("data-verdict") in ("fake", "real")
    cancelled = case_row(pg, LONG_VIDEO[-1])
    assert cancelled.get_attribute("data-status") == "cancelled"
    with context.expect_page() as popup:
        row.locator("a.open").click()
    popup.value.wait_for_load_state()
    assert popup.value.locator('img[alt$=": MRI"]').count() >= 1
    context.close()
