"""The page's sign-in in Chromium: a member signs in and uploads, stays signed in across
a reload (the refresh token in an HttpOnly cookie, the access token in memory only),
signs out; a viewer sees the organisation's jobs but cannot delete one; a reset link
from an admin sets a new password; an admin manages people, keys and retention on the
page and reads the audit log, which a member does not see."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from tests.support.browser import CHROMIUM, TIMEOUT_MS, wait_until
from tests.support.common import wait_for
from tests.support.server import HarkServer, clean_env, hark_command
from tests.support.service import speech_wav

pytestmark = [pytest.mark.browser]

playwright_sync = pytest.importorskip("playwright.sync_api")

PASSWORD = "a long enough password"


def hark(data: Path, *args: str, stdin: str | None = None) -> str:
    done = subprocess.run(hark_command(*args), env=clean_env(data), cwd=data, input=stdin,
                          capture_output=True, text=True, timeout=60, check=True)
    return done.stdout


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[tuple[Any, HarkServer, Path, Any]]:
    if not CHROMIUM.is_file():
        reason = f"Chromium not found at {CHROMIUM} (apt-get install chromium)"
        if os.environ.get("HARK_REQUIRE_SERVICES") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("web-accounts")
    data = root / "data"
    data.mkdir()
    for email, role in (("member@acme.test", "member"), ("viewer@acme.test", "viewer"),
                        ("admin@acme.test", "admin")):
        hark(data, "users", "create", email, "--org", "acme", "--role", role,
             "--password-stdin", stdin=PASSWORD + "\n")
    with HarkServer(data, root / "logs", workers=1) as server, \
            playwright_sync.sync_playwright() as playwright:
        server.start()
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        context = browser.new_context()
        context.set_default_timeout(TIMEOUT_MS)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        try:
            yield page, server, data, browser
        finally:
            browser.close()
        assert errors == []


def sign_out(page: Any) -> None:
    page.click("#signin-panel summary")
    page.click("#signout")
    page.wait_for_selector("#signin-state:text('signed out')")


def sign_in(page: Any, email: str, password: str = PASSWORD) -> None:
    # The page has settled: it showed the jobs of whoever the cookie kept signed in, or
    # asked for a sign-in.
    wait_until(page, "() => !document.getElementById('alert').hidden || "
                     "document.querySelector('#jobs li.job, #jobs-empty:not([hidden])')")
    if page.text_content("#signin-state") not in ("signed out", email):
        sign_out(page)  # someone else is signed in
    page.wait_for_selector("#signin-form:not([hidden])")
    if not page.is_visible("#signin-email"):
        page.click("#signin-panel summary")
    page.fill("#signin-email", email)
    page.fill("#signin-password", password)
    page.click("#signin-form button[type=submit]")
    page.wait_for_selector(f"#signin-state:text('{email}')")


def test_sign_in_upload_reload_and_sign_out(site: tuple[Any, HarkServer, Path, Any],
                                           tmp_path: Path) -> None:
    page, server, _, _ = site
    page.goto(server.base_url + "/")
    page.wait_for_selector("#alert:not([hidden])")
    assert "sign in" in page.inner_text("#alert")
    sign_in(page, "member@acme.test")
    page.wait_for_selector("#jobs-empty:not([hidden])")
    assert page.text_content("#signin-role") == "member"
    recording = tmp_path / "talk.wav"
    recording.write_bytes(speech_wav(2))
    page.set_input_files("#files", str(recording))
    page.click("#upload-button")
    page.wait_for_selector("#jobs li.job")
    # Nothing long-lived is where script can read it.
    assert "eyJ" not in page.evaluate("() => JSON.stringify(localStorage)")
    assert "hark_refresh" not in page.evaluate("() => document.cookie")
    # A reload signs back in through the cookie.
    page.reload()
    page.wait_for_selector("#signin-state:text('member@acme.test')")
    page.wait_for_selector("#jobs li.job")
    page.click("#signin-panel summary")
    page.click("#signout")
    page.wait_for_selector("#signin-state:text('signed out')")
    page.wait_for_selector("#alert:not([hidden])")
    page.reload()
    page.wait_for_selector("#alert:not([hidden])")
    assert page.text_content("#signin-state") == "signed out"


def test_a_viewer_cannot_delete_and_a_reset_link_sets_a_password(
        site: tuple[Any, HarkServer, Path, Any]) -> None:
    page, server, data, _ = site
    page.goto(server.base_url + "/")
    sign_in(page, "viewer@acme.test")
    item = page.wait_for_selector("#jobs li.job")  # the member's upload: same organisation
    job_id = item.get_attribute("data-id")
    # Finished first, so that no "transcript ready" announcement replaces the refusal.
    page.wait_for_selector(f"#jobs li.job[data-id='{job_id}'][data-status='completed']",
                           timeout=120_000)
    delete = page.locator(f"#jobs li.job[data-id='{job_id}'] [data-action='delete']")

    def armed() -> bool:
        if delete.inner_text() != "Confirm delete":
            delete.click()
        return bool(delete.inner_text() == "Confirm delete")

    wait_for(armed, 10, message="the delete button never asked for confirmation")
    delete.click()
    page.wait_for_selector("#alert:not([hidden])")
    assert "viewer" in page.inner_text("#alert")
    assert page.locator(f"#jobs li.job[data-id='{job_id}']").count() == 1
    page.click("#signin-panel summary")
    page.click("#signout")
    page.wait_for_selector("#signin-state:text('signed out')")

    link = hark(data, "users", "reset-link", "viewer@acme.test").strip()
    page.goto(server.base_url + "/#/reset/" + link.rsplit("/", 1)[1])
    page.wait_for_selector("#reset-form:not([hidden])")
    page.fill("#reset-password", "my own new password")
    page.click("#reset-form button[type=submit]")
    wait_until(page, "() => document.getElementById('reset-form').hidden")
    sign_in(page, "viewer@acme.test", "my own new password")
    assert page.text_content("#signin-role") == "viewer"


def test_the_first_visit_of_a_local_server_makes_the_owner(
        site: tuple[Any, HarkServer, Path, Any], tmp_path_factory: pytest.TempPathFactory,
) -> None:
    browser = site[3]
    root = tmp_path_factory.mktemp("web-first-visit")
    with HarkServer(root / "data", root / "logs", workers=0) as server:
        server.start()
        context = browser.new_context()
        try:
            page = context.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            console: list[str] = []
            page.on("console", lambda message: console.append(message.text))
            page.goto(server.base_url + "/")
            # Nobody yet, no key: the page offers to make the owner's account.
            page.wait_for_selector("#setup-form:not([hidden])")
            assert page.is_visible("#setup-email")
            page.fill("#setup-email", "me@home.test")
            page.fill("#setup-password", PASSWORD)
            page.click("#setup-form button[type=submit]")
            try:
                page.wait_for_selector("#signin-state:text('me@home.test')")
            except PlaywrightTimeoutError:  # say why: the page's errors, and both logs
                pytest.fail(f"not signed in; alert {page.inner_text('#alert')!r}; "
                            f"console {console}; server {server.log_tail()}")
            assert page.text_content("#signin-role") == "owner"
            page.wait_for_selector("#jobs-empty:not([hidden])")
            page.reload()
            page.wait_for_selector("#signin-state:text('me@home.test')")
            assert page.is_hidden("#setup-form")
        finally:
            context.close()


def test_an_admin_manages_the_organisation_on_the_page(
        site: tuple[Any, HarkServer, Path, Any]) -> None:
    page, server, data, _ = site
    page.goto(server.base_url + "/")
    sign_in(page, "admin@acme.test")
    page.wait_for_selector("#org-admin:not([hidden])")
    assert "Audio" in page.inner_text("#org-usage")
    assert page.locator("#people li[data-email='member@acme.test']").count() == 1

    # Retention, saved and shown again after a reload.
    page.fill("#retention-media", "30")
    page.click("#retention-form button[type=submit]")
    page.wait_for_selector("#status:text('Retention saved')")
    # A new person, given a reset link; then made a viewer.
    page.fill("#person-email", "newcomer@acme.test")
    page.click("#person-form button[type=submit]")
    page.wait_for_selector("#reset-link-box:not([hidden])")
    assert "/#/reset/" in page.input_value("#reset-link")
    newcomer = "#people li[data-email='newcomer@acme.test']"
    page.select_option(f"{newcomer} [data-action=role]", "viewer")
    page.wait_for_selector("#status:text('newcomer@acme.test is now viewer')")
    # A key, shown once, that works; then revoked.
    page.fill("#new-key-name", "page robot")
    page.click("#new-key-form button[type=submit]")
    page.wait_for_selector("#new-key-box:not([hidden])")
    key = page.input_value("#new-key")
    assert key.startswith("hark_")
    with server.client(key=key) as robot:
        assert robot.get("/api/v1/jobs").status_code == 200
        revoke = page.locator("#keys li", has_text="page robot").locator("[data-action=revoke]")
        revoke.click()
        revoke.click()
        page.wait_for_selector("#status:text('page robot revoked')")
        assert robot.get("/api/v1/jobs").status_code == 401  # at once on this server
    audit = page.inner_text("#audit")
    assert "key.revoked" in audit and "organisation.retention_changed" in audit

    page.reload()
    page.wait_for_selector("#org-admin:not([hidden])")
    assert page.input_value("#retention-media") == "30"
    listed = hark(data, "users", "list", "--org", "acme")
    assert any("newcomer@acme.test" in line and "viewer" in line for line in listed.splitlines())

    # A member sees the usage and the retention, but changes nothing and sees no admin part.
    sign_in(page, "member@acme.test")
    page.wait_for_selector("#org-card:not([hidden])")
    wait_until(page, "() => document.getElementById('retention-media').disabled")
    assert page.is_hidden("#org-admin")
    assert page.input_value("#retention-media") == "30"
