"""The Prefect UI, in a real browser, shows a stage's data-quality table.

The session's real `prefect server start` (tests/conftest.py), a real `corpus build` of
Shakespeare and German web sentences against it as a subprocess, then headless Chromium (Debian's
`chromium`, driven by Playwright; never a downloaded browser) opens the finished flow run, its
Artifacts tab and the dedup stage's quality artifact, and the rows it renders must be the rows the
artifact holds in the API. Screenshots go to $CORPUS_TEST_OUTPUT, else test-output/ in the
repository.

The browser reaches 127.0.0.1 only: every other request is aborted (the V2 UI asks
sr-client-cfg.amplitude.com for a config even with analytics off) and host names do not resolve.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect, sync_playwright

from tests.conftest import ROOT, shared

VIEWPORT = {"width": 1400, "height": 900}
# Rows the dedup quality table of the input below must have, and the page must show.
KEY_MEASURES = {"documents out", "language en", "language de", "length p50 (chars)",
                "duplicate rate, this snapshot"}


def output_dir() -> Path:
    out = Path(os.environ.get("CORPUS_TEST_OUTPUT") or ROOT / "test-output")
    out.mkdir(parents=True, exist_ok=True)
    return out


def chromium() -> str:
    path = shutil.which("chromium")
    if not path:
        pytest.fail("chromium is not installed: the UI test drives Debian's chromium "
                    "(apt-get install chromium as root; the README's test command installs it "
                    "with `python -m tests.needs`)", pytrace=False)
    return path


def write_documents(path: Path) -> int:
    """40 documents of Shakespeare (consecutive speeches, 600+ characters each), 6 of German
    web sentences and one exact duplicate: two languages, a few rejects, one duplicate."""
    speeches = [s.strip() for s in shared("text", "tinyshakespeare.txt").read_text().split("\n\n")
                if s.strip()]
    docs, current = [], []
    for speech in speeches:
        current.append(speech)
        if sum(map(len, current)) >= 600:
            docs.append("\n\n".join(current))
            current = []
            if len(docs) == 40:
                break
    german = shared("langid", "de.txt").read_text().splitlines()
    docs += [" ".join(german[i * 8:(i + 1) * 8]) for i in range(6)]
    docs.append(docs[0])
    path.write_text("".join(
        json.dumps({"id": f"doc-{i:03d}", "url": f"https://plays.example.org/{i}", "text": d})
        + "\n"
        for i, d in enumerate(docs)))
    return len(docs)


@pytest.fixture(scope="module")
def built(tmp_path_factory, session_server):
    """A finished `corpus build --until dedup` run on the session's server, and its quality
    artifact."""
    from flows.artifacts import artifact_key

    server = session_server
    tmp = tmp_path_factory.mktemp("ui")
    write_documents(tmp / "docs.jsonl")
    output = tmp / "plays"
    build = subprocess.run(
        [sys.executable, "-m", "flows.cli", "build", "--input", str(tmp / "docs.jsonl"),
         "--output", str(output), "--until", "dedup"],
        env=server.env(), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    key = artifact_key(str(output), "dedup-quality")
    [artifact] = [a for a in server.artifacts(key) if a["key"] == key]
    assert artifact["type"] == "table"
    run = server.api(f"/flow_runs/{artifact['flow_run_id']}")
    flow = server.api(f"/flows/{run['flow_id']}")
    assert (flow["name"], run["parameters"]["output"]) == ("corpus-build", str(output))
    assert run["state_type"] == "COMPLETED", run["state_name"]
    data = artifact["data"]
    rows = json.loads(data) if isinstance(data, str) else data
    expected = {row["measure"]: cell(row["value"]) for row in rows}
    # The table is worth looking at: both languages, a real duplicate rate, most documents kept.
    assert KEY_MEASURES <= expected.keys(), expected
    assert int(expected["documents out"]) >= 30 and float(
        expected["duplicate rate, this snapshot"]) > 0, expected
    return SimpleNamespace(server=server, run=run, artifact=artifact, expected=expected)


def cell(value) -> str:
    """A table value as the UI writes it (JavaScript's number formatting: 0.0 is `0`)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@pytest.fixture(scope="module")
def browser():
    executable = chromium()
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=executable,
            args=["--no-sandbox", "--disable-dev-shm-usage",
                  "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"])
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(30_000)
    context.route("**/*", lambda route: route.continue_()
                  if urlsplit(route.request.url).hostname == "127.0.0.1" else route.abort())
    page = context.new_page()
    yield page
    context.close()


def rendered_table(page) -> dict[str, str]:
    """The measure -> value rows of the quality table on the page, once they are rendered."""
    table = page.locator("table", has=page.locator("th", has_text="measure")).first
    expect(table.locator("tbody tr").first).to_contain_text("documents out")
    rows = table.evaluate("t => [...t.tBodies[0].rows].map(r => [...r.cells].map("
                          "c => c.innerText.trim()))")
    return {r[0]: r[1] for r in rows if len(r) == 2}


def assert_shows(rendered: dict[str, str], expected: dict[str, str]) -> None:
    """The page shows the artifact's rows, values included (a table page holds 10 rows)."""
    assert KEY_MEASURES <= rendered.keys(), rendered
    assert len(rendered) >= min(len(expected), 10), rendered
    assert rendered == {m: expected.get(m) for m in rendered}, (rendered, expected)


def full_height(page) -> None:
    """Grow the viewport to the page's scrolling pane (the UI scrolls a pane, not the page, so a
    full-page screenshot alone would cut it)."""
    height = page.evaluate("() => Math.max(document.scrollingElement.scrollHeight, "
                           "...[...document.querySelectorAll('*')].map(e => e.scrollHeight))")
    page.set_viewport_size({"width": VIEWPORT["width"], "height": min(int(height), 4000)})


def test_the_flow_runs_artifacts_show_the_quality_table(page, built):
    """The V1 UI, where the run's own 'View at' log line points: flow run -> Artifacts tab ->
    the dedup quality card -> the artifact's page with its table."""
    server, run, artifact = built.server, built.run, built.artifact
    page.goto(f"{server.url}/runs/flow-run/{run['id']}")
    expect(page.get_by_text(run["name"], exact=True).first).to_be_visible()
    page.locator("li.p-tab", has_text="Artifacts").click()
    card = page.get_by_text(artifact["key"], exact=True)
    # The task runs' artifacts are drawn only while their section is in view.
    page.get_by_text("Task runs", exact=True).scroll_into_view_if_needed()
    expect(card).to_be_visible()
    full_height(page)
    page.screenshot(path=output_dir() / "dashboard-artifacts.png")
    page.set_viewport_size(VIEWPORT)

    page.get_by_text("Task runs", exact=True).scroll_into_view_if_needed()
    card.click()
    expect(page).to_have_url(re.compile(rf"/artifacts/artifact/{artifact['id']}$"))
    assert_shows(rendered_table(page), built.expected)
    page.screenshot(path=output_dir() / "dashboard-quality.png", full_page=True)


def test_the_v2_ui_shows_the_quality_table(page, built):
    """The V2 UI, where the server's root leads: the run's Artifacts tab -> the card -> the
    key's page (its versions) -> this run's version, with its table."""
    server, run, artifact = built.server, built.run, built.artifact
    page.goto(f"{server.url}/v2/runs/flow-run/{run['id']}?tab=Artifacts")
    page.get_by_text(artifact["key"], exact=True).click()
    expect(page).to_have_url(re.compile(rf"/v2/artifacts/key/{artifact['key']}$"))
    page.get_by_role("link", name=artifact["id"][:8], exact=True).click()
    expect(page).to_have_url(re.compile(rf"/v2/artifacts/artifact/{artifact['id']}\b"))
    assert_shows(rendered_table(page), built.expected)
    page.screenshot(path=output_dir() / "dashboard-quality-v2.png", full_page=True)


def test_a_chart_published_as_an_image_artifact_renders(page, session_server):
    """A line chart (`flows/charts.py`) as a `data:` URL image artifact: the artifact's page
    shows it as an image of the chart's size, its pixels those of the PNG."""
    import base64
    import io

    from PIL import Image
    from prefect.artifacts import create_image_artifact

    from flows.charts import COLOURS, image_data_url, line_chart

    png = line_chart({"raw": [(0, 7.4), (500, 4.1), (1000, 3.2)],
                      "filtered": [(0, 7.3), (500, 3.8), (1000, 2.9)]},
                     title="held-out bits per byte", x_label="tokens", y_label="bits per byte")
    drawn = Image.open(io.BytesIO(png)).convert("RGB")
    assert drawn.size == (800, 450)
    colours = {"#%02X%02X%02X" % rgb for _, rgb in drawn.getcolors(1 << 16)}
    assert {COLOURS[0], COLOURS[1]} <= colours  # both curves are drawn
    # _sync: Playwright's loop runs in this thread, where Prefect would otherwise go async
    artifact_id = create_image_artifact(image_url=image_data_url(png), key="test-chart",
                                        description="a chart", _sync=True)
    page.goto(f"{session_server.url}/artifacts/artifact/{artifact_id}")
    image = page.locator("img[src^='data:image/png']").first
    expect(image).to_be_visible()
    assert image.evaluate("i => [i.naturalWidth, i.naturalHeight]") == [800, 450]
    shown = base64.b64decode(image.get_attribute("src").split(",", 1)[1])
    assert shown == png
    page.screenshot(path=output_dir() / "chart-artifact.png", full_page=True)
