"""The viewer in real headless Chromium (Debian ``chromium`` + ``chromium-driver``).

Selenium drives /usr/bin/chromium through /usr/bin/chromedriver; nothing is downloaded.
The page talks to the live gateway of ``conftest.gateway`` (embedded worker, rule
engine ``fake-nq``), so every request below is a real HTTP round trip.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait

from service.client.api import Client
from service.client.report import render_report
from service.contract.results import ExplainResult, Feature
from service.contract.schemas import ExplainRequest
from service.viewer import examples
from tests.viewer.conftest import API_KEY, MODEL
from tests.viewer.sample import fast_result, with_candidates
from tests.viewer.test_client_live import nq_request

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1200,1400",
)
# Reads every highlighted span in one round trip.
MARKS_JS = """
return Array.from(document.querySelectorAll(arguments[0] + ' mark.feat')).map(m => ({
  document: Number(m.dataset.document), start: Number(m.dataset.start),
  end: Number(m.dataset.end), score: Number(m.dataset.score), text: m.textContent,
  title: m.title, colour: m.style.backgroundColor, tabindex: m.getAttribute('tabindex')}));
"""


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must never fetch a browser
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()


def marks(browser: webdriver.Chrome, scope: str = "#result") -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = browser.execute_script(MARKS_JS, scope)
    return found


def ordered(features: list[Feature]) -> list[Feature]:
    return sorted(features, key=lambda f: (f.document, f.start))


def level_features(result: ExplainResult, level: str) -> list[Feature]:
    return ordered(next(lv.features for lv in result.levels if lv.level == level))


def wait_for(browser: webdriver.Chrome, condition: Any, timeout: float = 30.0) -> Any:
    return WebDriverWait(browser, timeout, poll_frequency=0.05).until(condition)


def click_and_wait(browser: webdriver.Chrome, selector: str) -> None:
    button = browser.find_element(By.CSS_SELECTOR, selector)
    button.click()
    wait_for(browser, lambda _: button.get_attribute("aria-pressed") == "true", 5)


def resource_count(browser: webdriver.Chrome) -> int:
    return int(browser.execute_script("return performance.getEntriesByType('resource').length"))


def open_form(browser: webdriver.Chrome, gateway: str) -> None:
    browser.get(gateway + "/")
    wait_for(browser, lambda b: len(b.find_elements(By.CSS_SELECTOR, "#example option")) > 1)
    wait_for(browser, lambda b: b.find_element(By.ID, "model").get_attribute("value") == MODEL)


def assert_marks_match(found: list[dict[str, Any]], features: list[Feature], answer: int) -> None:
    assert [(m["document"], m["start"], m["end"]) for m in found] == [
        (f.document, f.start, f.end) for f in features
    ]
    assert [m["score"] for m in found] == pytest.approx([f.score[answer] for f in features])
    assert [m["text"] for m in found] == [f.text for f in features]


def test_viewer_explains_a_bundled_example_and_recolours_without_requests(
    browser: webdriver.Chrome, gateway: str, tmp_path: Path
) -> None:
    open_form(browser, gateway)
    Select(browser.find_element(By.ID, "example")).select_by_index(1)
    example = examples()[0]
    assert browser.find_element(By.ID, "question").get_attribute("value") == example["question"]
    Select(browser.find_element(By.ID, "levels")).select_by_value("document,sentence,word")
    browser.find_element(By.ID, "submit").click()
    wait_for(browser, lambda b: marks(b))
    job_id = parse_qs(urlparse(browser.current_url).query)["job"][0]
    with Client(gateway) as client:
        result = client.get(job_id).result
    assert result is not None
    assert "succeeded" in browser.find_element(By.ID, "job-status").text

    # default: the model's own answer at the finest level
    assert result.candidates[0].text == "Wilhelm Conrad Röntgen"
    words = marks(browser)
    assert_marks_match(words, level_features(result, "word"), 0)
    texts = browser.execute_script(
        "return Array.from(document.querySelectorAll('#result .doc-text')).map(p => p.textContent)"
    )
    assert texts == [d["text"] for d in example["documents"]]  # uncovered text shown plain
    assert all(m["tabindex"] == "0" for m in words)
    checks = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#result .checks li")]
    assert len(checks) == len(result.checks) == 6  # top 1, 2, 3 removed, then kept alone
    first = result.checks[0]
    assert checks[0].startswith(f"Without documents {first.documents[0] + 1}: ")
    assert ("answer changed" in checks[0]) == first.answer_changed
    requests_before = resource_count(browser)

    click_and_wait(browser, 'button.answer[data-index="1"]')
    moseley = marks(browser)
    assert_marks_match(moseley, level_features(result, "word"), 1)
    assert [m["colour"] for m in moseley] != [m["colour"] for m in words]

    click_and_wait(browser, 'button.level[data-level="sentence"]')
    sentences = marks(browser)
    assert_marks_match(sentences, level_features(result, "sentence"), 1)
    whole = [m for m in sentences if m["document"] == 3]  # not refined: one whole-document unit
    assert [(m["start"], m["end"]) for m in whole] == [(0, len(example["documents"][3]["text"]))]
    assert whole[0]["title"].endswith("(whole document)")

    click_and_wait(browser, 'button.level[data-level="document"]')
    documents = marks(browser)
    assert_marks_match(documents, level_features(result, "document"), 1)
    assert len(documents) == 5
    assert resource_count(browser) == requests_before  # re-coloured in the page only

    click_and_wait(browser, 'button.level[data-level="sentence"]')
    for _ in range(12):  # keyboard: Tab from the level buttons reaches the spans
        browser.switch_to.active_element.send_keys(Keys.TAB)
        if browser.switch_to.active_element.tag_name == "mark":
            break
    focused = browser.switch_to.active_element
    assert focused.get_attribute("class").startswith("feat")
    detail = browser.find_element(By.CSS_SELECTOR, "#result .detail").text
    score_text = focused.get_attribute("title").removeprefix("score ").split(" (")[0]
    assert detail.startswith("Document 1, ")
    assert f"score {score_text} for “Henry Moseley”" in detail
    assert re.fullmatch(r"[+−]\d\.\d{3} ± \d\.\d{3}", score_text)
    focused.send_keys(Keys.ARROW_RIGHT)  # arrows walk the spans
    following = browser.switch_to.active_element
    assert following.get_attribute("data-start") == str(sentences[1]["start"])
    assert focused.get_attribute("data-start") == str(sentences[0]["start"])

    legend = browser.find_element(By.CSS_SELECTOR, "#result .legend").text
    assert "against" in legend
    assert "for the answer" in legend
    shot = tmp_path / "viewer.png"
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000


def test_shared_link_shows_an_existing_job(browser: webdriver.Chrome, gateway: str) -> None:
    request = nq_request(["document", "sentence"])
    with Client(gateway) as client:
        accepted = client.submit(request)
        job = client.wait(accepted.job_id, timeout=30, poll_interval=0.02)
    assert job.result is not None
    browser.get(gateway + "/")
    browser.execute_script("sessionStorage.clear()")
    browser.get(f"{gateway}/?job={accepted.job_id}")
    wait_for(browser, lambda b: marks(b))
    assert_marks_match(marks(browser), level_features(job.result, "sentence"), 0)
    texts = browser.execute_script(
        "return Array.from(document.querySelectorAll('#result .doc-text')).map(p => p.textContent)"
    )
    assert texts == [d.text for d in request.document_objects()]
    share = browser.find_element(By.ID, "share").get_attribute("href")
    assert share == f"{gateway}/?job={accepted.job_id}"


def _error_after_submit(browser: webdriver.Chrome) -> str:
    browser.find_element(By.ID, "submit").click()
    box = browser.find_element(By.ID, "error")
    wait_for(browser, lambda _: box.is_displayed() and box.text, 10)
    return str(box.text)


def test_api_errors_are_shown_in_plain_words(browser: webdriver.Chrome, gateway: str) -> None:
    open_form(browser, gateway)
    documents = browser.find_element(By.ID, "documents")
    documents.send_keys('[{"text": "unfinished JSON"')
    assert _error_after_submit(browser).startswith(
        "The documents look like JSON but do not parse: "
    )
    documents.clear()
    documents.send_keys("A passage about nothing.")
    assert _error_after_submit(browser) == (
        "The request was not accepted: question: String should have at least 1 character."
    )
    browser.find_element(By.ID, "question").send_keys("who?")
    budget = browser.find_element(By.ID, "budget")
    budget.clear()
    budget.send_keys("999999")
    assert _error_after_submit(browser) == (
        "The request was not accepted: budget: budget 999999 is over the cap max_budget=4096."
    )
    browser.get(gateway + "/?job=does-not-exist")
    box = browser.find_element(By.ID, "error")
    wait_for(browser, lambda _: box.text, 10)
    assert box.text.startswith("No job does-not-exist (it may have expired).")


def test_report_file_renders_the_same_view_offline(
    browser: webdriver.Chrome,
    sample_request: ExplainRequest,
    sample_result: ExplainResult,
    tmp_path: Path,
) -> None:
    html = render_report(sample_request, sample_result)
    path = tmp_path / "report.html"
    path.write_text(html, encoding="utf-8")
    static = re.findall(
        r'data-score="([^"]+)"[^>]*title="([^"]+)" style="background-color: ([^;]+);', html
    )
    browser.get(path.as_uri())
    wait_for(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#result .levels button"))
    live = marks(browser)
    # the script re-rendered the pre-rendered view identically
    assert [(float(m["score"]), m["title"], m["colour"]) for m in live] == [
        (float(s), t, c) for s, t, c in static
    ]
    assert live[-1]["text"] == "Berlin <b>is</b> big 🐻."  # code-point offsets, escaped text
    chips = [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".doc-score")]
    assert chips == re.findall(r'<span class="doc-score">([^<]+)</span>', html)
    assert chips == ["document score +0.800 ± 0.050", "document score −0.100 ± 0.050"]
    click_and_wait(browser, 'button.answer[data-index="1"]')
    assert [m["score"] for m in marks(browser)] == [-0.2, 0.01, 0.0, -0.01, -0.1, 0.4]
    pieces = browser.execute_script(
        "return HeatMap.segments('a🐻b c', [{start: 1, end: 2}]).map(p => p.text)"
    )
    assert pieces == ["a", "🐻", "b c"]
    browser.save_screenshot(str(tmp_path / "report.png"))


def test_a_fast_reports_live_view_says_its_checks_ran_exact(
    browser: webdriver.Chrome,
    sample_request: ExplainRequest,
    sample_result: ExplainResult,
    tmp_path: Path,
) -> None:
    html = render_report(sample_request, fast_result(sample_result))
    path = tmp_path / "fast.html"
    path.write_text(html, encoding="utf-8")
    static = re.findall(r'<p class="fast-note">([^<]+)</p>', html)
    browser.get(path.as_uri())
    wait_for(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#result .levels button"))
    live = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#result .fast-note")]
    assert live == static  # the script words it as the server does, once
    assert "the same answer on 5 of their 7 contexts" in live[0]


STATUS_LOG_JS = """
window.statuses = [];
const node = document.getElementById('job-status');
new MutationObserver(() => window.statuses.push(node.textContent))
  .observe(node, {childList: true, characterData: true, subtree: true});
"""


def test_upload_progress_and_cancel_of_a_running_job(
    browser: webdriver.Chrome, gateway: str, tmp_path: Path
) -> None:
    first, second = examples()[0], examples()[1]
    upload = tmp_path / "job.json"
    upload.write_text(
        json.dumps({"question": first["question"], "documents": first["documents"] * 2}),
        encoding="utf-8",
    )
    open_form(browser, gateway)
    browser.find_element(By.ID, "upload").send_keys(str(upload))
    question = browser.find_element(By.ID, "question")
    wait_for(browser, lambda _: question.get_attribute("value") == first["question"], 5)
    pasted = browser.find_element(By.ID, "documents").get_attribute("value")
    assert pasted.count("Title: ") == 10
    assert pasted.startswith(f"Title: {first['documents'][0]['title']}\n")
    assert second["documents"][0]["text"] not in pasted
    Select(browser.find_element(By.ID, "levels")).select_by_value("document,sentence,word")
    budget = browser.find_element(By.ID, "budget")
    budget.clear()
    budget.send_keys("4096")
    browser.execute_script(STATUS_LOG_JS)
    browser.find_element(By.ID, "submit").click()
    status = browser.find_element(By.ID, "job-status")
    running = re.compile(r"Job \w+ on fake-nq: running, stage \w+ — \d+ / \d+ coalitions")
    wait_for(browser, lambda _: running.fullmatch(status.text), 20)
    bar = browser.find_element(By.ID, "progress")
    assert 0 <= float(bar.get_attribute("value")) <= float(bar.get_attribute("max"))
    browser.find_element(By.ID, "cancel").click()
    box = browser.find_element(By.ID, "error")
    wait_for(browser, lambda _: box.text, 20)
    assert box.text == "The job was cancelled before it finished."
    assert status.text.split(": ")[1].startswith("cancelled")
    seen = browser.execute_script("return window.statuses")
    assert any(running.fullmatch(s) for s in seen)
    assert not browser.find_element(By.ID, "cancel").is_displayed()
    assert browser.find_element(By.ID, "result").is_displayed() is False


def test_many_answers_show_the_top_eight_then_all_on_demand(
    browser: webdriver.Chrome,
    sample_request: ExplainRequest,
    sample_result: ExplainResult,
    tmp_path: Path,
) -> None:
    path = tmp_path / "many.html"
    path.write_text(render_report(sample_request, with_candidates(sample_result, 12)), "utf-8")
    browser.get(path.as_uri())
    more = wait_for(browser, lambda b: b.find_element(By.CSS_SELECTOR, "button.more-answers"))
    visible = [b.text.split("\n")[0] for b in browser.find_elements(By.CSS_SELECTOR, ".answer")]
    assert [t for t in visible if t] == ["paris", "berlin", *[f"rare {i}" for i in range(6)]]
    assert more.text == "Show all 12 answers"
    more.click()
    shown = [b for b in browser.find_elements(By.CSS_SELECTOR, ".answer") if b.is_displayed()]
    assert len(shown) == 12
    assert not browser.find_elements(By.CSS_SELECTOR, "button.more-answers")


KEY_NEEDED = "This server needs an API key. Enter it in the API key field above and try again."
KEY_REFUSED = "The API key was not accepted. Check it in the API key field above and try again."
# Logs every fetch the page makes (URL, method, X-API-Key sent) from the first script on.
FETCH_LOG_JS = """
window.apiCalls = [];
const realFetch = window.fetch.bind(window);
window.fetch = (url, init) => {
  const headers = (init && init.headers) || {};
  window.apiCalls.push([new URL(url, location.href).pathname, (init && init.method) || 'GET',
                        headers['X-API-Key'] || null]);
  return realFetch(url, init);
};
"""


def focused_id(browser: webdriver.Chrome) -> str:
    return str(browser.switch_to.active_element.get_attribute("id"))


def key_storage(browser: webdriver.Chrome) -> list[Any]:
    """[the key in sessionStorage, how many localStorage entries, the page URL]."""
    found: list[Any] = browser.execute_script(
        "return [sessionStorage.getItem('textgenshap:api-key'), localStorage.length, location.href]"
    )
    return found


@pytest.fixture
def fetch_log(browser: webdriver.Chrome) -> Iterator[None]:
    """Every page loaded during the test records its fetches in ``window.apiCalls``."""
    source = {"source": FETCH_LOG_JS}
    added = browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", source)
    try:
        yield
    finally:
        browser.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument", added)


def test_without_a_key_the_page_asks_for_one_then_explains_with_it(
    browser: webdriver.Chrome, keyed_gateway: str
) -> None:
    open_form(browser, keyed_gateway)  # /models, /examples and the page need no key
    field = browser.find_element(By.ID, "api-key")
    assert (field.get_attribute("type"), field.get_attribute("value")) == ("password", "")
    Select(browser.find_element(By.ID, "example")).select_by_index(1)
    assert _error_after_submit(browser) == KEY_NEEDED
    assert focused_id(browser) == "api-key"
    field.send_keys("not-the-key")
    assert _error_after_submit(browser) == KEY_REFUSED
    assert focused_id(browser) == "api-key"

    field.clear()
    field.send_keys(API_KEY)
    browser.find_element(By.ID, "submit").click()
    wait_for(browser, lambda b: marks(b))
    job_id = parse_qs(urlparse(browser.current_url).query)["job"][0]
    with Client(keyed_gateway, api_key=API_KEY) as client:
        job = client.get(job_id)  # the page's job belongs to the key it sent
    assert job.result is not None
    assert job.result.candidates[0].text == "Wilhelm Conrad Röntgen"
    assert_marks_match(marks(browser), level_features(job.result, "sentence"), 0)
    assert "succeeded" in browser.find_element(By.ID, "job-status").text
    assert not browser.find_element(By.ID, "error").is_displayed()
    assert key_storage(browser) == [API_KEY, 0, f"{keyed_gateway}/?job={job_id}"]


def test_a_shared_link_waits_for_the_key_and_every_call_carries_it(
    browser: webdriver.Chrome, keyed_gateway: str, fetch_log: None
) -> None:
    request = nq_request(["document"])
    with Client(keyed_gateway, api_key=API_KEY) as client:
        accepted = client.submit(request)
        job = client.wait(accepted.job_id, timeout=30, poll_interval=0.02)
    assert job.result is not None
    browser.get(keyed_gateway + "/")
    browser.execute_script("sessionStorage.clear()")
    link = f"{keyed_gateway}/?job={accepted.job_id}"
    browser.get(link)
    box = browser.find_element(By.ID, "error")
    wait_for(browser, lambda _: box.text, 10)
    assert box.text == KEY_NEEDED
    assert focused_id(browser) == "api-key"
    browser.find_element(By.ID, "api-key").send_keys(API_KEY, Keys.TAB)  # leaving it re-follows
    wait_for(browser, lambda b: marks(b))
    assert_marks_match(marks(browser), level_features(job.result, "document"), 0)
    assert not box.is_displayed()
    job_path = f"/jobs/{accepted.job_id}"
    calls = browser.execute_script("return window.apiCalls")
    assert calls == [
        ["/models", "GET", None],
        ["/examples", "GET", None],
        [job_path, "GET", None],
        [job_path, "GET", API_KEY],
    ]

    browser.get(link)  # same tab: the key is still there and goes out with every call
    wait_for(browser, lambda b: marks(b))
    assert browser.find_element(By.ID, "api-key").get_attribute("value") == API_KEY
    calls = browser.execute_script("return window.apiCalls")
    assert calls == [
        ["/models", "GET", API_KEY],
        ["/examples", "GET", API_KEY],
        [job_path, "GET", API_KEY],
    ]
    assert key_storage(browser) == [API_KEY, 0, link]
