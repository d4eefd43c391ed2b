"""The literature app: the backend without artefacts (clear messages, no crash), and a real browser (Debian
Chromium via playwright) typing a query against a demo index and reading the results table."""

from __future__ import annotations

import pytest

from pipelines.literature.app import Backend, build_app
from tests.browser import browser_page
from tests.literature.analysis_helpers import make_cfg


def test_backend_without_artefacts_says_what_to_run(tmp_path):
    backend = Backend(make_cfg(tmp_path), tmp_path / "data")
    table, message = backend.recommend("pubmed", "tau", "", 5)
    assert table is None and "run `python -m pipelines.literature.analysis recommend`" in message
    assert backend.trend_figures()[0] == [] and "trends" in backend.trend_figures()[1]
    table, message = backend.classify("The results suggest a role for tau.", "")
    assert table is None and "No model at models:/literature-intent-demo@champion" in message
    assert "Type a sentence" in backend.classify("  ", "")[1]
    build_app(make_cfg(tmp_path), tmp_path / "data")  # the UI builds with nothing on disk


@pytest.mark.slow
def test_browser_searches_the_demo_index(tmp_path):
    from pipelines.literature.analysis.corpus import build_corpus
    from pipelines.literature.analysis.recommend import run

    cfg = make_cfg(
        tmp_path,
        [
            "literature.corpus.demo_pubmed=60",
            "literature.corpus.arxiv=none",
            "literature.analysis.n_queries=10",
            "literature.analysis.n_libraries=5",
        ],
    )
    build_corpus(cfg, tmp_path / "data")
    run(cfg, tmp_path / "data")
    app = build_app(cfg, tmp_path / "data")
    with browser_page(app, 1400, 1400) as page:
        page.get_by_role("tab", name="Search & recommend").click()
        page.locator("#query textarea, #query input").first.fill("microglia inflammation TREM2")
        page.locator("#search").click()
        page.locator("#search_status").get_by_text("papers matching").wait_for()
        page.wait_for_function("document.querySelectorAll('#results [role=gridcell]').length >= 10")
        text = page.locator("#results").inner_text()
        assert "Journal of Neuroinflammation" in text or "Glia" in text  # the microglia journals
        page.locator("#ids textarea, #ids input").first.fill("nope")
        page.locator("#search").click()
        page.locator("#search_status").get_by_text("unknown paper id").wait_for()
        assert "Traceback" not in page.locator("body").inner_text()
