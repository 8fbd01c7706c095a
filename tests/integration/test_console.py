"""The web console in a real browser: Debian's Chromium, driven by Playwright, against
``byzerllm serve`` on the real cluster and the built-in models. The tests run in order on one page
and save screenshots (``BYZERLLM_CONSOLE_SHOTS``, else a temporary folder; docs/console.md shows
the ones ``scripts/console_screenshots.sh`` refreshes)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import openai
import pytest

from byzerllm.apps.byzer_storage import ByzerStorage, DataType, FieldOption

from ..conftest import byzerllm_serve

pytestmark = pytest.mark.integration
KEY = "sk-console-key"
CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
EMB, CHAT = "console_emb", "console_chat"
DOCS = [
    "Ray schedules the worker pools of a deployment",
    "SQLite keeps each database in a single file",
    "BM25 ranks documents by the words they share with the query",
    "The cat sleeps on the warm windowsill",
]


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("BYZERLLM_CONSOLE_SHOTS") or tmp_path_factory.mktemp("console_shots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def store(llm, tmp_path_factory):
    """An embedding deployment and a table ``kb.notes`` of four notes (text and vector fields)."""
    base = tmp_path_factory.mktemp("console_store")
    llm.setup_num_workers(1)
    llm.deploy(model_path="builtin:all-minilm-l6-v2", udf_name=EMB, infer_params={})
    notes = ByzerStorage("byzerai_store", "kb", "notes", base_dir=str(base), emb_model=EMB)
    notes.schema_builder().add_field("content", DataType.STRING, [FieldOption.ANALYZE]).add_array_field(
        "vector", DataType.FLOAT
    ).execute()
    notes.write_builder().add_items(
        [{"_id": str(i), "content": d, "vector": d} for i, d in enumerate(DOCS)],
        vector_fields=["vector"],
        search_fields=["content"],
    ).execute()
    notes.commit()
    yield base
    llm.undeploy(EMB)
    if llm.is_model_exist(CHAT):
        llm.undeploy(CHAT)


@pytest.fixture(scope="module")
def server(store):
    with byzerllm_serve("--api_key", KEY, "--storage_dir", str(store)) as base:
        yield base


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (scripts/install.sh --dev installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def page(browser, server):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(server + "/console")
    yield page
    context.close()
    assert errors == [], errors


def by(page, testid: str):
    return page.get_by_test_id(testid)


def test_without_the_key_the_page_shows_nothing_of_the_cluster(browser, server, store, shots):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    anonymous = context.new_page()
    anonymous.goto(server + "/console")
    by(anonymous, "key-form").wait_for(state="visible")
    anonymous.wait_for_timeout(500)
    assert EMB not in anonymous.content()
    assert not by(anonymous, "deployments-table").is_visible()
    by(anonymous, "key-input").fill("sk-wrong")
    by(anonymous, "key-submit").click()
    by(anonymous, "key-message").wait_for(state="visible")
    assert EMB not in anonymous.content()
    anonymous.screenshot(path=str(shots / "console-key.png"))
    context.close()
    assert httpx.get(server + "/v1/deployments").status_code == 401


def test_the_key_then_deploy_the_built_in_model_from_the_form(page, shots):
    by(page, "key-input").fill(KEY)
    by(page, "key-submit").click()
    by(page, f"deployment-row-{EMB}").wait_for(state="visible")
    by(page, "deploy-name").fill(CHAT)
    by(page, "deploy-model_path").fill("builtin:smollm2")
    by(page, "deploy-backend").select_option("llama_cpp")
    by(page, "deploy-opt-n_threads").wait_for(state="visible")  # the backend's own options
    by(page, "deploy-submit").click()
    by(page, f"deployment-row-{CHAT}").wait_for(state="visible")
    state = by(page, f"state-{CHAT}")
    seen = set()
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        text = state.inner_text().strip().lower()
        seen.add(text.split()[0] if text else "")
        if text.startswith("running"):
            break
        page.wait_for_timeout(200)
    assert "running" in seen
    by(page, f"select-{CHAT}").click()
    by(page, "deployment-chart").wait_for(state="visible")
    page.screenshot(path=str(shots / "console-deployments.png"))


def test_the_playground_streams_a_reply_in_pieces(page, shots):
    by(page, "tab-playground").click()
    by(page, "playground-model").select_option(CHAT)
    by(page, "playground-max-tokens").fill("48")
    by(page, "playground-input").fill("Write two sentences about the sea.")
    output = by(page, "playground-output")
    by(page, "playground-send").click()
    lengths = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        lengths.append(len(output.inner_text()))
        if by(page, "playground-finish").inner_text().strip():
            break
        page.wait_for_timeout(30)
    growth = sorted({n for n in lengths if n > 0})
    assert len(growth) >= 3, lengths  # text arrived in several pieces, not at once
    assert int(by(page, "playground-completion-tokens").inner_text()) >= 2
    assert float(by(page, "playground-ttft").inner_text().split()[0]) > 0
    page.screenshot(path=str(shots / "console-playground.png"))


def test_the_stat_counters_move_by_exactly_the_requests_sent(page, server):
    by(page, "tab-deployments").click()
    cell = by(page, f"stat-{CHAT}-requests")
    page.wait_for_timeout(2500)  # one refresh after the playground's request ended
    before = int(cell.inner_text())
    client = openai.OpenAI(base_url=server + "/v1", api_key=KEY, max_retries=0)
    for _ in range(3):
        client.chat.completions.create(model=CHAT, messages=[{"role": "user", "content": "hi"}], max_tokens=2)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and int(cell.inner_text()) != before + 3:
        page.wait_for_timeout(200)
    assert int(cell.inner_text()) == before + 3
    page.wait_for_timeout(2500)  # and no more
    assert int(cell.inner_text()) == before + 3


@pytest.mark.parametrize("mode", ["vector", "fulltext", "hybrid"])
def test_search_a_table_in_each_mode(page, mode, shots):
    if not by(page, "search-form").is_visible():
        by(page, "tab-documents").click()
    by(page, "storage-row-kb.notes").wait_for(state="visible")
    by(page, "search-table").select_option("kb.notes")
    by(page, "search-mode").select_option(mode)
    by(page, "search-emb-model").fill(EMB)
    # each mode's expected first row differs from the one before it, so the last search's rows cannot pass
    query = {
        "vector": "a kitten napping in the sun",
        "fulltext": "SQLite database",
        "hybrid": "a cat on the windowsill",
    }
    by(page, "search-query").fill(query[mode])
    by(page, "search-submit").click()
    from playwright.sync_api import expect

    expected = {"vector": DOCS[3], "fulltext": DOCS[1], "hybrid": DOCS[3]}[mode]
    # the locator is found again on each try: the previous search's rows are replaced
    expect(by(page, "search-result-0")).to_contain_text(expected, timeout=10000)
    if mode == "hybrid":
        page.screenshot(path=str(shots / "console-documents.png"))


def test_undeploy_with_a_confirmation(page, llm, shots):
    by(page, "tab-jobs").click()
    by(page, "jobs-table").wait_for(state="attached")
    page.screenshot(path=str(shots / "console-jobs.png"))
    by(page, "tab-deployments").click()
    by(page, f"undeploy-{CHAT}").click()
    by(page, "confirm-dialog").wait_for(state="visible")
    by(page, "confirm-cancel").click()
    page.wait_for_timeout(2500)  # a refresh later the deployment is still there
    assert by(page, f"deployment-row-{CHAT}").is_visible() and llm.is_model_exist(CHAT)
    by(page, f"undeploy-{CHAT}").click()
    by(page, "confirm-undeploy").click()
    by(page, f"deployment-row-{CHAT}").wait_for(state="detached", timeout=60000)
    assert not llm.is_model_exist(CHAT)
