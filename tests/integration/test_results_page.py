"""The results page in a real headless Chromium (Debian's chromium and chromium-driver, driven by
selenium): the demo's risky plan with its findings and summary, live status, the re-run button, and
user text that stays text. Nothing is downloaded at run time; a missing browser fails the test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from plancheck.api import Plancheck
from plancheck.checks.session import libpq_url
from plancheck.devtools import demo
from tests.integration.conftest import ApiServer
from tests.integration.helpers import TargetDatabase, make_target, register_target
from tests.integration.test_api_server import submit, wait_finished
from tests.processes import Cluster

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
INSTALL = "apt-get update && apt-get install -y chromium chromium-driver"
# The machine's network is closed: without these Chromium keeps trying to reach Google's services.
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1000",
)
SAMPLE = demo.SampleDatabase("shop", "test", {"app": "shop"}, customers=300, orders=800, items=2_000)
RISKY = demo.PLANS[1]
LIVE_TIMEOUT = 120.0


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if missing:
        pytest.fail(f"{', '.join(missing)} not found: the page tests need Debian's Chromium: {INSTALL}")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (*CHROMIUM_ARGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=str(CHROMEDRIVER), log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(options=options, service=service)
    try:
        yield driver
    finally:
        driver.quit()


def shop_database(create_database: Callable[[str], str]) -> tuple[str, str]:
    """A fresh database with the demo's shop schema and rows, ANALYZEd; returns (url, name)."""
    url = create_database("shop")
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        with conn.transaction():
            conn.execute(
                demo.SCHEMA_SQL.format(customers=SAMPLE.customers, orders=SAMPLE.orders, items=SAMPLE.items).encode()
            )
        conn.execute("ANALYZE")
    return url, url.rsplit("/", 1)[1].split("?")[0]


def log_in(browser: WebDriver, server: ApiServer, token: str) -> None:
    browser.get(f"{server.url}/projects")  # no session yet: the login page
    assert browser.current_url.startswith(f"{server.url}/login")
    browser.find_element(By.ID, "token").send_keys(token)
    browser.find_element(By.CSS_SELECTOR, "form.login button").click()
    WebDriverWait(browser, 30).until(lambda driver: driver.current_url == f"{server.url}/projects")


def text_of(browser: WebDriver, selector: str) -> str:
    return str(browser.find_element(By.CSS_SELECTOR, selector).text)


def browser_errors(browser: WebDriver) -> list[str]:
    """Console errors, CSP violations included."""
    return [entry["message"] for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]


def screenshot(browser: WebDriver, path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The whole page (the window grown to its height), written to `path`, which is printed."""
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1400, max(1000, int(height)))
    browser.execute_script("window.scrollTo(0, 0)")
    assert browser.save_screenshot(str(path)), path
    with capsys.disabled():
        print(f"\nscreenshot of the plan page: {path}")


def test_the_demo_risky_plan_in_chromium(
    api: Plancheck,
    api_server: ApiServer,
    make_token: Callable[..., str],
    create_database: Callable[[str], str],
    cluster: Cluster,
    browser: WebDriver,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    staging = register_target(api, *shop_database(create_database), project="demo", instance="demo-pg")
    prod = register_target(api, *shop_database(create_database), project="demo", instance="demo-pg")
    cluster.worker("w1")
    token = make_token("read")
    with api_server.client(make_token("submit")) as http:
        plan_id = submit(http, "demo", sql=RISKY.sql, targets=[staging.target, prod.target], title=RISKY.title)
        assert wait_finished(http, plan_id)["status"] == "DONE"

    log_in(browser, api_server, token)
    browser.find_element(By.LINK_TEXT, "demo").click()
    browser.find_element(By.LINK_TEXT, RISKY.title).click()
    assert browser.current_url == f"{api_server.url}/plans/{plan_id}"

    assert text_of(browser, "h1") == RISKY.title
    assert text_of(browser, "#live-status") == "DONE"
    # the SQL, findings marked on their lines
    for line, level, rule in (
        (1, "error", "statement.where-require-update-delete"),
        (2, "error", "statement.where-require-update-delete"),
        (3, "warning", "column.no-volatile-default"),
        (4, "warning", "index.create-concurrently"),
        (5, "warning", "column.disallow-set-not-null"),
    ):
        row = browser.find_element(By.ID, f"L{line}")
        assert f"level-{level}" in str(row.get_attribute("class")), line
        assert f"{level.upper()} {rule}" in row.text, (line, row.text)
    assert "DELETE FROM order_items;" in text_of(browser, "#L1 .code")
    # one findings table per target: level, rule, line:col, message, fix
    sections = browser.find_elements(By.CSS_SELECTOR, "article.target")
    assert [section.find_element(By.TAG_NAME, "h3").text.split(" ")[0] for section in sections] == sorted(
        [staging.target, prod.target]
    )
    for section in sections:
        headers = [cell.text for cell in section.find_elements(By.CSS_SELECTOR, "table.findings th")]
        assert headers == ["level", "rule", "line:col", "message", "fix"]
        first = section.find_elements(By.CSS_SELECTOR, "table.findings tbody tr")[0]
        cells = [cell.text for cell in first.find_elements(By.TAG_NAME, "td")]
        assert cells[:3] == ["ERROR", "statement.where-require-update-delete", "1:13"], cells
        assert "no WHERE clause" in cells[3] and cells[4].startswith("how to fix")
        guidance = first.find_element(By.CSS_SELECTOR, "td.fix details p")
        assert not guidance.is_displayed()
        first.find_element(By.CSS_SELECTOR, "td.fix summary").click()  # opens the rule's guidance
        assert guidance.is_displayed() and "Add a WHERE clause" in guidance.text
        # the summary report: statement types, estimated affected rows, touched tables
        summary = section.find_element(By.CSS_SELECTOR, ".summary")
        assert "DELETE × 1" in summary.text and "UPDATE × 1" in summary.text and "ALTER_TABLE × 2" in summary.text
        rows = int(summary.find_element(By.CSS_SELECTOR, ".affected-rows").text.lstrip("~").replace(",", ""))
        assert rows >= SAMPLE.items  # the DELETE alone touches every order item
        assert "public.order_items" in summary.text and "public.customers" in summary.text
    # the attempts timeline
    attempts = browser.find_element(By.CSS_SELECTOR, "table.attempts")
    headers = [cell.text for cell in attempts.find_elements(By.TAG_NAME, "th")]
    assert headers[:7] == ["generation", "attempt", "worker", "claimed_at", "started_at", "finished_at", "outcome"]
    (attempt,) = attempts.find_elements(By.CSS_SELECTOR, "tbody tr")
    assert "w1@" in attempt.text and attempt.text.split()[-2] == "DONE"
    assert browser.find_elements(By.ID, "rerun") == []  # a read token sees no buttons
    assert browser_errors(browser) == []
    screenshot(browser, tmp_path / "plan-page.png", capsys)


def test_live_status_the_rerun_button_and_escaping_in_chromium(
    api: Plancheck,
    api_server: ApiServer,
    make_token: Callable[..., str],
    create_database: Callable[[str], str],
    cluster: Cluster,
    browser: WebDriver,
) -> None:
    """No worker yet: the page polls; a worker starts and the page shows DONE by itself. Then the
    re-run button (submit scope, CSRF token in the form) queues generation 2, which also finishes live."""
    target: TargetDatabase = register_target(api, *make_target(create_database, rows=20))
    title = "<img src=x onerror=\"document.title='pwned'\"> & <b>bold</b>"
    sql = "SELECT 1; -- </td></tr></table><script>document.title = 'pwned'</script>\n"
    token = make_token("submit")
    with api_server.client(token) as http:
        plan_id = submit(http, sql=sql, targets=[target.target], title=title)

    log_in(browser, api_server, token)
    browser.get(f"{api_server.url}/plans/{plan_id}")
    assert text_of(browser, "#live-status") in ("AVAILABLE", "RUNNING")
    assert "live" in text_of(browser, "#run")
    cluster.worker("w1")
    WebDriverWait(browser, LIVE_TIMEOUT).until(lambda driver: text_of(driver, "#live-status") == "DONE")
    assert browser.find_elements(By.CSS_SELECTOR, "script") == []  # finished: the poller is gone

    # user text is shown as text, never run or parsed as markup
    assert text_of(browser, "h1") == title
    assert "</td></tr></table><script>" in text_of(browser, "#L1 .code")
    assert browser.title == f"Plan {plan_id}: {title} · plancheck"  # the onerror never ran
    assert browser.find_elements(By.CSS_SELECTOR, "img, h1 *, td.code *") == []

    browser.find_element(By.ID, "rerun").click()
    WebDriverWait(browser, LIVE_TIMEOUT).until(
        lambda driver: "run generation 2" in text_of(driver, "#run") and text_of(driver, "#live-status") == "DONE"
    )
    assert api.checks(plan_id).generation == 2
    assert browser_errors(browser) == []
