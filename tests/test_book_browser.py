"""The built book as a reader meets it: every page of ``_build/html`` opened in headless
Chromium (Debian's ``chromium`` + ``chromedriver``, driven by selenium), served from
127.0.0.1 so that nothing outside this machine is reached.

Each page must load without console errors (a resource that fails to load is one); every
image must decode and every internal link (and its ``#fragment``) must resolve; math must
be typeset by the MathJax copy served from the build (no raw ``\\(`` or ``$$`` left in
the visible text); every ``{glue:text}`` of a chapter must show its value; no output may
show a Python traceback or warning; papermill's injected-parameters cell must not show;
code lines must wrap or scroll, not be cut; every figure a chapter draws must have a
caption. The search page must find each chapter by a
word of its title. Screenshots of every page go to ``build/screenshots/``.

``make test`` runs this file after ``make book-html`` (target ``test-browser``). Where
Chromium cannot be installed (``make browser`` uses apt as root) the tests are skipped
with that reason. The ``test_checker_*`` tests run the same checks on small pages
written here, each broken in one way, to show that each check can fail.
"""
from __future__ import annotations

import functools
import http.server
import json
import re
import shutil
import threading
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

REPO = Path(__file__).resolve().parents[1]
BOOK_HTML = REPO / "_build" / "html"
MATHJAX = REPO / "build" / "book-static" / "mathjax"
SCREENSHOTS = REPO / "build" / "screenshots"
WINDOW = (1280, 900)


# ---------------------------------------------------------------- the browser

def _find_chromium() -> tuple[str | None, str | None]:
    browser = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")
                    if shutil.which(n)), None)
    return browser, shutil.which("chromedriver")


@pytest.fixture(scope="module")
def driver():
    browser, chromedriver = _find_chromium()
    if not browser or not chromedriver:
        pytest.skip("headless Chromium is not installed (need Debian's chromium and "
                    "chromium-driver; `make browser` installs them with apt as root)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed in the venv (pip install -e '.[test]')")
    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--hide-scrollbars", "--no-first-run", "--disable-extensions",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--metrics-recording-only", "--mute-audio",
                f"--window-size={WINDOW[0]},{WINDOW[1]}", "--force-device-scale-factor=1"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # The driver is given explicitly, so selenium-manager never tries to download one.
    drv = webdriver.Chrome(service=Service(executable_path=chromedriver), options=opts)
    drv.set_page_load_timeout(30)
    drv.set_script_timeout(30)
    try:
        yield drv
    finally:
        drv.quit()


class Site:
    """Serves ``root`` on 127.0.0.1 (an ephemeral port) from a daemon thread."""

    def __init__(self, root: Path):
        self.root = Path(root)

        class Quiet(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args):
                pass

        handler = functools.partial(Quiet, directory=str(self.root))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def url(self, rel: str) -> str:
        return self.base + rel

    def rel_of(self, url: str) -> tuple[str, str] | None:
        """(path relative to root, fragment) of a URL on this site; None for other hosts."""
        if not url.startswith(self.base):
            return None
        parts = urlsplit(url)
        path = unquote(parts.path).lstrip("/")
        if path == "" or path.endswith("/"):
            path += "index.html"
        return path, unquote(parts.fragment)


# ---------------------------------------------------------------- the checks

# Runs in the page once it has loaded: waits for MathJax (where the page loads it) and for
# every image to decode, then reports what the Python side judges.
PAGE_PROBE = r"""
const done = arguments[arguments.length - 1];
(async () => {
  const sleep = ms => new Promise(r => setTimeout(r, ms));
  const out = {mathjax: null, untypeset: [], rawText: [], glueText: [], brokenImages: [],
               images: [], links: [], outputs: [], injectedVisible: 0, pasted: 0, cutCode: [],
               uncaptioned: [], title: document.title};
  if (document.querySelector('script[src*="mathjax"], script[src*="MathJax"]')) {
    for (let i = 0; i < 150 && !(window.MathJax && MathJax.startup && MathJax.startup.promise); i++)
      await sleep(100);
    if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
      try { await MathJax.startup.promise; out.mathjax = 'typeset'; }
      catch (e) { out.mathjax = 'failed: ' + e; }
    } else out.mathjax = 'did not start';
  }
  // Images: make lazy ones load, then decode every one (a 404 or a corrupt file rejects).
  const imgs = [...document.images];
  imgs.forEach(img => { img.loading = 'eager'; });
  await Promise.all(imgs.map(img => img.decode().catch(() => {
    out.brokenImages.push(img.getAttribute('src') || '(no src)'); })));
  imgs.forEach(img => { if (img.naturalWidth === 0 && !out.brokenImages.includes(img.getAttribute('src')))
    out.brokenImages.push(img.getAttribute('src') || '(no src)'); out.images.push(img.src); });
  // Math: every Sphinx math node holds a MathJax rendering.
  document.querySelectorAll('.math').forEach(e => {
    if (!e.querySelector('mjx-container')) out.untypeset.push(e.textContent.trim().slice(0, 80));
  });
  // Visible prose: no TeX delimiters and no glue roles left as text (code is exempt).
  const skip = 'pre, code, script, style, textarea, mjx-container, .tag_injected-parameters';
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT, {acceptNode(n) {
    const p = n.parentElement;
    return (!p || p.closest(skip)) ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT; }});
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const t = n.textContent;
    if (/\\\(|\\\)|\\\[|\\\]|\$\$|\\begin\{|\\frac\{/.test(t)) out.rawText.push(t.trim().slice(0, 100));
    if (/\{glue(:\w+)?\}/.test(t)) out.glueText.push(t.trim().slice(0, 100));
  }
  out.pasted = document.querySelectorAll('.pasted-text').length;
  // Figures that a chapter draws: each in a <figure> with a caption (mystnb figure metadata).
  document.querySelectorAll('.cell_output img').forEach(img => {
    const fig = img.closest('figure');
    const cap = fig && fig.querySelector('figcaption');
    const sec = img.closest('section');
    const head = sec && sec.querySelector('h1, h2, h3, h4');
    if (!cap || !cap.textContent.trim())
      out.uncaptioned.push((img.getAttribute('src') || '(no src)').split('/').pop().slice(0, 16) +
                           ' in section ' + JSON.stringify(head ? head.textContent.replace('#', '').trim() : ''));
  });
  document.querySelectorAll('a[href]').forEach(a => out.links.push(a.href));
  document.querySelectorAll('.cell_output .output, .output.traceback, .output.error').forEach(o =>
    out.outputs.push({classes: o.className, text: o.innerText.slice(0, 4000)}));
  document.querySelectorAll('.tag_injected-parameters').forEach(e => {
    if (e.getClientRects().length > 0) out.injectedVisible += 1; });
  document.querySelectorAll('div.cell pre, div.highlight pre').forEach(pre => {
    const style = getComputedStyle(pre);
    if (pre.scrollWidth > pre.clientWidth + 1 && !['auto', 'scroll'].includes(style.overflowX))
      out.cutCode.push(pre.textContent.split('\n').find(l => l.length > 0).slice(0, 60));
  });
  return out;
})().then(done, e => done({error: String(e)}));
"""

TRACEBACK = re.compile(r"Traceback \(most recent call last\)|^\s*File \"[^\"]+\", line \d+", re.M)
# Python's warnings: "path.py:3: UserWarning: ..." or a bare "FutureWarning: ..." line.
WARNING = re.compile(r"^\S.*:\d+: \w*Warning\b|^\s*\w*Warning: ", re.M)
REFRESH = re.compile(r"""<meta[^>]+http-equiv=["']refresh["']""", re.I)
GLUE_TEXT_ROLE = re.compile(r"\{glue:text\}`[^`]+`")


def output_problems(outputs: list[dict]) -> list[str]:
    """Published outputs showing a traceback or a warning (an error *message* that a
    chapter prints on purpose, such as 'ConfigError: ...' on stdout, is fine)."""
    problems = []
    for o in outputs:
        classes, text = o["classes"].split(), o["text"]
        first = text.strip().splitlines()[0][:100] if text.strip() else ""
        if "traceback" in classes or "error" in classes or TRACEBACK.search(text):
            problems.append(f"an output shows a Python traceback: {first!r}")
        elif WARNING.search(text):
            line = next(m.group(0) for m in [WARNING.search(text)])
            problems.append(f"an output shows a warning: {line.strip()[:100]!r} ({first!r})")
        elif "stderr" in classes and re.search(r"warn|error|exception", text, re.I):
            problems.append(f"a stderr output reports a problem: {first!r}")
    return problems


@functools.lru_cache(maxsize=256)
def _anchors(path: Path) -> frozenset[str]:
    html = path.read_text(errors="replace")
    return frozenset(re.findall(r"""\b(?:id|name)=["']([^"']+)["']""", html))


def link_problems(site: Site, links: list[str]) -> list[str]:
    problems = []
    for url in sorted(set(links)):
        target = site.rel_of(url)
        if target is None:
            continue   # another host: not followed (the book must not need the internet)
        rel, fragment = target
        path = site.root / rel
        if path.is_dir():
            path = path / "index.html"
        if not path.is_file():
            problems.append(f"link to a missing page: {rel}")
        elif fragment and path.suffix == ".html" and fragment not in _anchors(path):
            problems.append(f"link to a missing anchor: {rel}#{fragment}")
    return problems


def expected_glue(site: Site, rel: str) -> int:
    """How many {glue:text} roles the page's notebook source has in its markdown cells."""
    src = site.root / "_sources" / (rel[: -len(".html")] + ".ipynb")
    if not src.is_file():
        return 0
    nb = json.loads(src.read_text())
    return sum(len(GLUE_TEXT_ROLE.findall("".join(c.get("source", ""))))
               for c in nb.get("cells", []) if c.get("cell_type") == "markdown")


def console_errors(driver) -> list[str]:
    errors = []
    for entry in driver.get_log("browser"):
        if entry.get("level") != "SEVERE" or "favicon.ico" in entry.get("message", ""):
            continue
        errors.append(f"console error: {entry['message'][:200]}")
    return errors


def screenshot_name(rel: str) -> str:
    return rel[: -len(".html")].replace("/", "__") if rel.endswith(".html") else rel.replace("/", "__")


def check_page(driver, site: Site, rel: str, shots: Path | None = None) -> list[str]:
    """Every problem a reader would meet on page ``rel`` of ``site``."""
    driver.get_log("browser")          # drop what earlier pages logged
    driver.get(site.url(rel))
    if REFRESH.search((site.root / rel).read_text(errors="replace")[:4000]):
        # A redirect page (index.html -> book/intro.html): check where it lands.
        deadline = time.monotonic() + 10
        while driver.current_url == site.url(rel) and time.monotonic() < deadline:
            time.sleep(0.05)
        if driver.current_url == site.url(rel):
            return ["the redirect page does not redirect"]
    while driver.execute_script("return document.readyState") != "complete":
        time.sleep(0.05)
    probe = driver.execute_async_script(PAGE_PROBE)
    if "error" in probe:
        return [f"the page probe failed: {probe['error']}"]
    problems = console_errors(driver)
    if probe["mathjax"] not in (None, "typeset"):
        problems.append(f"MathJax {probe['mathjax']}")
    problems += [f"untypeset math: {t!r}" for t in probe["untypeset"][:5]]
    problems += [f"raw TeX in the text: {t!r}" for t in probe["rawText"][:5]]
    problems += [f"a glue role shown as text: {t!r}" for t in probe["glueText"][:5]]
    problems += [f"an image does not load: {src}" for src in probe["brokenImages"]]
    problems += link_problems(site, probe["links"])
    problems += output_problems(probe["outputs"])
    want = expected_glue(site, rel)
    if probe["pasted"] < want:
        problems.append(f"missing glued values: {want} glue:text roles, "
                        f"{probe['pasted']} values shown")
    if probe["injectedVisible"]:
        problems.append("papermill's injected-parameters cell is visible")
    problems += [f"a code line is cut at the edge: {t!r}" for t in probe["cutCode"][:3]]
    problems += [f"a figure without a caption: {src}" for src in probe["uncaptioned"]]
    if shots is not None:
        shots.mkdir(parents=True, exist_ok=True)
        name = screenshot_name(rel)
        driver.save_screenshot(str(shots / f"{name}.png"))
        if driver.execute_script(
                "const m = document.querySelector('mjx-container');"
                "if (m) { m.scrollIntoView({block: 'center'}); return true; } return false;"):
            driver.save_screenshot(str(shots / f"{name}-math.png"))
    return problems


def search_results(driver, site: Site, word: str, timeout: float = 15) -> list[str]:
    """Pages (relative paths) that the book's own search page lists for ``word``."""
    driver.get(site.url(f"search.html?q={word}"))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        summary = driver.execute_script(
            "const s = document.querySelector('#search-results .search-summary, "
            "#search-results p'); return s ? s.textContent : '';")
        if summary and "Searching" not in summary and "Preparing" not in summary:
            break
        time.sleep(0.1)
    hrefs = driver.execute_script(
        "return [...document.querySelectorAll('#search-results li a')].map(a => a.href);")
    return sorted({site.rel_of(h)[0] for h in hrefs if site.rel_of(h)})


def book_pages(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.html")
                  if not p.relative_to(root).parts[0].startswith("_"))


# ---------------------------------------------------------------- the built book

@pytest.fixture(scope="module")
def book():
    if not (BOOK_HTML / "index.html").is_file():
        pytest.fail("no built book in _build/html: run `make book-html` first "
                    "(`make test` builds it before this test)")
    with Site(BOOK_HTML) as site:
        yield site


def test_every_page_reads_offline(driver, book):
    pages = book_pages(BOOK_HTML)
    assert {"index.html", "search.html", "book/intro.html"} <= set(pages)
    assert any(p.startswith("notebooks/") for p in pages), "no chapter page was built"
    t0 = time.perf_counter()
    report = {rel: check_page(driver, book, rel, SCREENSHOTS) for rel in pages}
    bad = {rel: probs for rel, probs in report.items() if probs}
    print(f"{len(pages)} pages checked in {time.perf_counter() - t0:.1f} s; "
          f"screenshots in {SCREENSHOTS.relative_to(REPO)}")
    assert not bad, "pages a reader would find broken:\n" + "\n".join(
        f"  {rel}:\n" + "\n".join(f"    - {p}" for p in probs) for rel, probs in bad.items())


def test_chapters_typeset_math_from_the_build(driver, book):
    """The chapters' formulas are typeset, by the MathJax served from _build (no CDN)."""
    driver.get(book.url("notebooks/01_ood_distillation.html"))
    probe = driver.execute_async_script(PAGE_PROBE)
    assert probe["mathjax"] == "typeset" and not probe["untypeset"]
    n = driver.execute_script("return document.querySelectorAll('.math mjx-container').length")
    assert n > 0, "chapter 01 has no typeset formula"
    srcs = driver.execute_script(
        "return [...document.scripts].map(s => s.src).filter(s => /mathjax/i.test(s));")
    assert srcs and all(s.startswith(book.base) for s in srcs), srcs


def test_landing_page_shows_the_verdict_overview(driver, book):
    driver.get(book.url("book/intro.html"))
    text = driver.execute_script("return document.body.innerText")
    assert "Where the reproductions stand" in text and "planned" in text
    ok = driver.execute_script(
        "const i = document.querySelector('#fig-verdicts img');"
        "return i ? i.complete && i.naturalWidth > 0 : false;")
    assert ok, "the verdict figure is missing"
    chapters = driver.execute_script(
        "return [...document.querySelectorAll('table a')].map(a => a.href)"
        ".filter(h => h.includes('/notebooks/'));")
    assert chapters, "the overview table links no chapter"


def test_search_finds_each_chapter(driver, book):
    chapters = [p for p in book_pages(BOOK_HTML) if p.startswith("notebooks/")]
    for rel in chapters:
        driver.get(book.url(rel))
        title = driver.execute_script("return document.querySelector('h1').textContent")
        words = sorted((w for w in re.findall(r"[A-Za-z]{5,}", title)), key=len, reverse=True)
        assert words, f"{rel}: no word to search for in its title {title!r}"
        found = search_results(driver, book, words[0].lower())
        assert rel in found, f"searching {words[0]!r} did not list {rel}: {found}"


# ---------------------------------------------------------------- the checker can fail

def _page(body: str, head: str = "") -> str:
    return f"<!doctype html><html><head><meta charset='utf-8'><title>t</title>{head}</head>" \
           f"<body><main id='main'>{body}</main></body></html>"


# A 1x1 PNG.
PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c6360000002000100e221bc330000000049454e44ae426082")


@pytest.fixture
def tiny_site(tmp_path):
    """A one-page site that passes every check; each test breaks one thing in it."""
    (tmp_path / "img.png").write_bytes(PNG)
    (tmp_path / "other.html").write_text(_page("<h1 id='sec'>other</h1>"))
    good = ("<h1>ok</h1><p>See <a href='other.html#sec'>there</a>.</p><img src='img.png'>"
            "<div class='cell'><div class='cell_output'><div class='output stream'>"
            "<pre>ConfigError: unknown profile 'huge'; choose one of: smoke, cpu</pre>"
            "</div></div></div>")

    def make(body: str = good, head: str = "", files: dict | None = None) -> Site:
        (tmp_path / "index.html").write_text(_page(body, head))
        for name, text in (files or {}).items():
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / name).write_text(text)
        return Site(tmp_path)

    make.good = good
    return make


def test_checker_passes_a_good_page(driver, tiny_site):
    with tiny_site() as site:
        assert check_page(driver, site, "index.html") == []


def test_checker_fails_on_a_missing_image(driver, tiny_site):
    with tiny_site(tiny_site.good + "<img src='gone.png'>") as site:
        problems = check_page(driver, site, "index.html")
    assert any("image does not load: gone.png" in p for p in problems), problems
    assert any("console error" in p for p in problems), problems


def test_checker_fails_on_a_raw_formula(driver, tiny_site):
    body = tiny_site.good + r"<p>The loss is <span class='math'>\(T^2\,\mathrm{KL}\)</span>.</p>"
    with tiny_site(body) as site:
        problems = check_page(driver, site, "index.html")
    assert any(p.startswith("untypeset math") for p in problems), problems
    assert any(p.startswith("raw TeX") for p in problems), problems
    with tiny_site(tiny_site.good + "<p>$$ x^2 $$</p>") as site:
        assert any(p.startswith("raw TeX") for p in check_page(driver, site, "index.html"))


@pytest.mark.skipif(not (MATHJAX / "tex-mml-chtml.js").is_file(),
                    reason="MathJax not installed under build/book-static (make mathjax)")
def test_checker_accepts_math_typeset_by_the_local_mathjax(driver, tiny_site, tmp_path):
    shutil.copytree(MATHJAX, tmp_path / "mathjax")
    body = tiny_site.good + r"<p>The loss is <span class='math'>\(T^2\,\mathrm{KL}\)</span>.</p>"
    with tiny_site(body, head="<script defer src='mathjax/tex-mml-chtml.js'></script>") as site:
        assert check_page(driver, site, "index.html") == []


def test_checker_fails_on_a_traceback_or_warning_in_an_output(driver, tiny_site):
    tb = ("<div class='cell_output'><div class='output stderr'><pre>Traceback (most recent "
          "call last):\n  File \"x.py\", line 1, in &lt;module&gt;\nValueError: boom</pre>"
          "</div></div>")
    with tiny_site(tiny_site.good + tb) as site:
        problems = check_page(driver, site, "index.html")
    assert any("traceback" in p for p in problems), problems
    warn = ("<div class='cell_output'><div class='output stderr'><pre>/tmp/ipykernel_1/2.py:3: "
            "UserWarning: The given NumPy array is not writable</pre></div></div>")
    with tiny_site(tiny_site.good + warn) as site:
        problems = check_page(driver, site, "index.html")
    assert any("warning" in p for p in problems), problems


def test_checker_fails_on_broken_links_console_errors_and_glue(driver, tiny_site):
    with tiny_site(tiny_site.good + "<a href='nowhere.html'>x</a><a href='other.html#nope'>y</a>"
                   "<script>console.error('boom')</script>") as site:
        problems = check_page(driver, site, "index.html")
    assert "link to a missing page: nowhere.html" in problems, problems
    assert "link to a missing anchor: other.html#nope" in problems, problems
    assert any("console error" in p and "boom" in p for p in problems), problems
    nb = {"cells": [{"cell_type": "markdown", "source": "Accuracy {glue:text}`acc:.3f`."}]}
    with tiny_site(tiny_site.good + "<p>Accuracy .</p>",
                   files={"_sources/index.ipynb": json.dumps(nb)}) as site:
        problems = check_page(driver, site, "index.html")
    assert "missing glued values: 1 glue:text roles, 0 values shown" in problems, problems


def test_checker_fails_on_an_uncaptioned_figure(driver, tiny_site):
    bare = "<div class='cell_output'><img src='img.png'></div>"
    captioned = ("<div class='cell_output'><figure><img src='img.png'><figcaption>"
                 "<p>Accuracy per source.</p></figcaption></figure></div>")
    with tiny_site(tiny_site.good + captioned) as site:
        assert check_page(driver, site, "index.html") == []
    with tiny_site(tiny_site.good + bare) as site:
        problems = check_page(driver, site, "index.html")
    assert any(p.startswith("a figure without a caption: img.png") for p in problems), problems


def test_checker_fails_on_injected_parameters_and_cut_code(driver, tiny_site):
    cell = ("<div class='cell tag_injected-parameters'><div class='highlight'><pre>profile = "
            "'cpu'</pre></div></div>")
    long = ("<div class='cell'><div class='highlight'><pre style='white-space: pre; "
            "overflow-x: hidden; width: 200px'>" + "x = 1  # " + "y" * 400 + "</pre></div></div>")
    with tiny_site(tiny_site.good + cell + long) as site:
        problems = check_page(driver, site, "index.html")
    assert "papermill's injected-parameters cell is visible" in problems, problems
    assert any("code line is cut" in p for p in problems), problems


def test_output_rules_unit():
    """The output rules on their own: a chapter's deliberate error message passes."""
    ok = [{"classes": "output stream", "text": "ConfigError: unknown parameter 'x'"},
          {"classes": "output stream", "text": "double free -> DoubleFreeError"}]
    assert output_problems(ok) == []
    bad = [{"classes": "output traceback highlight-ipythontb", "text": "ValueError: x"},
           {"classes": "output stream", "text": "a.py:3: FutureWarning: old\n"},
           {"classes": "output stderr", "text": "error: cannot open"}]
    assert len(output_problems(bad)) == 3
