"""The inspector page in a real browser: headless Chromium from the OS packages, driven by
Playwright through `executable_path` (no downloaded browser build).

A live server (uvicorn in a thread, loopback, a free port) serves the demo conversation with
the scripted model. The test picks scopes, searches, asks a question that escalates, checks
that the trace is drawn (path, each signal against its threshold, the evidence highlighted in
the history, cost per phase), browses a benchmark folder, and saves screenshots to
`test-artifacts/` (or $DUALMEM_TEST_ARTIFACTS). Without Chromium or Playwright it is skipped,
and the skip says why.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from dualmem import DualMemory
from dualmem.demo import ingest_demo, load_demo
from dualmem.serve import ServeSettings, create_app
from dualmem.testing import ScriptedLLM, ScriptedReply
from dualmem.types import Scope
from tests.test_serve_api import PNG, record

pytestmark = pytest.mark.browser
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (dev group)")
uvicorn = pytest.importorskip("uvicorn", reason="uvicorn is not installed (the serve extra)")

ARTIFACTS = Path(os.environ.get("DUALMEM_TEST_ARTIFACTS", Path(__file__).parent.parent / "test-artifacts"))
QUESTION = "Which city does Maya live in now?"


@pytest.fixture(scope="module")
def chromium() -> str:
    found = os.environ.get("DUALMEM_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.skip("no Chromium from the OS packages (apt-get install chromium, or set DUALMEM_CHROMIUM)")
    return found


def select_porto(request) -> str:
    """System 2's line selection: the numbered line that says she moved to Porto (one session's,
    so the answer is read from it and its neighbours at once)."""
    lines = re.findall(r"^(\d+)\. (.*)$", request.messages[-1]["content"], re.M)
    return json.dumps({"lines": [int(n) for n, line in lines if "moved to Porto" in line]})


@contextmanager
def live(app) -> Iterator[str]:
    """uvicorn on a loopback port chosen by the OS, in a thread, until the block ends."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[str]:
    llm = ScriptedLLM(
        by_task={
            "answer": lambda request: ScriptedReply("Lisbon", confidence=0.9),  # stale: Maya moved
            "deliberate.select": select_porto,
            "deliberate.answer": lambda request: ScriptedReply("Porto", confidence=0.9),
        }
    )
    # the model selects lines (scripted above), so the trace has a selection phase to draw
    memory = DualMemory(path=tmp_path_factory.mktemp("browser"), llm=llm, extract=False,
                        deliberation={"select_lines": "model"})
    ingest_demo(memory, load_demo(), echo=lambda line: None)
    run = tmp_path_factory.mktemp("runs") / "dev-run"
    run.mkdir()
    (run / "questions.jsonl").write_text(
        "".join(
            [
                record(
                    "gate:signals",
                    0,
                    0.0,
                    gate_escalate=True,
                    gate_signals={"coverage": 0.2, "recency": None},
                ),
                record(
                    "gate:signals",
                    1,
                    1.0,
                    gate_escalate=False,
                    gate_signals={"coverage": 0.9, "recency": 0.8},
                ),
                record("gate:signals", 2, 0.0, gate_escalate=False),
            ]
        )
    )
    (run / "risk-coverage.png").write_bytes(PNG)
    settings = ServeSettings(demo=Scope(user_id="maya"), runs=[run])
    with live(create_app(memory, settings, close=True)) as url:
        yield url


@pytest.fixture()
def page(chromium: str, site: str):
    with sync_api.sync_playwright() as p:
        # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        tab = browser.new_page(viewport={"width": 1500, "height": 1080})
        errors: list[str] = []
        tab.on("pageerror", lambda error: errors.append(str(error)))
        tab.on("console", lambda message: message.type == "error" and errors.append(message.text))
        tab.goto(site)
        yield tab
        browser.close()
        assert errors == [], f"the page logged errors: {errors}"


def test_the_page_draws_the_trace_of_an_escalated_answer(page) -> None:
    expect = sync_api.expect
    # the demo scope opens by itself
    expect(page.locator("#history-count")).to_have_text("37 turns in 4 session(s)")
    expect(page.locator("#key-form")).to_be_hidden()  # no key on this server
    # one session of it, then the whole user again, from the picker
    page.select_option("#scope-pick", label="user maya · session s3")
    expect(page.locator("#history-count")).to_have_text("9 turns in 1 session(s)")
    expect(page.locator("#history .session summary")).to_contain_text("Session s3 2 Jun 2025")
    page.select_option("#scope-pick", label="user maya (all sessions)")
    expect(page.locator("#history .session")).to_have_count(4)
    expect(page.locator("#memories-count")).to_have_text("37 stored")
    # memories carry their date and a link to the turn they came from
    first = page.locator("#memories .memory").first
    expect(first.locator(".meta")).to_contain_text("dated 2025-03-03")
    expect(first.locator(".chip")).to_contain_text("s1 · 3 Mar 2025 · Maya")

    page.fill("#search-q", "beagle rescue dog")
    page.click("#search-form button[type=submit]")
    expect(page.locator("#memories-count")).to_have_text("30 found for “beagle rescue dog”")
    expect(page.locator("#memories .memory").first).to_contain_text("beagle mix")
    expect(page.locator("#memories .memory .score .meter").first).to_be_visible()

    page.fill("#question", QUESTION)
    page.click("#ask-form button[type=submit]")
    trace = page.locator("#trace .trace")
    expect(trace).to_have_attribute("data-path", "deliberate")
    expect(trace.locator(".badge.path")).to_have_text("deliberate (System 2)")
    expect(trace.locator(".badge.tier")).to_have_text("tier: evidence")
    expect(trace.locator(".answer-text")).to_have_text("Porto")
    expect(trace.locator(".reason").first).to_contain_text("recency")
    # every signal: a bar with its threshold marked, a verdict, a reason
    signals = trace.locator(".signal")
    expect(signals).to_have_count(6)
    recency = trace.locator('.signal[data-signal="recency"]')
    expect(recency).to_have_class(re.compile("verdict-fail"))
    expect(recency.locator(".verdict")).to_have_text("FAIL")
    expect(recency.locator(".signal-reason")).to_contain_text("asks about now")
    expect(trace.locator('.signal[data-signal="coverage"] .verdict')).to_have_text("pass")
    expect(trace.locator(".signal .meter .threshold")).to_have_count(6)
    expect(trace.locator(".gate .badge.escalate")).to_have_text("escalate")
    # the arbiter's choice, and the cost of each phase
    expect(trace.locator(".candidates tr.won")).to_contain_text("Porto")
    for phase in ("answer", "gate", "deliberate.select", "deliberate.answer"):
        expect(trace.locator(f'.cost tr[data-phase="{phase}"]')).to_have_count(1)
    # the evidence lines, highlighted in the history
    highlighted = page.locator("#history .turn.evidence")
    expect(highlighted.filter(has_text="I moved to Porto last week")).to_have_count(1)
    lines = trace.locator(".evidence-lines li")
    assert highlighted.count() == lines.count() > 0
    expect(trace.locator(".evidence h4")).to_contain_text(f"Evidence: {lines.count()} turn(s)")

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=ARTIFACTS / "inspector-trace.png")
    assert (ARTIFACTS / "inspector-trace.png").stat().st_size > 10_000


def test_the_page_browses_a_benchmark_folder(page) -> None:
    expect = sync_api.expect
    page.click("#runs-tab")
    expect(page.locator("#tab-memory")).to_be_hidden()
    page.select_option("#run-pick", "dev-run")
    expect(page.locator("#run-summary")).to_contain_text("3 of 3 records")
    page.select_option('[data-filter="correct"]', "false")
    expect(page.locator("#run-table tr.row")).to_have_count(2)
    page.select_option('[data-filter="outcome"]', "warranted")
    expect(page.locator("#run-table tr.row")).to_have_count(1)
    expect(page.locator("#run-summary")).to_contain_text("1 of 3 records · escalations: 1 warranted")
    page.click("#run-table tr.row")
    expect(page.locator("#run-detail")).to_contain_text("question 0?")
    expect(page.locator("#run-detail")).not_to_contain_text("null")
    expect(page.locator('#run-detail .signal:has-text("coverage") .meter')).to_be_visible()
    plot = page.locator('#plots img[data-plot="risk-coverage"]')
    expect(plot).to_be_visible()
    assert plot.evaluate("img => img.complete && img.naturalWidth") == 1
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=ARTIFACTS / "inspector-runs.png")
