"""The dashboard: login, each role's pages, CSRF and live events over HTTP, then in Chromium.

One coordinator (``clawfed coordinator --web-port``) and two nodes run as processes for the
whole module. The browser tests drive headless Chromium through selenium: each role sees
what it may and nothing else, a department head approves a job from the inbox, and a job's
round chart grows over server-sent events without a reload.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from dashboard_support import WAIT_S, LiveFederation, noop_job, wait_until

from clawfed.governance.policy import Role

pytestmark = pytest.mark.slow  # a coordinator and two nodes as processes (and a browser)


@contextmanager
def _login(live: LiveFederation, who: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live.url, timeout=WAIT_S) as c:
        r = c.post("/login", data={"token": live.tokens[who]})
        assert r.status_code == 303 and r.headers["location"] == "/dashboard", r.text
        assert "clawfed_session" in c.cookies
        cookie = r.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        yield c


def _csrf(html: str) -> str:
    marker = '<meta name="csrf-token" content="'
    start = html.index(marker) + len(marker)
    return html[start : html.index('"', start)]


def test_login_needs_a_valid_token(live: LiveFederation) -> None:
    with httpx.Client(base_url=live.url, timeout=WAIT_S) as c:
        assert c.get("/dashboard").headers["location"] == "/login"
        r = c.post("/login", data={"token": "cfd_nope"})
        assert r.status_code == 401 and "malformed" in r.text and "login-error" in r.text
        assert "clawfed_session" not in c.cookies
        assert c.get("/dashboard/events").status_code == 401


def test_each_role_sees_its_own_pages(live: LiveFederation) -> None:
    with _login(live, "admin") as c:
        home = c.get("/dashboard").text
        assert 'data-node="c1"' in home and 'data-node="r1"' in home
        assert 'id="nav-audit"' in home and 'id="nav-approvals"' in home
        assert 'href="/dashboard/jobs/warmup"' in home
        audit = c.get("/dashboard/audit").text
        assert 'id="verification" class="ok"' in audit and "chain intact" in audit
        versions = c.get("/dashboard/jobs/warmup/versions",
                         params={"a": "warmup@v1", "b": "warmup@v2"}).text  # fmt: skip
        assert 'data-version="warmup@v2"' in versions and 'id="diff-table"' in versions
        graph = json.loads(versions.split('id="lineage-data">')[1].split("</script>")[0])
        assert graph["edges"] == [["warmup@v1", "warmup@v2"]]
        contributions = c.get("/dashboard/jobs/warmup/contributions").text
        assert contributions.count("<td>credit</td>") == 2
        assert c.get("/dashboard/chat").status_code == 200
    with _login(live, "head") as c:
        home = c.get("/dashboard").text
        assert 'data-node="c1"' in home and 'data-node="r1"' not in home
        job = c.get("/dashboard/jobs/warmup").text
        assert 'id="departments">credit<' in job and "your department" in job
        chart = json.loads(job.split('id="chart-data">')[1].split("</script>")[0])
        assert set(chart["series"]) == {"credit"}
        approvals = c.get("/dashboard/approvals").text
        assert 'data-department="credit"' in approvals and 'data-department="risk"' not in approvals
        # Pending: an approve button (approved already: a revoke button).
        assert 'class="approve"' in approvals or 'class="revoke"' in approvals
        audit = c.get("/dashboard/audit").text
        assert "Audit log of credit" in audit and 'id="verification"' not in audit
    with _login(live, "employee") as c:
        home = c.get("/dashboard").text
        assert 'id="no-overview"' in home and 'data-node="c1"' not in home
        assert 'id="nav-services"' in home and 'id="nav-audit"' not in home
        denied = c.get("/dashboard/jobs/warmup")
        assert denied.status_code == 403 and 'id="denied"' in denied.text
        assert c.get("/dashboard/audit").status_code == 403
        services = c.get("/dashboard/services").text
        assert 'data-job="warmup"' in services
    with _login(live, "auditor") as c:
        home = c.get("/dashboard").text
        assert 'id="nav-audit"' in home and 'id="nav-overview"' not in home
        audit = c.get("/dashboard/audit").text
        assert "chain intact" in audit
        approvals = c.get("/dashboard/approvals").text
        assert 'data-job="gated"' in approvals and 'class="approve"' not in approvals


def test_a_session_change_needs_its_csrf_token(live: LiveFederation) -> None:
    with _login(live, "risk_head") as c:
        url = "/api/v1/approvals/gated/risk/revoke"
        r = c.post(url, json={"reason": "no"})
        assert r.status_code == 403 and r.json()["type"] == "urn:clawfed:problem:csrf"
        token = _csrf(c.get("/dashboard/approvals").text)
        assert c.get("/api/v1/me").json()["user_id"] == "rita"  # reads need no CSRF token
        r = c.post(url, json={"reason": "no"}, headers={"X-CSRF-Token": token + "x"})
        assert r.status_code == 403
        c.post("/logout", data={"csrf": token})
        assert c.get("/api/v1/me").status_code == 401


def _first_round(stream: httpx.Response, job_id: str) -> dict[str, object]:
    for line in stream.iter_lines():
        if line.startswith("data: "):
            event = json.loads(line[6:])
            assert isinstance(event, dict)
            if event["kind"] == "round_completed" and event["job_id"] == job_id:
                return event
    raise AssertionError("the event stream ended before a round completed")


def test_live_events_reach_each_viewer_cut_to_their_departments(live: LiveFederation) -> None:
    with (
        _login(live, "admin") as ada,
        _login(live, "head") as hugo,
        ada.stream("GET", "/dashboard/events") as whole,
        hugo.stream("GET", "/dashboard/events") as credit_only,
    ):
        assert whole.headers["content-type"].startswith("text/event-stream")
        live.submit(noop_job("stream", rounds=2))
        seen_by_admin = _first_round(whole, "stream")
        seen_by_head = _first_round(credit_only, "stream")
    assert seen_by_admin["round"] == seen_by_head["round"] == 1
    assert seen_by_admin["samples"] == {"credit": 1, "risk": 1}
    assert seen_by_head["samples"] == {"credit": 1}
    assert set(seen_by_head["departments"]) == {"credit"}  # type: ignore[arg-type]


# ---- in a browser ----------------------------------------------------------------------

CHROMEDRIVER = Path("/usr/bin/chromedriver")
_MISSING = (
    "headless Chromium is not installed (run scripts/browser-deps.sh as root: it installs "
    "Debian's chromium and chromium-driver)"
)
needs_browser = pytest.mark.skipif(
    not CHROMEDRIVER.is_file() or shutil.which("chromium") is None, reason=_MISSING
)

if CHROMEDRIVER.is_file():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    """A fresh headless Chromium (own profile folder), quit afterwards."""
    profile = tempfile.mkdtemp(prefix="clawfed-chromium-")
    options = webdriver.ChromeOptions()
    for flag in (
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1280,900",
    ):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _browser_login(driver: WebDriver, live: LiveFederation, who: str) -> None:
    driver.get(f"{live.url}/login")
    driver.find_element(By.ID, "token").send_keys(live.tokens[who])
    driver.find_element(By.ID, "login").click()
    wait_until(lambda: driver.current_url.endswith("/dashboard"), f"{who} to be logged in")


def _ids(driver: WebDriver, css: str) -> set[str]:
    return {str(e.get_attribute("id")) for e in driver.find_elements(By.CSS_SELECTOR, css)}


def _nodes(driver: WebDriver) -> set[str]:
    rows = driver.find_elements(By.CSS_SELECTOR, "#nodes tr[data-node]")
    return {str(r.get_attribute("data-node")) for r in rows}


@needs_browser
def test_each_role_sees_what_it_may_and_nothing_else(
    browser: WebDriver, live: LiveFederation
) -> None:
    expected = {
        "admin": (
            {"c1", "r1"},
            {"nav-overview", "nav-approvals", "nav-audit", "nav-services", "nav-chat"},
        ),
        "head": ({"c1"}, {"nav-overview", "nav-approvals", "nav-audit", "nav-chat"}),
        "employee": (set(), {"nav-services", "nav-chat"}),
        "auditor": (set(), {"nav-approvals", "nav-audit", "nav-chat"}),
    }
    for who, (nodes, nav) in expected.items():
        browser.delete_all_cookies()
        _browser_login(browser, live, who)
        assert _nodes(browser) == nodes, who
        assert _ids(browser, "#nav a") == nav, who
        if who == "employee":
            assert browser.find_element(By.ID, "no-overview").is_displayed()
            browser.get(f"{live.url}/dashboard/audit")
            assert "Not allowed" in browser.find_element(By.TAG_NAME, "h1").text
            browser.get(f"{live.url}/dashboard/services")
            services = browser.find_elements(By.CSS_SELECTOR, "section.service")
            assert [s.get_attribute("data-job") for s in services] == ["warmup"]
        if who in ("admin", "auditor"):
            browser.get(f"{live.url}/dashboard/audit")
            verification = browser.find_element(By.ID, "verification")
            assert "chain intact" in verification.text
        if who == "head":
            browser.get(f"{live.url}/dashboard/jobs/warmup")
            assert browser.find_element(By.ID, "departments").text == "credit"
            wait_until(lambda: browser.execute_script(
                "const c = document.getElementById('chart'); return c.data && c.data.length"
            ), "the chart to draw")  # fmt: skip
            names = browser.execute_script(
                "return document.getElementById('chart').data.map(t => t.name)"
            )
            assert names == ["credit"]


@needs_browser
def test_a_head_approves_from_the_inbox_and_the_job_uses_the_data(
    browser: WebDriver, live: LiveFederation
) -> None:
    _browser_login(browser, live, "head")
    browser.get(f"{live.url}/dashboard/approvals")
    row = browser.find_element(By.CSS_SELECTOR, '#approvals tr[data-job="gated"]')
    assert row.get_attribute("data-department") == "credit"
    assert len(browser.find_elements(By.CSS_SELECTOR, "#approvals tr[data-job]")) == 1
    row.find_element(By.CSS_SELECTOR, "button.approve").click()
    wait_until(lambda: row.find_element(By.CSS_SELECTOR, ".status").text == "approved",
               "the approval to show")  # fmt: skip
    assert "credit: approved for job gated" in browser.find_element(By.ID, "approval-result").text
    with live.client("admin") as c:
        approvals = c.get("/api/v1/approvals", params={"job": "gated"}).json()
        assert {a["department"]: a["decided_by"] for a in approvals}["credit"] == "hugo"

        def credit_trained() -> bool:
            rounds = c.get("/api/v1/jobs/gated/rounds").json()
            return any("c1" in [p["node_id"] for p in r["participants"]] for r in rounds)

        wait_until(credit_trained, "a round of job gated with credit's node")


@needs_browser
def test_a_round_chart_updates_live_without_a_reload(
    browser: WebDriver, live: LiveFederation
) -> None:
    if "watcher" not in live.tokens:
        live.tokens["watcher"] = live.add_user("wanda", Role.DATA_ADMIN)
    with live.client("admin") as c:  # make sure rounds run: risk's head approves via the API
        risk = c.get("/api/v1/approvals", params={"job": "gated"}).json()
    if {a["department"]: a["status"] for a in risk}["risk"] == "pending":
        with live.client("risk_head") as c:
            r = c.post("/api/v1/approvals/gated/risk/approve",
                       json={"purpose": "fraud detection"})  # fmt: skip
            assert r.status_code == 200, r.text
    _browser_login(browser, live, "watcher")
    browser.get(f"{live.url}/dashboard/jobs/gated")
    browser.execute_script("window.__notReloaded = 'yes';")
    points = "return document.getElementById('chart').data.reduce((n, t) => n + t.x.length, 0)"
    before = int(browser.execute_script(points))
    rows_before = len(browser.find_elements(By.CSS_SELECTOR, "#rounds tbody tr"))
    wait_until(lambda: len(browser.find_elements(By.CSS_SELECTOR, "#rounds tbody tr"))
               >= rows_before + 2, "two rounds to arrive over server-sent events")  # fmt: skip
    assert browser.execute_script("return window.__notReloaded") == "yes"
    assert int(browser.execute_script(points)) >= before + 2
    shown = int(browser.find_element(By.ID, "rounds-done").text)
    with live.client("admin") as c:
        assert shown <= c.get("/api/v1/jobs/gated").json()["rounds_done"]
