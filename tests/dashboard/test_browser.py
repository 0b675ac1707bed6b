"""The dashboard in a real headless chromium: sign in, create, watch, play, cancel, delete."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
from playwright.sync_api import Browser, Page, expect

from reelgate.domain.quotas import Role
from tests.dashboard.conftest import LONG_MODEL, QUICK_MODEL, WAIT_MS
from tests.server import LiveServer


def signed_in(browser: Browser, server: LiveServer, key: str) -> Page:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(WAIT_MS)
    page.goto(server.base_url + "/dashboard")
    expect(page).to_have_url(re.compile(r"/dashboard/signin$"))
    page.fill("#key", key)
    page.click("#signin")
    expect(page).to_have_url(re.compile(r"/dashboard/tasks$"))
    return page


def create(page: Page, model: str, seconds: str, prompt: str) -> str:
    """Fill the create form on the list page and send it; the new task's id."""
    page.select_option("#model", model)
    page.fill("#prompt", prompt)
    page.fill("#seconds", seconds)
    page.select_option("#resolution", "480p")
    page.click("#create-button")
    expect(page).to_have_url(re.compile(r"/dashboard/tasks/task_"))
    return page.url.rsplit("/", 1)[-1]


def test_sign_in_create_watch_play_cancel_delete(
    browser: Browser, server: LiveServer, shots: Path
) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 720})
    page.goto(server.base_url + "/dashboard/signin")
    page.fill("#key", "rg_not-a-key")
    page.click("#signin")
    expect(page.locator(".error")).to_contain_text("invalid API key")
    page.screenshot(path=shots / "dashboard-signin.png")
    page.close()

    page = signed_in(browser, server, server.key_for("dana"))

    # The form applies the catalog's limits of the chosen model.
    page.select_option("#model", QUICK_MODEL)
    expect(page.locator("#seconds")).to_have_attribute("min", "2")
    expect(page.locator("#seconds")).to_have_attribute("max", "10")
    expect(page.locator("#image")).to_be_disabled()
    page.select_option("#model", "doubao-seedance-2-0")
    expect(page.locator("#seconds")).to_have_attribute("max", "15")
    expect(page.locator("#image")).to_be_enabled()
    assert page.locator("#resolution option").all_inner_texts() == ["480p", "720p"]

    # A task watched on its own page: progress to 100 %, then the video plays in the page.
    first = create(page, QUICK_MODEL, "2", "a lighthouse at dusk, waves rolling in")
    expect(page.locator("#progress-text")).to_have_text("100 %")
    expect(page.locator("#status")).to_have_text("SUCCESS")
    page.wait_for_function(
        "() => { const v = document.getElementById('video');"
        " return v !== null && v.readyState >= 1 && v.duration > 0; }"
    )
    duration = page.evaluate("document.getElementById('video').duration")
    assert 1.5 < duration < 2.5
    page.evaluate("() => { const v = document.getElementById('video'); v.muted = true; v.play(); }")
    page.wait_for_function("() => document.getElementById('video').currentTime > 0")
    page.wait_for_function("() => document.getElementById('thumbnail').naturalWidth > 0")
    assert page.locator("#events tbody tr").count() >= 3
    page.screenshot(path=shots / "dashboard-task.png", full_page=True)

    # Live progress on the list: the row of a running task reaches 100 % with no reload.
    page.goto(server.base_url + "/dashboard/tasks")
    second = create(page, QUICK_MODEL, "3", "a paper boat on a rainy street")
    page.goto(server.base_url + "/dashboard/tasks")
    row = page.locator(f'tr[data-task="{second}"]')
    assert second in (page.locator("#task-table").get_attribute("data-live") or "")
    expect(row.locator(".pct")).to_have_text("100 %")
    expect(row.locator(".status")).to_have_text("SUCCESS")

    # Cancel a long task from its page.
    page.goto(server.base_url + "/dashboard/tasks")
    long = create(page, LONG_MODEL, "4", "a slow timelapse of a glacier")
    expect(page.locator("#status")).to_have_text("IN_PROGRESS")
    page.click("#cancel")
    expect(page).to_have_url(re.compile(r"\?cancelled=1$"))
    expect(page.locator("#status")).to_have_text("FAILED")
    expect(page.locator("#task-error")).to_contain_text("cancelled")

    # Filters: only the successes.
    page.goto(server.base_url + "/dashboard/tasks")
    page.select_option("#filter-status", "SUCCESS")
    page.click("#filter")
    expect(page.locator("#task-table tbody tr")).to_have_count(2)
    page.goto(server.base_url + "/dashboard/tasks")
    expect(page.locator(f'tr[data-task="{long}"] .status')).to_have_text("FAILED")
    page.screenshot(path=shots / "dashboard-tasks.png", full_page=True)

    # The owner's usage: the two successes; the cancelled task is not charged.
    page.click("#nav-usage")
    expect(page).to_have_url(re.compile(r"/dashboard/usage$"))
    expect(page.locator("#usage tbody tr")).to_have_count(1)
    expect(page.locator(f'#usage tr[data-model="{QUICK_MODEL}"]')).to_be_visible()
    expect(page.locator("#total-tasks")).to_have_text("2")
    page.screenshot(path=shots / "dashboard-usage.png", full_page=True)

    # Delete (after the confirmation dialog) the first task: gone from the list.
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto(server.base_url + f"/dashboard/tasks/{first}")
    page.click("#delete")
    expect(page).to_have_url(re.compile(r"/dashboard/tasks\?deleted="))
    expect(page.locator("#deleted")).to_contain_text(first)
    expect(page.locator(f'tr[data-task="{first}"]')).to_have_count(0)
    answer = page.goto(server.base_url + f"/dashboard/tasks/{first}")
    assert answer is not None and answer.status == 404

    # Sign out: the pages ask for a key again.
    page.goto(server.base_url + "/dashboard/tasks")
    page.click("#signout")
    expect(page).to_have_url(re.compile(r"/dashboard/signin$"))
    page.goto(server.base_url + "/dashboard/tasks")
    expect(page).to_have_url(re.compile(r"/dashboard/signin$"))
    page.close()


def test_admin_creates_and_revokes_a_key(browser: Browser, server: LiveServer, shots: Path) -> None:
    _, secret = server.call(server.components.keys.create("ops", "ops admin", role=Role.ADMIN))
    page = signed_in(browser, server, secret)
    page.on("dialog", lambda dialog: dialog.accept())
    page.click("nav >> text=Keys")
    expect(page).to_have_url(re.compile(r"/dashboard/admin/keys$"))

    page.fill("#key-owner", "erin")
    page.fill("#key-name", "erin's laptop")
    page.fill("#key-rate", "30")
    page.fill("#key-active", "2")
    page.fill("#key-seconds", "600")
    page.click("#create-key")
    made = page.locator("#secret-value").inner_text()
    assert made.startswith("rg_")
    key_id = page.locator("#secret code").first.inner_text()
    row = page.locator(f'tr[data-key="{key_id}"]')
    expect(row).to_contain_text("30/min")
    expect(row).to_contain_text("2 active")
    expect(row).to_contain_text("600 s/day")

    # Change its limits in the row's form: the list shows the new ones.
    row.locator("details.edit summary").click()
    row.locator('input[name="max_active"]').fill("5")
    row.locator('input[name="seconds_per_day"]').fill("")
    row.locator("button.save").click()
    expect(page.locator("#updated")).to_contain_text(key_id)
    expect(row).to_contain_text("5 active")
    expect(row).not_to_contain_text("s/day")
    row.locator("details.edit summary").click()
    expect(row.locator('input[name="max_active"]')).to_have_value("5")
    page.screenshot(path=shots / "dashboard-admin-keys.png", full_page=True)

    # The new key works for the API, then no longer once revoked here.
    headers = {"Authorization": f"Bearer {made}"}
    assert httpx.get(server.base_url + "/v1/videos", headers=headers).status_code == 200
    row.locator("button.revoke").click()
    expect(page.locator("#revoked")).to_contain_text(key_id)
    expect(page.locator(f'tr[data-key="{key_id}"] .state')).to_contain_text("revoked")
    assert httpx.get(server.base_url + "/v1/videos", headers=headers).status_code == 401

    page.click("#nav-all-usage")
    expect(page.locator("#usage")).to_be_visible()
    page.screenshot(path=shots / "dashboard-admin-usage.png", full_page=True)
    page.click("nav >> text=Health")
    expect(page.locator("#ready")).to_contain_text("ready")
    expect(page.locator("#models")).to_contain_text(QUICK_MODEL)
    page.screenshot(path=shots / "dashboard-admin-health.png", full_page=True)
    page.close()
