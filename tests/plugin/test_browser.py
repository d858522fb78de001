"""Every visualization the plugin writes, opened in headless Chromium as a person would: no
console error, every image loads, every link inside the page resolves, no empty table.  A
screenshot of each page is saved in the test's temporary directory.

Needs Debian's `chromium` and Playwright's Python package (ci/setup.sh installs both); without
them the tests skip, unless AAM_REQUIRE_BROWSER=1 (set by .ci/run) makes that a failure."""
import functools
import http.server
import os
import shutil
import threading
from pathlib import Path

import pytest

from ..conftest import require_qiime2  # noqa: E402

qiime2 = require_qiime2()

from q2_aam import _examples as ex  # noqa: E402

TINY = dict(embedding_dim=16, attention_heads=2, attention_layers=1, token_limit=64, epochs=2,
            batch_size=8)
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _need_browser():
    why = None
    import importlib.util
    if importlib.util.find_spec("playwright") is None:
        why = "Playwright is not installed (pip install playwright; ci/setup.sh does it)"
    if why is None and CHROMIUM is None:
        why = "Chromium is not installed (apt-get install chromium; ci/setup.sh does it)"
    if why:
        if os.environ.get("AAM_REQUIRE_BROWSER") == "1":
            pytest.fail(why)
        pytest.skip(why)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a):
        pass


def check_page(browser, directory: Path, screenshot: Path) -> list[str]:
    """Serve ``directory`` over HTTP, open its index.html, and return every problem found."""
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Quiet, directory=str(directory)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    problems = []
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    def console(m):
        url = (m.location or {}).get("url", "")
        if m.type == "error" and not url.endswith("/favicon.ico"):   # browsers ask for one
            problems.append(f"console: {m.text} ({url})")
    page.on("console", console)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
    page.on("response", lambda r: r.status >= 400 and problems.append(
        f"HTTP {r.status}: {r.url}"))
    try:
        page.goto(base + "index.html", wait_until="networkidle")
        for src in page.eval_on_selector_all(
                "img", "els => els.filter(e => !(e.complete && e.naturalWidth > 0))"
                       ".map(e => e.getAttribute('src'))"):
            problems.append(f"image does not load: {src}")
        links = page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)")
        for url in links:
            if url.startswith(base) and "#" not in url:
                status = page.request.get(url).status
                if status >= 400:
                    problems.append(f"broken link (HTTP {status}): {url[len(base):]}")
        empty = page.eval_on_selector_all(
            "table", "els => els.filter(t => t.querySelectorAll('td').length == 0).length")
        if empty:
            problems.append(f"{empty} empty table(s)")
        if not page.inner_text("body").strip():
            problems.append("the page shows no text")
        page.screenshot(path=str(screenshot), full_page=True)
    finally:
        page.close()
        server.shutdown()
        server.server_close()
    return problems


@pytest.fixture(scope="module")
def browser():
    _need_browser()
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    """{name: exported directory} of every visualization the plugin's actions write."""
    _need_browser()
    from qiime2.plugins import aam
    table, seqs, tree, md = (ex.table_factory(), ex.sequences_factory(), ex.tree_factory(),
                             ex.metadata_factory())
    common = dict(table=table, sequences=seqs, **TINY)
    enc, _ = aam.actions.pretrain(phylogeny=tree, validation_groups=md.get_column("subject"),
                                  **common)
    reg, _ = aam.actions.fit_regressor(metadata=md.get_column("age"), encoder=enc, **common)
    cls, _ = aam.actions.fit_classifier(metadata=md.get_column("group"), encoder=enc, **common)
    vizs = {f"summarize-{n}": aam.visualizers.summarize(model=m)[0]
            for n, m in (("encoder", enc), ("regressor", reg), ("classifier", cls))}
    for kind, col in (("regress_samples", "age"), ("classify_samples", "group")):
        res = getattr(aam.actions, kind)(metadata=md.get_column(col), encoder=enc,
                                         test_size=0.25, **common)
        vizs[f"{kind}-accuracy"] = res.accuracy_results
        vizs[f"{kind}-summary"] = res.model_summary
    root = tmp_path_factory.mktemp("pages")
    out = {}
    for name, viz in vizs.items():
        assert str(viz.type) == "Visualization", name
        viz.export_data(str(root / name))
        out[name] = root / name
    return out


NAMES = ["summarize-encoder", "summarize-regressor", "summarize-classifier",
         "regress_samples-accuracy", "regress_samples-summary",
         "classify_samples-accuracy", "classify_samples-summary"]


@pytest.mark.parametrize("name", NAMES)
def test_page_renders_in_a_browser(browser, pages, name, tmp_path):
    shot = tmp_path / f"{name}.png"
    problems = check_page(browser, pages[name], shot)
    assert not problems, f"{name}: " + "; ".join(problems[:5])
    assert shot.stat().st_size > 5000          # a real rendering, not a blank image


def test_encoder_summary_shows_the_distance_fit(pages):
    html = (pages["summarize-encoder"] / "index.html").read_text()
    assert "distances.png" in html and "Embedding distance against UniFrac" in html
    assert "validation UniFrac R² / Pearson / Spearman" in html
    assert "predictions equal to the most common one" in (
        pages["summarize-regressor"] / "index.html").read_text()


def test_checker_catches_a_missing_image_and_a_broken_link(browser, pages, tmp_path):
    """The check itself can fail: remove an image and the history TSV from a copy of a page."""
    page = tmp_path / "broken"
    shutil.copytree(pages["summarize-encoder"], page)
    (page / "distances.png").unlink()
    (page / "history.tsv").unlink()
    problems = check_page(browser, page, tmp_path / "broken.png")
    assert any("image does not load: distances.png" in p for p in problems), problems
    assert any("broken link" in p and "history.tsv" in p for p in problems), problems


def test_fit_summaries_compare_the_stack_with_the_baselines(browser, pages):
    """The summary of a fitted model shows the stack, its components and the baselines (an L2
    model on CLR abundances, a forest) out of fold, with intervals, weights, the encoder's
    contribution and a verdict; an encoder's summary has no such table."""
    for name in ("summarize-regressor", "summarize-classifier", "classify_samples-summary"):
        html = (pages[name] / "index.html").read_text()
        assert 'id="baselines"' in html and 'id="verdict"' in html, name
        for label in ("the stack (what the model predicts with)",
                      "the stack without its encoder components",
                      "L2 linear model on CLR abundances (linear:clr)",
                      "random forest on the encoder",
                      "not in the stack (baseline)", "95% interval"):
            assert label in html, (name, label)
        assert "Out of fold, on" in html and "encoder's contribution" in html
    assert 'id="baselines"' not in (pages["summarize-encoder"] / "index.html").read_text()
