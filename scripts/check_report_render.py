"""Render a report page in headless Chromium: a screenshot, and a count of images the browser could not load.

Usage::

    python scripts/check_report_render.py results/report.html --screenshot results/report_screenshot.png

A copy of the page with a small script appended is written beside it (so
relative image links resolve), opened with ``chromium --headless --dump-dom``;
the script makes every lazy image load, waits for all of them, and writes
how many failed (``naturalWidth == 0``) into the DOM, which this program
reads back.  The static check (every ``<img src>`` and ``<a href>`` target
exists) runs first.  Exit status 0 when everything renders, 1 when an image
is broken, 2 when no Chromium is installed.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from compare.suite.report.html import broken_links  # noqa: E402

#: Browsers tried, in order.
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

_PROBE = """
<script>
window.addEventListener('load', async () => {
  const imgs = Array.from(document.images);
  imgs.forEach(i => { i.loading = 'eager'; });
  await Promise.all(imgs.map(i => i.complete ? null : new Promise(r => { i.onload = r; i.onerror = r; })));
  const bad = imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.getAttribute('src'));
  const out = document.createElement('pre');
  out.id = 'render-check';
  out.textContent = 'RENDER-CHECK images=' + imgs.length + ' broken=' + bad.length + ' ' + JSON.stringify(bad);
  document.body.appendChild(out);
});
</script>
"""


def find_browser() -> str | None:
    """The first headless-capable Chromium on PATH, or None."""
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


def _chromium(browser: str, *args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--allow-file-access-from-files", *args], capture_output=True, text=True,
                          timeout=timeout, check=False)


def browser_check(page: Path, browser: str) -> tuple[int, list[str]]:
    """``(images, broken srcs)`` as the browser sees them after every image has loaded or failed."""
    probe = page.with_name(f".render-check-{page.name}")
    text = page.read_text(encoding="utf-8")
    probe.write_text(text.replace("</body>", _PROBE + "</body>"), encoding="utf-8")
    try:
        done = _chromium(browser, "--virtual-time-budget=20000", "--dump-dom", probe.resolve().as_uri())
    finally:
        probe.unlink(missing_ok=True)
    found = re.search(r"RENDER-CHECK images=(\d+) broken=(\d+) (\[.*?\])", done.stdout)
    if not found:
        raise RuntimeError(f"{page}: the browser did not run the check script (exit {done.returncode}): "
                           f"{done.stderr.strip()[-400:]}")
    import json

    return int(found.group(1)), list(json.loads(found.group(3)))


def screenshot(page: Path, out: Path, browser: str, *, width: int = 1300, height: int = 2400) -> Path:
    """A PNG of the top ``height`` pixels of the page at ``width`` px."""
    out.parent.mkdir(parents=True, exist_ok=True)
    _chromium(browser, f"--window-size={width},{height}", "--virtual-time-budget=10000",
              f"--screenshot={out.resolve()}", page.resolve().as_uri())
    if not out.is_file():
        raise RuntimeError(f"{out}: Chromium wrote no screenshot; run it by hand to see why.")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("page", type=Path, help="the report.html to check")
    parser.add_argument("--screenshot", type=Path, help="where to write a PNG of the page's top")
    parser.add_argument("--height", type=int, default=2400, help="screenshot height in px")
    args = parser.parse_args(argv)
    page = args.page
    if not page.is_file():
        print(f"{page}: no such page; build it with 'python -m compare report RUN_DIR'.", file=sys.stderr)
        return 1
    static = broken_links(page)
    print(f"{page}: {page.stat().st_size / 1e6:.2f} MB; static check: {len(static)} unresolved link(s) {static}")
    browser = find_browser()
    if browser is None:
        print("No Chromium on PATH (apt-get install chromium); only the static check ran.", file=sys.stderr)
        return 2
    n, broken = browser_check(page, browser)
    print(f"browser: {n} images, {len(broken)} broken {broken}")
    if args.screenshot:
        print(f"screenshot: {screenshot(page, args.screenshot, browser, height=args.height)}")
    return 0 if not static and not broken else 1


if __name__ == "__main__":
    raise SystemExit(main())
