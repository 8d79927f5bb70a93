"""The web page in a real browser: Debian's Chromium driven by Playwright, against
`hark serve` as a real process (uvicorn, one worker process, pocketsphinx).

One server, one browser and one recording serve the module: the recording is
uploaded through the page, and every later test works on the transcript it became.
Screenshots of each step go to test-artifacts/web/ at the repository root.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.browser import CHROMIUM, TIMEOUT_MS, wait_until
from tests.support.common import wait_for
from tests.support.server import HarkServer, create_key

pytestmark = [pytest.mark.browser]

playwright_sync = pytest.importorskip("playwright.sync_api")

ARTIFACTS = Path(__file__).parents[1] / "test-artifacts" / "web"
FALLBACK = Path(__file__).parent / "fixtures" / "conversations" / "two_voices.ogg"
CORPUS_ITEM = "asr/jfk_inaugural_1961.flac"



def _corpus_recording() -> Path:
    """The short English corpus item; the committed fixture only where there is no corpus."""
    configured = os.environ.get("HARK_CORPUS_DIR")
    corpus = Path(configured) if configured else Path(__file__).parents[2] / "shared" / "corpus"
    if (corpus / CORPUS_ITEM).is_file():
        return corpus / CORPUS_ITEM
    if os.environ.get("HARK_REQUIRE_CORPUS") == "1":
        pytest.fail(f"the speech corpus is required (HARK_REQUIRE_CORPUS=1) but {corpus} "
                    f"has no {CORPUS_ITEM}")
    return FALLBACK


@dataclass
class Web:
    server: HarkServer
    key: str
    browser: Any
    page: Any
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    frames: list[dict[str, Any]] = field(default_factory=list)

    def api(self) -> httpx.Client:
        return self.server.client(key=self.key)

    def shot(self, name: str, page: Any = None) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (page or self.page).screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

    def player_time(self) -> float:
        return float(self.page.evaluate("document.getElementById('player').currentTime"))

    def wait_player_near(self, seconds: float, tolerance: float = 0.3) -> None:
        wait_until(self.page,
                   "([t, tol]) => { const p = document.getElementById('player');"
                   " return p && p.readyState >= 1 && Math.abs(p.currentTime - t) <= tol; }",
                   [seconds, tolerance])


def _watch(page: Any, web: Web) -> None:
    def on_console(message: Any) -> None:
        # A refused request (an expected 4xx) is logged by the browser itself.
        if message.type == "error" and "Failed to load resource" not in message.text:
            web.errors.append(message.text)

    def on_socket(socket: Any) -> None:
        def on_frame(payload: Any) -> None:
            text = payload if isinstance(payload, str) else payload.decode()
            web.frames.append(json.loads(text))
        socket.on("framereceived", on_frame)

    page.on("console", on_console)
    page.on("pageerror", lambda error: web.errors.append(str(error)))
    page.on("request", lambda request: web.requests.append(f"{request.method} {request.url}"))
    page.on("websocket", on_socket)


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Web]:
    if not CHROMIUM.is_file():
        reason = f"Chromium not found at {CHROMIUM} (apt-get install chromium)"
        if os.environ.get("HARK_REQUIRE_SERVICES") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    if ARTIFACTS.exists():
        shutil.rmtree(ARTIFACTS)
    root = tmp_path_factory.mktemp("web")
    key = create_key(root / "data", name="browser", max_priority=10)["key"]
    with HarkServer(root / "data", root / "logs", workers=1) as server, \
            playwright_sync.sync_playwright() as playwright:
        server.start()
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True,
            args=["--autoplay-policy=no-user-gesture-required", "--mute-audio"])
        context = browser.new_context(viewport={"width": 1280, "height": 900},
                                      accept_downloads=True)
        context.set_default_timeout(TIMEOUT_MS)
        page = context.new_page()
        state = Web(server=server, key=key, browser=browser, page=page)
        _watch(page, state)
        try:
            yield state
        finally:
            browser.close()


@pytest.fixture(scope="module")
def job(web: Web) -> dict[str, Any]:
    """The recording, uploaded through the page with its API key, watched to completion."""
    page = web.page
    page.goto(web.server.base_url + "/")
    # The server wants a sign-in or a key: the page says so and opens the sign-in form;
    # the key form is one click away.
    page.wait_for_selector("#alert:not([hidden])")
    assert "API key" in page.inner_text("#alert")
    assert page.is_visible("#signin-email")
    page.click("#key-panel summary")
    page.fill("#api-key", web.key)
    page.click("#key-form button[type=submit]")
    page.wait_for_selector("#key-state:text('saved')")
    # The (empty) list was read: what the page requests from here on is the upload's.
    page.wait_for_selector("#jobs-empty:not([hidden])")
    recording = _corpus_recording()
    page.set_input_files("#files", str(recording))
    page.check("#opt-diarize")
    page.fill("#opt-language", "en")
    web.shot("01-upload-chosen")
    loaded = len(web.requests)
    page.click("#upload-button")
    item = page.wait_for_selector("#jobs li.job")
    job_id = item.get_attribute("data-id")
    assert job_id
    page.wait_for_selector(f"#jobs li.job[data-id='{job_id}'][data-status='completed']",
                           timeout=120_000)
    web.shot("02-job-completed")
    api = web.api()
    record: dict[str, Any] = api.get(f"/api/v1/jobs/{job_id}").json()
    transcript = api.get(f"/api/v1/jobs/{job_id}/transcript").json()["transcript"]
    return {"id": job_id, "job": record, "transcript": transcript, "recording": recording,
            "requests": web.requests[loaded:]}


def _open(web: Web, job_id: str) -> None:
    web.page.click(f"#jobs li.job[data-id='{job_id}'] [data-action='open']")
    web.page.wait_for_selector("#transcript .w")
    wait_until(web.page, "() => document.getElementById('player').readyState >= 1")


@pytest.mark.corpus
def test_an_upload_is_watched_live_to_completion(web: Web, job: dict[str, Any]) -> None:
    assert job["job"]["status"] == "completed"
    assert job["job"]["filename"] == job["recording"].name
    assert job["job"]["options"]["diarize"] is True
    # Live: the status came over the job's WebSocket, and nothing polled the job API.
    types = [frame["type"] for frame in web.frames if frame.get("job_id") == job["id"]]
    assert "completed" in types and ("progress" in types or "status" in types), types
    polls = [r for r in job["requests"] if re.search(r"GET .*/api/v1/jobs(\?|/[^/]+$)", r)]
    assert polls == [], polls
    item = web.page.locator(f"#jobs li.job[data-id='{job['id']}']")
    assert item.locator(".badge").inner_text() == "completed"
    # The live `completed` event filled in the model and the language.
    assert f"{job['job']['model']} · en ·" in item.locator(".job-meta").first.inner_text()
    # The model picker offers the Whisper models installed from their packages.
    offered = web.page.eval_on_selector_all("#model-list option", "o => o.map(x => x.value)")
    assert {"auto", "pocketsphinx", "tiny.en", "base"} <= set(offered)
    assert not web.errors, web.errors


@pytest.mark.corpus
def test_clicking_a_word_plays_from_that_word(web: Web, job: dict[str, Any]) -> None:
    _open(web, job["id"])
    page = web.page
    words = page.locator("#transcript .w")
    assert words.count() == sum(len(s["words"]) for s in job["transcript"]["segments"])
    # Segments are grouped by speaker, with the speaker's name and a timestamp.
    assert page.locator(".turn .turn-speaker").first.inner_text().startswith("SPEAKER_")
    target = words.nth(min(5, words.count() - 1))
    start = float(target.get_attribute("data-start") or "nan")
    target.click()
    web.wait_player_near(start)
    wait_until(page, "() => document.querySelector('#transcript .w.current') !== null")
    web.shot("03-word-clicked")
    # Keyboard: k pauses and plays, l and j skip 5 s.
    page.locator("#reader-h").focus()
    page.evaluate("document.getElementById('player').pause()")
    before = web.player_time()
    page.keyboard.press("l")
    web.wait_player_near(before + 5.0, 0.1)
    page.keyboard.press("j")
    web.wait_player_near(before, 0.1)
    page.keyboard.press("k")
    wait_until(page, "() => !document.getElementById('player').paused")
    page.keyboard.press("k")
    wait_until(page, "() => document.getElementById('player').paused")
    # The low-confidence words are marked, with their confidence as a tooltip.
    low = [w for s in job["transcript"]["segments"] for w in s["words"]
           if w["probability"] is not None and w["probability"] < 0.5]
    assert page.locator("#transcript .w.low").count() == len(low)
    assert not web.errors, web.errors


@pytest.mark.corpus
def test_the_player_plays_from_a_signed_link_and_renews_it(web: Web,
                                                           job: dict[str, Any]) -> None:
    page = web.page
    # The key travels in headers only (and in WebSocket URLs, which cannot have them).
    http = [r for r in web.requests if r.split(" ", 1)[1].startswith("http")]
    assert [r for r in http if "api_key=" in r or web.key in r] == []
    source = str(page.evaluate("document.getElementById('player').src"))
    assert f"/api/v1/jobs/{job['id']}/media?token=" in source and web.key not in source
    # A link that stopped working (expired, say) is replaced by a fresh one.
    page.evaluate("""() => { const p = document.getElementById('player');
                            p.src = p.src.replace(/token=[^&]+/, 'token=stale'); }""")
    wait_until(page, """() => { const p = document.getElementById('player');
                               return p.readyState >= 1 && p.src.includes('token=')
                                 && !p.src.includes('token=stale'); }""")
    assert "cannot be played" not in page.inner_text("#alert")
    target = float(page.locator("#transcript .w").nth(3).get_attribute("data-start") or "nan")
    page.locator("#transcript .w").nth(3).click()
    web.wait_player_near(target)
    assert not web.errors, web.errors


@pytest.mark.corpus
def test_a_renamed_speaker_is_in_the_srt_export(web: Web, job: dict[str, Any]) -> None:
    page = web.page
    speaker = job["transcript"]["segments"][0]["speaker"]
    assert speaker, "the job was diarized"
    row = page.locator(f"#speakers li[data-speaker='{speaker}']")
    row.locator("[data-action='rename']").click()
    page.fill(f"#speaker-rename-{speaker}", "Alice Example")
    page.click("#speakers form button[type=submit]")
    page.wait_for_selector(".turn-speaker:text('Alice Example')")
    web.shot("04-speaker-renamed")
    with page.expect_download() as download:
        page.click(".exports button[data-format='srt']")
    srt = Path(download.value.path()).read_text()
    assert "[Alice Example]" in srt and speaker not in srt
    assert download.value.suggested_filename == job["recording"].stem + ".srt"
    response = web.api().get(f"/api/v1/jobs/{job['id']}/result", params={"format": "srt"})
    assert response.status_code == 200 and "[Alice Example]" in response.text
    assert not web.errors, web.errors


@pytest.mark.corpus
def test_a_speakers_voice_is_saved_as_a_profile(web: Web, job: dict[str, Any]) -> None:
    page = web.page
    speaker = job["transcript"]["segments"][0]["speaker"]
    row = page.locator(f"#speakers li[data-speaker='{speaker}']")
    row.locator("[data-action='enroll']").click()
    name = page.locator(f"#speaker-enroll-{speaker}")
    assert name.input_value() == "Alice Example"  # offered under the name it has
    page.click("#speakers form button[type=submit]")
    page.wait_for_selector(f"#speakers li[data-speaker='{speaker}'] .badge:text('enrolled voice')")
    profiles = web.api().get("/api/v1/speakers").json()["items"]
    assert [p["name"] for p in profiles] == ["Alice Example"]
    named = web.api().get(f"/api/v1/jobs/{job['id']}/transcript").json()["transcript"]
    assert next(s for s in named["speakers"] if s["id"] == speaker)["profile_id"] == \
        profiles[0]["id"]
    assert not web.errors, web.errors


@pytest.mark.corpus
def test_an_edited_word_survives_a_reload(web: Web, job: dict[str, Any]) -> None:
    page = web.page
    word = page.locator("#seg-0 .w").nth(1)
    original = word.inner_text()
    word.dblclick()
    editor = page.locator("#transcript .word-input")
    editor.fill("Harkened")
    editor.press("Enter")
    page.wait_for_selector("#seg-0 .w[data-i='1']:text('Harkened')")
    assert "revision" in page.inner_text("#revision-info")
    page.reload()
    page.wait_for_selector("#seg-0 .w[data-i='1']")
    assert page.locator("#seg-0 .w[data-i='1']").inner_text() == "Harkened"
    web.shot("05-word-edited-after-reload")
    stored = web.api().get(f"/api/v1/jobs/{job['id']}/transcript").json()
    assert stored["edited"] is True
    first = stored["transcript"]["segments"][0]
    assert first["words"][1]["word"].strip() == "Harkened" != original
    assert first["words"][1]["start"] == job["transcript"]["segments"][0]["words"][1]["start"]
    assert not web.errors, web.errors


@pytest.mark.corpus
def test_search_opens_the_transcript_at_the_segment(web: Web, job: dict[str, Any]) -> None:
    page = web.page
    page.click("#reader-close")
    page.wait_for_selector("#reader", state="hidden")
    segments = job["transcript"]["segments"]
    segment = segments[-1]
    word = max((w["word"].strip() for w in segment["words"]), key=len)
    page.fill("#search-q", word)
    page.click("#search-form button[type=submit]")
    hit = page.locator(f"#search-results .hit[data-segment='{segment['id']}']").first
    hit.wait_for()
    assert word.lower() in hit.locator("mark").first.inner_text().lower()
    hit.click()
    page.wait_for_selector(f"#seg-{segment['id']}.target")
    web.wait_player_near(segment["start"])
    assert page.evaluate("document.activeElement.id") == f"seg-{segment['id']}"
    web.shot("06-search-result-opened")
    # The edited word is what the index holds now.
    page.fill("#search-q", "harkened")
    page.click("#search-form button[type=submit]")
    page.locator("#search-results .hit[data-segment='0']").wait_for()
    assert not web.errors, web.errors


@pytest.mark.corpus
def test_the_original_can_be_restored(web: Web, job: dict[str, Any]) -> None:
    page = web.page
    assert page.locator("#seg-0 .w[data-i='1']").inner_text() == "Harkened"
    page.click("#restore")
    page.wait_for_selector("#revision-info:text('Original')")
    original = job["transcript"]["segments"][0]["words"][1]["word"].strip()
    assert page.locator("#seg-0 .w[data-i='1']").inner_text() == original
    assert page.locator("#restore").is_disabled()
    stored = web.api().get(f"/api/v1/jobs/{job['id']}/transcript").json()
    assert stored["edited"] is False and stored["transcript"] == job["transcript"]
    assert not web.errors, web.errors


@pytest.mark.corpus
def test_jobs_are_canceled_retried_and_deleted(web: Web, job: dict[str, Any]) -> None:
    page = web.page
    api = web.api()
    data = job["recording"].read_bytes()
    busy, waiting = (api.post("/api/v1/jobs/upload", data={"priority": str(priority)},
                              files={"file": (name, data)}).json()
                     for name, priority in (("busy.flac", 10), ("waiting.flac", -10)))
    page.click("#jobs-refresh")
    item = page.locator(f"#jobs li.job[data-id='{waiting['id']}']")
    item.locator("[data-action='cancel']").click()
    page.wait_for_selector(f"#jobs li.job[data-id='{waiting['id']}'][data-status='canceled']")
    item.locator("[data-action='retry']").click()
    wait_until(page, "known => !known.includes(document.querySelector('#jobs li.job').dataset.id)",
               [waiting["id"], busy["id"]])
    retried = page.locator("#jobs li.job").first
    retry_id = retried.get_attribute("data-id")
    assert retried.locator(".job-name").inner_text() == "waiting.flac"
    page.wait_for_selector(f"#jobs li.job[data-id='{retry_id}'][data-status='completed']",
                           timeout=120_000)
    # Filters: by status on the server, by name in the page.
    page.select_option("#job-status", "canceled")
    page.wait_for_selector(f"#jobs li.job[data-id='{retry_id}']", state="detached")
    assert page.locator("#jobs li.job").count() == 1
    page.select_option("#job-status", "")
    page.wait_for_selector(f"#jobs li.job[data-id='{busy['id']}']")
    page.fill("#job-filter", "waiting")
    page.wait_for_selector(f"#jobs li.job[data-id='{busy['id']}']", state="detached")
    assert page.locator("#jobs li.job").count() == 2
    web.shot("09-jobs-filtered")
    delete = item.locator("[data-action='delete']")

    def armed() -> bool:
        # The first click arms the button; an update of the job redraws its row (and
        # the button unarmed), so arm it again if that happened in between.
        if delete.inner_text() != "Confirm delete":
            delete.click()
        return bool(delete.inner_text() == "Confirm delete")

    wait_for(armed, 10, message="the delete button never asked for confirmation")
    delete.click()
    page.wait_for_selector(f"#jobs li.job[data-id='{waiting['id']}']", state="detached")
    assert api.get(f"/api/v1/jobs/{waiting['id']}").json()["purged"] is True
    page.fill("#job-filter", "")
    assert not web.errors, web.errors


def test_an_unreadable_upload_shows_the_api_error(web: Web, job: dict[str, Any],
                                                  tmp_path: Path) -> None:
    page = web.page
    notes = tmp_path / "notes.txt"
    notes.write_text("this is not a recording\n")
    page.set_input_files("#files", str(notes))
    page.click("#upload-button")
    error = page.locator("#uploads .error-text")
    error.wait_for()
    assert "notes.txt" in error.inner_text() and "file" in error.inner_text()
    assert page.locator("#alert").is_visible()
    web.shot("07-upload-error")
    assert not web.errors, web.errors


def test_an_error_stays_until_dismissed_or_its_action_succeeds(web: Web, job: dict[str, Any],
                                                                tmp_path: Path) -> None:
    page = web.page
    alert = page.locator("#alert")
    assert alert.get_attribute("role") == "alert"
    # Errors of earlier tests go first, each with its own dismiss button.
    dismiss = alert.get_by_role("button", name="Dismiss error")
    while dismiss.count():
        dismiss.first.click()
    assert alert.is_hidden()

    # Nothing chosen: an error, which a submission with recordings answers.
    page.click("#upload-button")
    unchosen = alert.locator(".alert-item", has_text="Choose or drop")
    unchosen.wait_for()
    # Two recordings at once: the first is refused, and the second, uploaded after it,
    # is announced. The announcement must not take the refusal away before it is read.
    refused = tmp_path / "refused.txt"
    refused.write_text("this is not a recording\n")
    accepted = tmp_path / "accepted.ogg"
    accepted.write_bytes(FALLBACK.read_bytes())
    page.set_input_files("#files", [str(refused), str(accepted)])
    page.click("#upload-button")
    page.wait_for_selector("#status:text('accepted.ogg: uploaded, job queued')")
    assert page.get_attribute("#status", "aria-live") == "polite"
    refusal = alert.locator(".alert-item", has_text="refused.txt")
    assert refusal.is_visible()
    assert unchosen.count() == 0
    web.shot("07-error-kept-after-success")

    # Dismissed, it goes; the button says what it does to a screen reader.
    button = refusal.get_by_role("button", name="Dismiss error")
    assert "refused.txt" in page.evaluate(
        "id => document.getElementById(id).textContent", button.get_attribute("aria-describedby"))
    button.click()
    refusal.wait_for(state="detached")
    assert alert.is_hidden()

    item = page.locator("#jobs li.job", has_text="accepted.ogg")
    job_id = item.get_attribute("data-id")
    assert web.api().delete(f"/api/v1/jobs/{job_id}", params={"purge": "true"}).is_success
    item.wait_for(state="detached")
    assert not web.errors, web.errors


def test_the_page_works_at_phone_width(web: Web, job: dict[str, Any]) -> None:
    context = web.browser.new_context(viewport={"width": 375, "height": 812}, is_mobile=True,
                                      has_touch=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        page.add_init_script(f"localStorage.setItem('hark.apiKey', {json.dumps(web.key)})")
        page.goto(f"{web.server.base_url}/#/jobs/{job['id']}")
        page.wait_for_selector(f"#jobs li.job[data-id='{job['id']}']")
        page.wait_for_selector("#transcript .w")
        assert page.evaluate("document.documentElement.scrollWidth") <= 375
        # Every control has a label a screen reader can announce.
        unlabelled = page.evaluate("""[...document.querySelectorAll(
            'input:not([type=hidden]), select, textarea, button')].filter(e => {
              const named = (e.labels && e.labels.length) || e.getAttribute('aria-label')
                || (e.tagName === 'BUTTON' && e.textContent.trim());
              return !named; }).map(e => e.outerHTML)""")
        assert unlabelled == []
        web.shot("08-phone-width", page)
        assert not errors, errors
    finally:
        context.close()


def test_the_page_loads_nothing_from_elsewhere(web: Web, job: dict[str, Any]) -> None:
    base = web.server.base_url
    ws_base = base.replace("http://", "ws://")
    foreign = [r for r in web.requests
               if not r.split(" ", 1)[1].startswith((base, ws_base, "blob:", "data:"))]
    assert foreign == []
    response = httpx.get(base + "/", trust_env=False)
    assert "default-src 'self'" in response.headers["content-security-policy"]


def test_a_job_submitted_elsewhere_joins_the_list_live(web: Web, job: dict[str, Any]) -> None:
    page = web.page
    assert page.input_value("#job-status") == "" and page.input_value("#job-filter") == ""
    frames, requests = len(web.frames), len(web.requests)
    api = web.api()
    created = api.post("/api/v1/jobs/upload", data={"language": "en"},
                       files={"file": ("elsewhere.ogg", FALLBACK.read_bytes())}).json()
    # No Refresh: the tenant's feed brings it, newest first, and its own socket follows it.
    item = page.locator(f"#jobs li.job[data-id='{created['id']}']")
    item.wait_for()
    assert page.locator("#jobs li.job").first.get_attribute("data-id") == created["id"]
    assert item.locator(".job-name").inner_text() == "elsewhere.ogg"
    page.wait_for_selector(f"#jobs li.job[data-id='{created['id']}'][data-status='completed']",
                           timeout=120_000)
    web.shot("10-job-from-elsewhere")
    heard = [f for f in web.frames[frames:] if f.get("job_id") == created["id"]]
    assert heard[0] == {"type": "created", "job_id": created["id"], "job": created}
    assert heard[-1]["type"] == "completed"
    reads = [r for r in web.requests[requests:] if re.search(r"GET .*/api/v1/jobs(\?|/[^/]+$)", r)]
    assert reads == [], reads
    # Deleted elsewhere: it leaves the list as live.
    assert api.delete(f"/api/v1/jobs/{created['id']}", params={"purge": "true"}).is_success
    item.wait_for(state="detached")
    assert not web.errors, web.errors


@pytest.mark.parametrize(("path", "operation"), [
    ("/docs", ".opblock-summary-path[data-path='/api/v1/jobs/upload']"),
    ("/redoc", "[data-section-id*='operation/'] h2"),
])
def test_api_docs_render_offline_under_a_strict_policy(web: Web, path: str,
                                                       operation: str) -> None:
    """The reference pages draw the operations with nothing fetched from elsewhere (no
    CDN), their scripts running under a policy without inline or eval'd code. (ReDoc
    always asks for its vendor's logo from a CDN; the policy refuses it and ReDoc hides
    the image, so the page still loads nothing from another site.)"""
    page = web.browser.new_page()
    answered: list[str] = []
    page.on("response", lambda response: answered.append(response.url))
    try:
        response = page.goto(web.server.base_url + path)
        assert response is not None and response.status == 200
        policy = response.headers["content-security-policy"]
        assert "script-src 'self';" in policy and "unsafe-eval" not in policy
        page.locator(operation).first.wait_for(timeout=30_000)
        web.shot(f"docs-{path.strip('/')}", page)
        assert [u for u in answered if not u.startswith((web.server.base_url, "blob:",
                                                         "data:"))] == []
    finally:
        page.close()
