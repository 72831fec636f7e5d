"""The web chat as a clinician meets it: the widget embedded on another site, in real Chromium.

The API runs under uvicorn (extractive mode, the session's index) on 127.0.0.1; the host page
that embeds ``widget.js`` is served from 127.0.0.2, a different origin, so every request crosses
CORS. The first tests check how ``GET /`` and ``GET /widget.js`` are served without a browser.
"""

from __future__ import annotations

import gzip
import json
import os
import re
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from server.api.routes import web
from tests.browser_support import (
    ApiServer,
    Browser,
    chromium_missing_reason,
    start_api_server,
    start_browser,
    start_host_page_server,
)

API_KEY = "widget-test-key"
# A second key whose rate-limit bucket the 429 test empties; the other tests never use it.
BURST_KEY = "widget-burst-key"
RATE_LIMIT_PER_MINUTE = 20
ZH_QUESTION = "SPINET里兰瑞肽和安慰剂相比，治疗失败时间分别是多少？"
EN_QUESTION = "In AXINET, what did adding axitinib to octreotide LAR achieve versus SSA alone?"
EN_FOLLOW_UP = "Which patients did that trial enrol?"
TALENT_EN_QUESTION = "How many patients did the TALENT trial of lenvatinib enrol?"
LIST_QUESTION = "Which trials in the review tested immune checkpoint inhibitors in NEN?"
MARKUP_QUESTION = '<img src=x onerror="window.__xss=1">二甲双胍治疗2型糖尿病的起始剂量是多少？'
WIDGET_GZIP_BUDGET = 10 * 1024
ANSWER_TIMEOUT_S = 90
# Set to a path (e.g. docs/widget-screenshot.png) to keep the conversation screenshot there.
SCREENSHOT_ENV = "NENQA_WIDGET_SCREENSHOT"


def needs_chromium(test):
    """Fails (never skips) when Chromium is missing: `make test` installs it."""

    def check():
        reason = chromium_missing_reason()
        if reason:
            pytest.fail(f"{reason}; run scripts/ensure_chromium.sh (make test does)")

    import functools

    @functools.wraps(test)
    def wrapper(*args, **kwargs):
        check()
        return test(*args, **kwargs)

    return wrapper


def in_browser(test):
    """Marks a test that drives headless Chromium against a uvicorn process."""
    return pytest.mark.browser(pytest.mark.slow(needs_chromium(test)))


# --- Served without a browser -------------------------------------------------------------


@pytest.fixture(scope="module")
def web_client() -> TestClient:
    app = FastAPI()
    app.include_router(web.router)
    return TestClient(app)


def test_chat_page_is_html_that_runs_the_widget_and_is_always_revalidated(web_client):
    response = web_client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["cache-control"] == "no-cache"
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert '<script src="/widget.js" data-layout="page"' in response.text


def test_widget_script_is_javascript_cacheable_and_answers_304_when_unchanged(web_client):
    response = web_client.get("/widget.js")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/javascript; charset=utf-8"
    assert response.headers["cache-control"] == f"public, max-age={web.WIDGET_MAX_AGE_S}"
    assert response.headers["x-content-type-options"] == "nosniff"
    again = web_client.get("/widget.js", headers={"If-None-Match": response.headers["etag"]})
    assert again.status_code == 304
    assert again.content == b""
    stale = web_client.get("/widget.js", headers={"If-None-Match": '"an-older-version"'})
    assert stale.status_code == 200
    assert stale.content == response.content


def test_widget_is_small_and_never_parses_markup(web_client):
    source = web_client.get("/widget.js").content  # both parts, as a host page gets them
    for part in web.WIDGET_PARTS:
        assert (web.STATIC_DIR / part).read_bytes() in source, part
    assert len(gzip.compress(source, 9)) <= WIDGET_GZIP_BUDGET
    # Text from the server or the user must never become markup: no HTML-parsing sinks.
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in source.decode(), sink


# --- In the browser ------------------------------------------------------------------------


def _server_env(index_dir: Path, origin: str) -> dict[str, str]:
    return {
        "NENQA_INDEX_DIR": str(index_dir),
        "NENQA_ANSWER_MODE": "extractive",
        "NENQA_CORS_ORIGINS": origin,
        "NENQA_API_KEYS": f"{API_KEY},{BURST_KEY}",
        "NENQA_RATE_LIMIT_PER_MINUTE": str(RATE_LIMIT_PER_MINUTE),
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }


@pytest.fixture(scope="module")
def host_pages():
    server = start_host_page_server()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def api_server(indexed_settings, host_pages, tmp_path_factory):
    server = start_api_server(
        _server_env(indexed_settings.index_dir, host_pages.url), tmp_path_factory.mktemp("api")
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser():
    session = start_browser("en-US")
    yield session
    session.quit()


# The host page records on its own; on the server's own page this starts recording events.
RECORD_EVENTS_JS = """
if (!window.__nenqa) {
  window.__nenqa = { requests: [], events: [], updates: [] };
  for (const name of ["answer", "error", "open", "close"]) {
    document.addEventListener("nenqa:" + name, (event) =>
      window.__nenqa.events.push({ type: name, detail: event.detail }));
  }
}
"""


class Widget:
    """The embedded widget on the host page, reached through its open shadow root."""

    def __init__(self, browser: Browser, page_url: str) -> None:
        from selenium.webdriver.common.by import By

        self.by = By
        self.driver = browser.driver
        self.driver.get(page_url)
        self.root = self.driver.find_element(By.CSS_SELECTOR, "nenqa-chat").shadow_root
        self.driver.execute_script(RECORD_EVENTS_JS)

    def find(self, selector: str):
        return self.root.find_element(self.by.CSS_SELECTOR, selector)

    def find_all(self, selector: str):
        return self.root.find_elements(self.by.CSS_SELECTOR, selector)

    def js(self, body: str, *args):
        """Run ``body`` with ``root`` bound to the widget's shadow root."""
        script = "const root = document.querySelector('nenqa-chat').shadowRoot;\n" + body
        return self.driver.execute_script(script, *args)

    def text(self, selector: str) -> str:
        """The exact text of the first match (textContent, not the rendered text)."""
        return self.find(selector).get_property("textContent")

    def recorded(self) -> dict:
        return self.driver.execute_script("return window.__nenqa")

    def active(self) -> str:
        """The focused element inside the widget as ``tag.class#id``; '' when focus is outside."""
        return self.js(
            "const a = root.activeElement; if (!a) return '';"
            "return a.tagName.toLowerCase() + '.' + [...a.classList].join('.') + '#' + a.id;"
        )

    def ask(self, question: str) -> None:
        self.find("textarea").send_keys(question)
        self.find("button[type=submit]").click()

    def wait_for_outcome(self, count: int) -> dict:
        """Wait for the ``count``-th answer or error event and return it."""
        from selenium.webdriver.support.ui import WebDriverWait

        def outcome(driver):
            events = driver.execute_script("return window.__nenqa.events")
            done = [e for e in events if e["type"] in ("answer", "error")]
            return done[count - 1] if len(done) >= count else False

        return WebDriverWait(self.driver, ANSWER_TIMEOUT_S).until(outcome)

    def last_assistant_text(self) -> str:
        return self.js("const b = root.querySelectorAll('.msg.assistant .body');"
                       "return b.length ? b[b.length - 1].textContent : '';")  # fmt: skip


def _api_get(server: ApiServer, path: str, key: str = API_KEY) -> httpx.Response:
    return httpx.get(server.url + path, headers={"Authorization": f"Bearer {key}"}, timeout=30)


def _reference_entry(server: ApiServer, number: int) -> str:
    response = _api_get(server, f"/v1/references/{number}")
    assert response.status_code == 200, response.text
    body = response.json()
    return body.get("text") or body["reference"]


CONTRAST_JS = """
const parse = (c) => (c.match(/[\\d.]+/g) || []).map(Number);
const lum = ([r, g, b]) => {
  const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
  return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
};
const background = (node) => {
  for (; node; node = node.parentElement || (node.getRootNode() && node.getRootNode().host)) {
    const c = parse(getComputedStyle(node).backgroundColor);
    if (c.length === 3 || c[3] > 0) return c.slice(0, 3);
  }
  return [255, 255, 255];
};
return arguments[0].map((selector) => {
  const node = root.querySelector(selector);
  if (!node) return [selector, null];
  const a = lum(parse(getComputedStyle(node).color)), b = lum(background(node));
  return [selector, (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05)];
});
"""


@in_browser
def test_chinese_answer_streams_in_and_a_citation_shows_the_full_reference(
    browser, api_server, host_pages, tmp_path
):
    # slow: the host page hands the widget each response in 48-byte pieces, 20 ms apart.
    page = host_pages.page_url(api_server.url, lang="zh", key=API_KEY, fresh="1", slow="20")
    widget = Widget(browser, page)
    launcher = widget.find(".launcher")
    assert re.search(r"[\u4e00-\u9fff]", launcher.text), "data-lang=zh gives Chinese UI strings"
    launcher.click()
    assert widget.active() == "textarea.#q"

    widget.ask(ZH_QUESTION)
    assert not widget.find("textarea").is_enabled(), "input is disabled while a request runs"
    assert widget.find(".cancel").is_displayed(), "a Cancel button is offered"
    outcome = widget.wait_for_outcome(1)
    assert outcome["type"] == "answer", outcome

    final = widget.last_assistant_text()
    seen = list(dict.fromkeys(widget.recorded()["updates"]))
    partial = [t for t in seen if t and t != final and final.startswith(t)]
    assert partial, f"no partial text was shown before the answer was complete: {seen}"
    assert widget.find("textarea").is_enabled()

    cited = sorted({c["ref"] for c in outcome["detail"]["citations"]})
    buttons = [b for b in widget.find_all(".msg.assistant .cite") if b.text.startswith("[")]
    assert cited and all(1 <= n <= 50 for n in cited)
    assert sorted({int(b.text.strip("[]")) for b in buttons}) == cited

    # The picture starts at the question: the log scrolls it into view at its top.
    widget.js("const log = root.querySelector('.log'); const q = root.querySelector('.msg.user');"
              "log.scrollTop = q.offsetTop - log.offsetTop - 8;")  # fmt: skip
    if os.environ.get(SCREENSHOT_ENV):
        browser.driver.save_screenshot(os.environ[SCREENSHOT_ENV])
    assert browser.driver.save_screenshot(str(tmp_path / "conversation.png"))

    first = buttons[0]
    number = int(first.text.strip("[]"))
    first.click()
    assert widget.find(".ref").is_displayed()
    assert not widget.find(".log").is_displayed()
    assert str(number) in widget.find(".ref h3").text
    assert widget.text(".ref p") == _reference_entry(api_server, number)
    quotes = [q.get_property("textContent") for q in widget.find_all(".ref blockquote")]
    citation = next(c for c in outcome["detail"]["citations"] if c["ref"] == number)
    assert quotes == [q["text"] for q in citation["quotes"]]
    assert widget.active() == "h3.#ref-title", "focus moves to the reference"

    widget.find(".ref .back").click()
    assert widget.find(".log").is_displayed()
    assert widget.active() == "button.cite#", "focus returns to the citation"


@in_browser
def test_english_conversation_by_keyboard_alone_keeps_history_until_a_new_conversation(
    browser, api_server, host_pages
):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    # No data-lang: the browser's language (en-US) chooses English.
    page = host_pages.page_url(api_server.url, key=API_KEY)
    widget = Widget(browser, page + "&fresh=1")

    def press(*sequence):
        ActionChains(browser.driver).send_keys(*sequence).perform()

    for _ in range(4):  # the host page's link comes first, then the launcher
        press(Keys.TAB)
        if widget.active() == "button.launcher#":
            break
    assert widget.active() == "button.launcher#"
    assert widget.find(".launcher").text == "Ask the NEN review"
    press(Keys.ENTER)
    assert widget.find(".panel").is_displayed()
    assert widget.active() == "textarea.#q"

    press(EN_QUESTION, Keys.ENTER)
    first = widget.wait_for_outcome(1)
    assert first["type"] == "answer", first
    assert first["detail"]["citations"], "the English question is answered with citations"
    assert widget.active() == "textarea.#q", "focus comes back to the question box"

    press(EN_FOLLOW_UP, Keys.ENTER)
    second = widget.wait_for_outcome(2)
    assert second["type"] == "answer", second
    sent = json.loads(widget.recorded()["requests"][-1]["body"])["messages"]
    assert sent == [
        {"role": "user", "content": EN_QUESTION},
        {"role": "assistant", "content": first["detail"]["answer"]},
        {"role": "user", "content": EN_FOLLOW_UP},
    ]

    # Shift+Tab from the question box reaches the last citation of the last answer.
    ActionChains(browser.driver).key_down(Keys.SHIFT).send_keys(Keys.TAB).key_up(
        Keys.SHIFT
    ).perform()
    assert widget.active().startswith("button.cite")
    press(Keys.ENTER)
    assert widget.find(".ref").is_displayed()
    assert widget.active() == "h3.#ref-title"
    press(Keys.ESCAPE)
    assert widget.find(".log").is_displayed()
    assert widget.active().startswith("button.cite")
    press(Keys.ESCAPE)
    assert not widget.find(".panel").is_displayed()
    assert widget.active() == "button.launcher#"

    # The same tab, the page loaded again: the conversation is still there.
    widget = Widget(browser, page)
    widget.find(".launcher").click()
    shown = [m.get_property("textContent") for m in widget.find_all(".msg.user .body")]
    assert shown == [EN_QUESTION, EN_FOLLOW_UP]

    widget.find(".reset").click()
    assert widget.find_all(".msg.user") == []
    assert widget.find_all(".msg.assistant") == []
    stored = browser.driver.execute_script("return sessionStorage.getItem(arguments[0])",
                                           "nenqa-chat:" + api_server.url)  # fmt: skip
    assert json.loads(stored) == []


@in_browser
def test_an_english_answer_quotes_english_and_a_quote_reveals_its_chinese_original(
    browser, api_server, host_pages
):
    from selenium.webdriver.common.keys import Keys

    # data-lang=en: the page chose English, so the widget asks for English answers.
    widget = Widget(browser, host_pages.page_url(api_server.url, lang="en", key=API_KEY, fresh="1"))
    widget.find(".launcher").click()
    widget.ask(TALENT_EN_QUESTION)
    outcome = widget.wait_for_outcome(1)
    assert outcome["type"] == "answer", outcome
    assert json.loads(widget.recorded()["requests"][-1]["body"])["lang"] == "en"
    assert widget.last_assistant_text().startswith("Translated from the review")
    citation = next(c for c in outcome["detail"]["citations"] if c["ref"] == 17)
    english, chinese = citation["quotes"][0]["text"], citation["quotes"][0]["original"]
    assert not re.search(r"[\u4e00-\u9fff]", english) and "55例" in chinese

    widget.js("[...root.querySelectorAll('.msg.assistant .cite')]"
              ".find((b) => b.textContent === '[17]').click();")  # fmt: skip
    quote = widget.find(".ref .quote")
    original = widget.find(".ref blockquote .orig[lang='zh-CN']")
    assert quote.get_property("textContent") == english
    assert not original.is_displayed() and quote.get_attribute("aria-expanded") == "false"
    quote.click()
    assert original.is_displayed() and chinese in original.get_property("textContent")
    assert quote.get_attribute("aria-expanded") == "true"
    quote.send_keys(Keys.ENTER)  # the keyboard hides it again
    assert not original.is_displayed()
    quote.send_keys(Keys.SPACE)
    assert original.is_displayed()


@in_browser
def test_markup_in_a_question_shows_as_text_and_an_abstention_is_labelled(
    browser, api_server, host_pages
):
    page = host_pages.page_url(api_server.url, lang="zh", key=API_KEY, fresh="1", hostile="1")
    widget = Widget(browser, page)
    launcher = widget.find(".launcher")
    # The host page hides every button and paints all text red; the shadow DOM keeps its own.
    assert launcher.is_displayed()
    assert launcher.value_of_css_property("color") == "rgba(255, 255, 255, 1)"
    launcher.click()
    assert widget.find(".foot").value_of_css_property("font-size") == "12px"

    widget.ask(MARKUP_QUESTION)
    outcome = widget.wait_for_outcome(1)
    assert widget.text(".msg.user .body") == MARKUP_QUESTION
    assert widget.find_all("img") == []
    assert browser.driver.execute_script("return window.__xss") is None

    assert outcome["type"] == "answer", outcome
    assert outcome["detail"]["abstained"] is True
    assert outcome["detail"]["citations"] == []
    bubble = widget.find(".msg.assistant")
    assert "abstained" in bubble.get_attribute("class").split()
    assert widget.text(".msg.assistant .badge") == "综述中没有答案"
    assert widget.find_all(".msg.assistant .cite") == []

    ratios = dict(widget.js(CONTRAST_JS, [
        ".launcher", "header h2", ".msg.user .body", ".msg.assistant .body",
        ".msg.assistant .badge", ".foot", "textarea", "button[type=submit]",
    ]))  # fmt: skip
    low = {selector: ratio for selector, ratio in ratios.items() if not ratio or ratio < 4.5}
    assert not low, f"text below WCAG AA contrast 4.5:1: {low}"


@in_browser
def test_missing_key_and_rate_limit_are_explained_in_words(browser, api_server, host_pages):
    widget = Widget(browser, host_pages.page_url(api_server.url, lang="en", fresh="1"))
    widget.find(".launcher").click()
    widget.ask(EN_QUESTION)
    outcome = widget.wait_for_outcome(1)
    assert outcome["type"] == "error" and outcome["detail"]["kind"] == "auth", outcome
    assert "401" in widget.find(".msg.error").text
    assert "API key" in widget.find(".msg.error").text
    assert widget.find("textarea").get_property("value") == EN_QUESTION, "question kept to retry"

    for _ in range(RATE_LIMIT_PER_MINUTE + 1):
        refused = _api_get(api_server, "/v1/references/1", key=BURST_KEY)
        if refused.status_code == 429:
            break
    assert refused.status_code == 429, "the burst key's bucket could not be emptied"
    retry_after = int(refused.headers["Retry-After"])

    widget = Widget(
        browser, host_pages.page_url(api_server.url, lang="en", key=BURST_KEY, fresh="1")
    )
    widget.find(".launcher").click()
    widget.ask(EN_QUESTION)
    outcome = widget.wait_for_outcome(1)
    assert outcome["type"] == "error" and outcome["detail"]["kind"] == "rate", outcome
    message = widget.find(".msg.error").text
    assert "429" in message
    match = re.search(r"Try again in (\d+) seconds", message)
    assert match, f"no retry time in {message!r} (is Retry-After exposed by CORS?)"
    assert 0 < int(match.group(1)) <= retry_after


@in_browser
def test_chat_page_runs_the_widget_full_page_under_its_security_policy(browser, api_server):
    widget = Widget(browser, api_server.url + "/")
    assert widget.find_all(".launcher") == [], "the page has no launcher: the chat is the page"
    assert widget.find(".panel").is_displayed()
    assert widget.find("h1").text
    widget.find("textarea").click()
    # The page carries no API key and this server requires one: the widget says so.
    widget.ask(EN_QUESTION)
    outcome = widget.wait_for_outcome(1)
    assert outcome["type"] == "error" and outcome["detail"]["kind"] == "auth", outcome
    assert "401" in widget.text(".msg.error")


@pytest.fixture
def stoppable_api_server(indexed_settings, host_pages, tmp_path):
    server = start_api_server(_server_env(indexed_settings.index_dir, host_pages.url), tmp_path)
    yield server
    server.stop()


@in_browser
def test_cancel_and_a_stopped_server_are_reported_in_words(
    browser, stoppable_api_server, host_pages
):
    server = stoppable_api_server
    page = host_pages.page_url(server.url, lang="en", key=API_KEY, fresh="1", slow="500")
    widget = Widget(browser, page)
    widget.find(".launcher").click()

    widget.ask(EN_QUESTION)
    cancel = widget.find(".cancel")
    assert cancel.is_displayed()
    cancel.click()
    outcome = widget.wait_for_outcome(1)
    assert outcome["type"] == "error" and outcome["detail"]["kind"] == "cancelled", outcome
    assert widget.find(".msg.info:last-child").text == "Request cancelled."
    assert widget.find("textarea").is_enabled()

    server.stop()
    widget.find("textarea").clear()
    widget.ask(EN_FOLLOW_UP)
    outcome = widget.wait_for_outcome(2)
    assert outcome["type"] == "error" and outcome["detail"]["kind"] == "network", outcome
    message = widget.find(".msg.error").text
    assert "Cannot reach the server" in message and server.url in message
    assert widget.find("textarea").is_enabled()
    assert widget.find_all(".msg.assistant") == [], "no empty answer bubble is left behind"


TABLE_JS = """
const tables = root.querySelectorAll('.msg.assistant table');
const table = tables[tables.length - 1];
if (!table) return null;
const texts = (nodes) => [...nodes].map((n) => n.textContent);
return {
  columns: texts(table.querySelectorAll('thead th[scope=col]')),
  names: texts(table.querySelectorAll('tbody tr > th[scope=row]:first-child')),
  rows: [...table.querySelectorAll('tbody tr')].map((r) => r.children.length),
  cites: [...table.querySelectorAll('tbody tr')].map((r) =>
    texts(r.lastElementChild.querySelectorAll('button.cite'))),
  markdownLeft: /\\|\\s*---/.test(table.closest('.body').textContent),
};
"""


@in_browser
def test_a_list_question_gets_a_table_whose_citations_open_their_passages(
    browser, api_server, host_pages
):
    from selenium.webdriver.common.keys import Keys

    page = host_pages.page_url(api_server.url, lang="en", key=API_KEY)
    widget = Widget(browser, page + "&fresh=1")
    widget.find(".launcher").click()
    widget.ask(LIST_QUESTION)
    outcome = widget.wait_for_outcome(1)
    assert outcome["type"] == "answer", outcome
    table = widget.js(TABLE_JS)
    assert table is not None, widget.last_assistant_text()[:500]
    assert table["columns"] == ["Trial", "Design and phase", "Patients", "Population", "Arms",
                                "Key results", "Cite"]  # fmt: skip
    assert len(table["names"]) >= 10 and set(table["rows"]) == {7}
    assert set(table["names"][:2]) == {"CASPIAN", "IMpower133"}, "phase III trials first"
    assert "Keynote-158" in table["names"]
    assert all(cites for cites in table["cites"]), "every row carries its citation"
    assert not table["markdownLeft"], "no Markdown table syntax is left as text"

    # Keyboard: a numbered citation in the table opens its reference and quoted passage.
    row = table["names"].index("CASPIAN")
    button = widget.find_all(".msg.assistant tbody tr")[row].find_element(
        widget.by.CSS_SELECTOR, "td:last-child button.cite"
    )
    number = int(button.text.strip("[]"))
    button.send_keys(Keys.ENTER)
    assert widget.find(".ref").is_displayed() and widget.active() == "h3.#ref-title"
    citation = next(c for c in outcome["detail"]["citations"] if c["ref"] == number)
    quotes = [q.get_property("textContent") for q in widget.find_all(".ref blockquote")]
    assert quotes and quotes == [q["text"] for q in citation["quotes"]]
    widget.find(".ref .back").click()
    assert widget.active() == "button.cite#", "focus returns to the table's citation"

    # A trial the review names without a marker is cited by its section, and opens it too.
    section = widget.js("const b = [...root.querySelectorAll('.msg.assistant tbody .cite')]"
                        ".find((b) => b.textContent.startsWith('§')); b.click();"
                        "return b.textContent.slice(1);")  # fmt: skip
    assert widget.find(".ref").is_displayed()
    assert section in widget.text(".ref p")
    assert all(q.get_property("textContent") for q in widget.find_all(".ref blockquote"))
    widget.find(".ref .back").click()

    # Reloaded, the conversation draws the table again from its Markdown; so does the chat page.
    widget = Widget(browser, page)
    widget.find(".launcher").click()
    assert widget.js(TABLE_JS) == table
    key = "nenqa-chat:" + api_server.url
    stored = browser.driver.execute_script("return sessionStorage.getItem(arguments[0])", key)
    widget = Widget(browser, api_server.url + "/")
    browser.driver.execute_script("sessionStorage.setItem(arguments[0], arguments[1])", key, stored)
    widget = Widget(browser, api_server.url + "/")
    assert widget.js(TABLE_JS) == table
