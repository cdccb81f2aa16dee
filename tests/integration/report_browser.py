"""Open an HTML report in headless Chromium (Debian's ``chromium``, driven by Playwright) and
check what a reader gets: no console errors, nothing fetched from the network, the summary
before the results table, plotly figures drawn with data, and the table's filter working.

Used by ``test_report_browser.py``; also a script, to check any report (the demo's)::

    .venv/bin/python tests/integration/report_browser.py report.html [screenshot.png]
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

#: Chromium's flags for a closed machine (no background connections, no sandbox as root).
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium() -> str | None:
    """The Chromium executable, or None."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def open_report(path: Path, screenshot: Path | None = None) -> dict[str, Any]:
    """What the browser saw: ``errors`` (console errors and page exceptions), ``requests``
    (every URL the page asked for), ``order`` (the section headings and the results block,
    top to bottom), ``figures`` (trace count of each plotly figure), ``interactive`` (figures
    plotly has laid out), ``points`` (data points per figure), ``shown_widths`` (for each
    option of the system selector, the size of the figures then shown), ``hover`` (every hover
    text), ``rows`` (results rows),
    ``stable_rows`` (rows left by the filter stable = true), ``sorted`` (the e_above_hull
    column after one and two clicks on its heading), ``csv_lines`` (lines of the downloaded CSV) and
    ``hidden_systems`` (hull figures hidden by the selector)."""
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    requests: list[str] = []
    with sync_playwright() as play:
        browser = play.chromium.launch(executable_path=chromium(), args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(path.resolve().as_uri(), wait_until="load")
            page.wait_for_function(
                "document.querySelectorAll('.plotly-graph-div .main-svg').length > 0",
                timeout=30_000,
            )
            seen = page.evaluate(
                """() => ({
                order: Array.from(document.querySelectorAll('h2, details#results-section'))
                    .map(e => e.tagName === 'DETAILS' ? 'results' : e.textContent),
                figures: Array.from(document.querySelectorAll('.plotly-graph-div'))
                    .map(g => (g.data || []).length),
                points: Array.from(document.querySelectorAll('.plotly-graph-div'))
                    .map(g => (g.data || []).filter(t => String(t.mode).includes('markers')
                        || t.type === 'histogram' || String(t.mode) === 'lines')
                        .reduce((n, t) => n + (t.x || t.a || []).length, 0)),
                interactive: Array.from(document.querySelectorAll('.plotly-graph-div'))
                    .filter(g => g._fullLayout !== undefined).length,
                rows: document.querySelectorAll('#results tbody tr').length,
                hover: Array.from(document.querySelectorAll('.plotly-graph-div'))
                    .flatMap(g => (g.data || []).flatMap(t => t.hovertext || [])),
                hidden_systems: document.querySelectorAll('[data-system][hidden]').length,
            })"""
            )
            # every system of the selector, shown in turn, gets a figure of non-zero size
            seen["shown_widths"] = []
            for value in page.eval_on_selector_all(
                "#hull-system option", "opts => opts.map(o => o.value)"
            ):
                page.select_option("#hull-system", value)
                seen["shown_widths"].append(
                    page.evaluate(
                        """() => Array.from(document.querySelectorAll('[data-system]'))
                        .filter(d => !d.hidden)
                        .map(d => d.querySelector('.plotly-graph-div').getBoundingClientRect())
                        .map(r => Math.min(r.width, r.height))"""
                    )
                )
            page.click("#results-section > summary")
            page.select_option("select[data-filter='stable']", "true")
            seen["stable_rows"] = page.evaluate(
                "document.querySelectorAll('#results tbody tr:not([hidden])').length"
            )
            page.select_option("select[data-filter='stable']", "")
            column = """() => { const t = document.getElementById('results');
                const i = Array.from(t.tHead.rows[0].cells).findIndex(
                    c => c.dataset.col === 'e_above_hull');
                return Array.from(t.tBodies[0].rows).map(r => r.cells[i].textContent); }"""
            seen["sorted"] = []
            for _ in range(2):  # ascending, then descending
                page.click("th[data-col='e_above_hull']")
                seen["sorted"].append(page.evaluate(column))
            with page.expect_download() as download:
                page.click("a[download]")
            csv = Path(download.value.path()).read_text(encoding="utf-8")
            seen["csv_lines"] = len(csv.strip().splitlines())
            if screenshot is not None:
                screenshot.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    return {"errors": errors, "requests": requests, **seen}


if __name__ == "__main__":
    report = Path(sys.argv[1])
    shot = Path(sys.argv[2]) if len(sys.argv) > 2 else None
    out = open_report(report, shot)
    external = [u for u in out["requests"] if not u.startswith(("file:", "data:"))]
    print(
        f"{report}: {report.stat().st_size / 1e6:.1f} MB, {len(out['figures'])} figures "
        f"({out['interactive']} laid out by plotly), {out['rows']} table rows, console errors "
        f"{out['errors'] or 'none'}, network requests {external or 'none'}, sections "
        f"{out['order']}"
    )
    sys.exit(1 if out["errors"] or external else 0)
