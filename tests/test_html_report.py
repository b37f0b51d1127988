"""report.html (tfsal.report): its content, its escaping, its size with 10 000 rows, and the page
itself in headless Chromium driven by Selenium (skipped where Chromium is not installed; in CI,
where .ci/run installs it, a missing browser is a failure)."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path
from urllib.parse import unquote_to_bytes

import numpy as np
import pytest
from PIL import Image

from tfsal.errors import TfsalError
from tfsal.report import (
    Column,
    markdown_to_html,
    report_from_evaluation,
    report_from_explain_summary,
    report_from_markdown,
    report_from_trajectory,
    write_html_report,
)

EVIL = "</script><img src=x id=injected onerror=alert(1)>"
NOT_UTF8 = os.fsdecode(b"caf\xe9")  # a file name byte that is not UTF-8: a lone surrogate
METHODS = ("vanilla", "smoothgrad")


def _png(path: Path, seed: int, size: int = 24) -> Path:
    """A small colourful PNG (a gradient in a seeded colour)."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 1, size)[None, :, None] * np.linspace(1, 0.3, size)[:, None, None]
    picture = (ramp * rng.uniform(60, 255, 3) + rng.uniform(0, 40, 3)).clip(0, 255)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(picture.astype(np.uint8)).save(path)
    return path


def _page_data(page: str) -> dict:
    """The JSON the page embeds (its \\u escapes are JSON's own)."""
    match = re.search(r'<script type="application/json" id="tfsal-data">(.*?)</script>', page,
                      re.S)
    return json.loads(match[1])


def _target(out: Path, url: str) -> Path:
    return Path(os.fsdecode(bytes(out) + b"/" + unquote_to_bytes(url)))


@pytest.fixture
def explain_run(tmp_path):
    """OUT of a fake `tfsal explain` run: images with awkward names, two methods, a failure and a
    skipped method; summary.json as tfsal.runs writes it (absolute paths)."""
    out = tmp_path / "out"
    run = out / "toy_cnn-abc123"
    inputs = tmp_path / "photos"
    names = ["cat.png", "dog & <b>friends</b> \"quoted\" 'single'.png", f"{NOT_UTF8}.png",
             os.path.join("<", "script><img src=x id=injected onerror=alert(1)>.png")]
    maps = []
    for i, name in enumerate(names):
        for j, method in enumerate(METHODS):
            files = [run / f"{name}.{method}.class{i % 3}.npy", run / f"{name}.{method}.class"
                     f"{i % 3}.png"]
            _png(files[1], 10 * i + j)
            maps.append({"image": str(inputs / name), "method": method, "target": i % 3,
                         "label": f"class <{i % 3}>", "files": [str(f) for f in files],
                         "status": "written", "probability": 0.5 + i / 10})
    summary = {"model": "Model(toy_cnn)", "source": "toy.keras", "run_folder": str(run),
               "fingerprint": {"tfsal": "0.1.0", "model": "sha256-0123abcd", "score": "logit",
                               "target": "top1"},
               "methods": list(METHODS), "target": "top1", "finished": True,
               "counts": {"written": len(maps), "existing": 0}, "maps": maps,
               "failed": [{"image": str(inputs / "broken<1>.jpg"),
                           "error": "cannot identify image file & <not> an image"}],
               "skipped": [{"method": "cam", "reason": "expected a GAP + dense head"}]}
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return out, [str(inputs / n) for n in names]


def _large_report(out: Path, n: int = 10_000) -> tuple[Path, float]:
    """A 10 000-row report whose thumbnails cycle over 40 real PNGs (3 per row)."""
    pictures = [_png(out / "maps" / f"map{i:02d}.png", i) for i in range(40)]
    rows = ({"image": f"/data/images/batch{i // 1000}/image_{i:05d}.jpg",
             "class": f"class {i % 7}", "probability": (i % 997) / 997,
             "maps": [{"src": f"maps/map{(i + k) % 40:02d}.png", "caption": m}
                      for k, m in enumerate(("vanilla", "smoothgrad", "rectgrad"))]}
            for i in range(n))
    start = time.perf_counter()
    path = write_html_report(out, title="ten thousand images", settings={"model": "toy"},
                             rows=rows, row_name="images",
                             columns=["image", "class", "probability", "maps"],
                             failures=[{"image": "/data/x.jpg", "error": "unreadable"}],
                             figures=[pictures[0]])
    return path, time.perf_counter() - start


# ---------------------------------------------------------------------------- the content
def test_explain_report_rows_maps_failures_settings(explain_run):
    out, images = explain_run
    path = report_from_explain_summary(out)
    assert path == out / "report.html"
    page = path.read_text(encoding="utf-8")
    data = _page_data(page)
    rows = data["tables"]["rows"]
    keys = [c["key"] for c in rows["columns"]]
    assert keys == ["image", "class", "probability", "maps", "status"]
    assert len(rows["data"]) == len(images)  # one row per image, every method's map in it
    folder = str(Path(images[0]).parent)
    assert f"<th>images in</th><td>{folder}</td>" in page
    for row, image in zip(rows["data"], images):
        name = os.path.relpath(image, folder)  # named relative to their common folder
        assert row[0] == name.encode("utf-8", "surrogateescape").decode("utf-8",
                                                                       "backslashreplace")
        assert [caption for _, caption in row[3]] == list(METHODS)
        for url, _ in row[3]:
            assert not url.startswith(("/", "file:")) and ":" not in url
            assert _target(out, url).is_file()
    assert rows["data"][0][1] == "class <0> (0)" and rows["data"][0][2] == 0.5
    assert "\\xe9" in rows["data"][2][0]  # the non-UTF-8 byte shown escaped
    failures = data["tables"]["failures"]["data"]
    assert failures[0][0].endswith("broken<1>.jpg") and "& <not>" in failures[0][1]
    assert "sha256-0123abcd" in page and "expected a GAP + dense head" in page
    # nothing from the data is markup: two script elements, the JSON escapes < > &
    assert page.count("<script") == 2 and page.count("</script>") == 2
    assert "<img src=x" not in page and "<b>friends" not in page
    assert page.count("<img") == 0  # rows are drawn by the script, a page at a time
    assert not list(out.glob(".report.html.*"))  # written atomically, nothing left over


def test_unfinished_run_is_noted_and_missing_summary_is_an_error(explain_run, tmp_path):
    out, _ = explain_run
    summary = json.loads((out / "summary.json").read_text())
    summary["finished"] = False
    (out / "summary.json").write_text(json.dumps(summary))
    assert "did not finish" in report_from_explain_summary(out).read_text()
    with pytest.raises(TfsalError, match="expected the summary.json"):
        report_from_explain_summary(tmp_path / "nowhere")


def test_everything_is_escaped(tmp_path):
    awkward = f"{EVIL} <!-- & &amp; \"double\" 'single' {NOT_UTF8} \u2028 \ud800"
    path = write_html_report(
        tmp_path, title=awkward, settings={awkward: awkward, "nested": {"k": awkward}},
        rows=[{"name": awkward, "value": float("nan"), "big": float("inf"),
               "maps": [{"src": f"{awkward}.png", "caption": awkward}]}],
        failures=[{"image": awkward, "error": awkward}], skipped=[{"method": awkward}],
        notes=[awkward], figures=[f"{NOT_UTF8}<&>.png"], markdown=f"# {awkward}\n\n{awkward}")
    raw = path.read_bytes()
    page = raw.decode("utf-8")  # valid UTF-8 whatever the names
    assert page.count("<script") == 2 and page.count("</script>") == 2
    assert "<!--" not in page and "<img src=x" not in page
    assert "\u2028" not in page.split('id="tfsal-data">')[1]  # the JSON escapes it
    assert "&amp;amp;" in page and "&lt;/script&gt;" in page
    row = _page_data(page)["tables"]["rows"]["data"][0]
    assert row[0].startswith(EVIL) and "\\xe9" in row[0]
    assert row[1] == "nan" and row[2] == "inf"  # JSON has no NaN: shown as text
    url = row[3][0][0]
    assert not re.search(r"[<>&\"' :]", url) and "caf%E9" in url
    assert 'src="caf%E9%3C%26%3E.png"' in page  # the figure: byte-exact, percent-encoded


def test_ten_thousand_rows_stay_small(tmp_path):
    # (its speed is measured in benchmarks/, never asserted here: it depends on the machine)
    path, _ = _large_report(tmp_path)
    size = path.stat().st_size
    assert size < 5_000_000, f"{size} bytes"
    page = path.read_text()
    assert page.count("<img") == 1  # the one shared figure; rows are JSON
    assert len(_page_data(page)["tables"]["rows"]["data"]) == 10_000


def test_ten_thousand_image_explain_summary_stays_small(tmp_path):
    run = tmp_path / "efficientnet-lite0-0a1b2c"
    maps = [{"image": f"/data/photos/set{i // 1000}/IMG_{i:05d}.jpg", "method": m,
             "target": i % 1000, "label": "golden retriever", "status": "written",
             "probability": 0.25, "files": [f"{run}/set{i // 1000}/IMG_{i:05d}.jpg.{m}.class"
                                            f"{i % 1000}.{suffix}" for suffix in ("npy", "png")]}
            for i in range(10_000) for m in ("vanilla", "smoothgrad", "integrated_gradients")]
    (tmp_path / "summary.json").write_text(json.dumps(
        {"run_folder": str(run), "maps": maps, "failed": [], "skipped": []}))
    path = report_from_explain_summary(tmp_path)
    assert path.stat().st_size < 5_000_000, path.stat().st_size
    rows = _page_data(path.read_text())["tables"]["rows"]["data"]
    assert len(rows) == 10_000 and rows[1][0] == os.path.join("set0", "IMG_00001.jpg")
    assert rows[1][3][0] == ["efficientnet-lite0-0a1b2c/set0/IMG_00001.jpg.vanilla.class1.png",
                             "vanilla"]


def test_columns_kinds_and_numbers(tmp_path):
    rows = [{"a": "x", "n": np.float32(0.123456), "i": 3, "flag": True, "m": ["p.png"]}]
    data = _page_data(write_html_report(tmp_path, title="t", rows=rows).read_text())
    table = data["tables"]["rows"]
    assert [c["kind"] for c in table["columns"]] == ["text", "number", "number", "text",
                                                     "images"]
    assert table["data"][0] == ["x", 0.1235, 3, "yes", [["p.png", "p.png"]]]
    data = _page_data(write_html_report(
        tmp_path, title="t", rows=rows, columns=[Column("a", "name"), ("n", "value")]
    ).read_text())
    assert [c["heading"] for c in data["tables"]["rows"]["columns"]] == ["name", "value"]
    with pytest.raises(TfsalError, match="column kind"):
        Column("a", kind="picture")


def test_trajectory_report_resolves_files_written_under_a_relative_out(tmp_path):
    out = tmp_path / "moved"
    recorded = "runs/out"  # `tfsal nonlinear --out runs/out` from another folder
    items = []
    for i, stem in enumerate(["a/cat", "dog"]):
        files = [f"{recorded}/{stem}_class{i}_strip.png",
                 f"{recorded}/{stem}_class{i}_linear_vs_nonlinear.png"]
        for f in files:
            _png(out / f[len(recorded) + 1:], i)
        items.append({"image": f"/in/{stem}.png", "target": i, "label": f"c{i}",
                      "best_step": 4, "best_probability": 0.97, "target_probability": [1e-5],
                      "selective_blur": {"before": 0.9, "after": 0.2}, "files": files})
    for name in ("probabilities.png", "selective_blur.png"):
        _png(out / name, 7)
    (out / "trajectory.json").write_text(json.dumps({
        "model": "toy", "linear": False, "items": items,
        "files": [f"{recorded}/probabilities.png", f"{recorded}/selective_blur.png"]}))
    page = report_from_trajectory(out).read_text()
    rows = _page_data(page)["tables"]["rows"]
    assert len(rows["data"]) == 2
    figures = rows["data"][0][-1]
    assert [c for _, c in figures] == ["strip", "linear vs nonlinear"]
    assert all(_target(out, url).is_file() for row in rows["data"] for url, _ in row[-1])
    assert 'src="probabilities.png"' in page and 'src="selective_blur.png"' in page


def test_evaluation_report(tmp_path):
    _png(tmp_path / "deletion.png", 1)
    (tmp_path / "results.csv").write_text("method,fraction,value\n")
    (tmp_path / "results.json").write_text(json.dumps({
        "metric": "deletion", "fill": "black", "n_images": 8,
        "summary": {"vanilla": {"auc": 0.31234}, "rectgrad": {"auc": 0.2}}}))
    page = report_from_evaluation(tmp_path).read_text()
    rows = _page_data(page)["tables"]["rows"]
    assert rows["data"] == [["vanilla", 0.3123], ["rectgrad", 0.2]]
    assert "tfsal evaluate: deletion" in page and 'src="deletion.png"' in page


def test_markdown_subset(tmp_path):
    _png(tmp_path / "table1" / "roar.png", 2)
    text = "\n".join([
        "# Reproduction: Signed <maps>", "", "Models: a & b; `x<y>`.", "second line", "",
        "## Figure 1: strips", "", "![](table1/roar.png) ![alt](with%20space.png)", "",
        "| method | AUC |", "|---|---|", "| **rectgrad** | 0.1 |", "| a \\| b | <i> |", "",
        "- one", "- two", "", "![](http://example.com/x.png) [run](javascript:alert(1))",
        "```", "<code block>", "```"])
    (tmp_path / "report.md").write_text(text)
    page = report_from_markdown(tmp_path).read_text()
    assert "<title>Reproduction: Signed &lt;maps&gt;</title>" in page
    body = markdown_to_html(text, tmp_path)
    assert "<h2>Figure 1: strips</h2>" in body
    assert "<p>Models: a &amp; b; <code>x&lt;y&gt;</code>.\nsecond line</p>" in body
    assert '<img class="md" loading="lazy" src="table1/roar.png"' in body
    assert 'src="with%20space.png"' in body
    assert "<th>method</th><th>AUC</th>" in body
    assert "<td><strong>rectgrad</strong></td>" in body and "<td>a | b</td>" in body
    assert "<ul><li>one</li><li>two</li></ul>" in body
    assert 'src="http' not in body and 'href="javascript' not in body
    assert "<pre><code>&lt;code block&gt;</code></pre>" in body


# ----------------------------------------------------------------------- in a real browser
def _browser_or_skip():
    """(chromium, chromedriver) paths; skipped (failed in CI) without them or selenium."""
    browser = next(filter(None, map(shutil.which, ("chromium", "chromium-browser",
                                                   "google-chrome"))), None)
    driver = shutil.which("chromedriver") or (
        "/usr/bin/chromedriver" if os.path.exists("/usr/bin/chromedriver") else None)
    missing = []
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append('selenium (pip install -e ".[dev]")')
    if browser is None or driver is None:
        missing.append("chromium and chromedriver (apt-get install chromium chromium-driver; "
                       ".ci/run installs them in CI)")
    if missing:
        reason = "report.html browser test needs " + " and ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return browser, driver


@pytest.fixture(scope="module")
def chrome():
    browser, driver_path = _browser_or_skip()
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must never download anything
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1280,1000", "--no-first-run", "--disable-extensions",
                 "--disable-background-networking", "--disable-component-update"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # The driver's path is given: Selenium skips its manager (no lookup, no download).
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def _open(driver, path: Path):
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(path.as_uri())
    WebDriverWait(driver, 20).until(lambda d: d.execute_script(
        "return document.documentElement.getAttribute('data-ready') === '1'"))


def _wait_images(driver, selector: str):
    """Until the images in view are loaded (lazy ones further down are not requested)."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 20).until(lambda d: d.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0])).every(function (i) {"
        " return i.complete || i.getBoundingClientRect().top > window.innerHeight; })",
        selector))


def _errors(driver) -> list[str]:
    """Console errors since the last call: script errors, CSP refusals, failed loads."""
    return [entry["message"] for entry in driver.get_log("browser")
            if entry["level"] in ("SEVERE", "ERROR")]


def _js(driver, script: str, *args):
    return driver.execute_script(script, *args)


def _screenshot_ok(driver, path: Path) -> None:
    driver.save_screenshot(str(path))
    assert path.stat().st_size > 20_000, path.stat().st_size
    with Image.open(path) as picture:
        colours = picture.convert("RGB").getcolors(maxcolors=1_000_000)
    assert colours is None or len(colours) > 50


def test_browser_explain_report(chrome, explain_run, tmp_path):
    out, images = explain_run
    path = report_from_explain_summary(out)
    _errors(chrome)
    _open(chrome, path)
    _js(chrome, "window.scrollTo(0, document.body.scrollHeight)")  # lazy images: load all
    _wait_images(chrome, "img")
    assert _errors(chrome) == []
    rows = chrome.find_elements("css selector", "#rows tbody tr")
    assert len(rows) == len(images)
    assert chrome.find_element("css selector", "#rows .total").text == str(len(images))
    # every thumbnail loaded, the non-UTF-8 and markup-like names included
    sizes = _js(chrome, "return Array.from(document.querySelectorAll('#rows img'))"
                        ".map(function (i) { return i.naturalWidth; })")
    assert len(sizes) == len(images) * len(METHODS) and all(w == 24 for w in sizes)
    names = [row.find_element("css selector", "td").text for row in rows]
    assert names[3].endswith(EVIL + ".png")  # shown as text, not markup
    assert _js(chrome, "return document.getElementById('injected')") is None
    assert "\\xe9" in names[2]
    failures = chrome.find_elements("css selector", "#failures tbody tr")
    assert len(failures) == 1 and "& <not> an image" in failures[0].text
    assert "sha256-0123abcd" in chrome.find_element("id", "settings").text
    # the filter box
    box = chrome.find_element("css selector", "#rows input.filter")
    box.send_keys("DOG")
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(chrome, 5).until(lambda d: len(
        d.find_elements("css selector", "#rows tbody tr")) == 1)
    assert chrome.find_element("css selector", "#rows .count").text == "1"
    _js(chrome, "window.scrollTo(0, 0)")
    box.clear()
    box.send_keys(" ")  # back to every row (an input event)
    WebDriverWait(chrome, 5).until(lambda d: len(
        d.find_elements("css selector", "#rows tbody tr")) == len(images))
    _js(chrome, "document.getElementById('rows').scrollIntoView()")
    _wait_images(chrome, "#rows img")
    _screenshot_ok(chrome, tmp_path / "explain.png")
    assert _errors(chrome) == []


def test_browser_ten_thousand_rows(chrome, tmp_path):
    from selenium.webdriver.support.ui import WebDriverWait

    path, _ = _large_report(tmp_path)
    _errors(chrome)
    _open(chrome, path)
    _wait_images(chrome, "#rows img")

    def first_cells():
        return _js(chrome, "return Array.from(document.querySelectorAll('#rows tbody tr'))"
                           ".map(function (r) { return r.cells[0].textContent; })")

    page1 = first_cells()
    assert len(page1) == 50 and page1[0].endswith("image_00000.jpg")
    assert chrome.find_element("css selector", "#rows .total").text == "10000"
    assert chrome.find_element("css selector", "#rows .page-info").text == "page 1 of 200"
    # only the page shown is in the document: 50 rows × 3 thumbnails (+ 1 shared figure),
    # and only those near the view are fetched
    assert _js(chrome, "return document.images.length") == 50 * 3 + 1
    loaded = _js(chrome, "return Array.from(document.querySelectorAll('#rows img'))"
                         ".filter(function (i) { return i.naturalWidth > 0; }).length")
    assert 0 < loaded < 50 * 3, loaded
    chrome.find_element("css selector", "#rows button.next").click()
    page2 = first_cells()
    assert len(page2) == 50 and page2[0].endswith("image_00050.jpg") and not set(page1) & set(
        page2)
    assert chrome.find_element("css selector", "#rows .from").text == "51"
    chrome.find_element("css selector", "#rows button.last").click()
    assert first_cells()[-1].endswith("image_09999.jpg")
    assert chrome.find_element("css selector", "#rows button.next").get_attribute("disabled")
    chrome.find_element("css selector", "#rows button.first").click()
    assert first_cells() == page1
    # sorting by probability (descending on the second click)
    header = chrome.find_elements("css selector", "#rows thead th")[2]
    header.click()
    header.click()
    top = _js(chrome, "return document.querySelector('#rows tbody tr').cells[2].textContent")
    assert float(top) == pytest.approx(996 / 997, abs=1e-4)
    # the filter: every word, anywhere in the row (name, class, captions)
    chrome.find_element("css selector", "#rows input.filter").send_keys("IMAGE_0123 class")
    WebDriverWait(chrome, 5).until(
        lambda d: d.find_element("css selector", "#rows .count").text == "10")
    assert len(chrome.find_elements("css selector", "#rows tbody tr")) == 10
    _wait_images(chrome, "#rows img")
    _screenshot_ok(chrome, tmp_path / "ten_thousand.png")
    assert _errors(chrome) == []


def test_every_command_writes_report_html(tmp_path):
    """explain, nonlinear, evaluate and reproduce each leave a report.html beside their files."""
    from conftest import toy_cnn

    from tfsal.cli import main

    model_file = tmp_path / "toy.keras"
    toy_cnn().save(model_file)
    image = tmp_path / "p.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (16, 16, 3), dtype=np.uint8)
                    ).save(image)
    runs = {"explain": ["explain", str(image), "--model", str(model_file)],
            "nonlinear": ["nonlinear", str(image), "--model", str(model_file), "--levels",
                          "0,0.5", "--steps-per-level", "1"],
            "evaluate": ["evaluate", "deletion", str(image), "--model", str(model_file)],
            "reproduce": ["reproduce", "signed", "--model", str(model_file), "--images",
                          str(tmp_path / "imgs"), "--quick"]}
    (tmp_path / "imgs").mkdir()
    Image.open(image).save(tmp_path / "imgs" / "q.png")
    shows = {"explain": "p.png", "nonlinear": "p.png", "evaluate": "deletion",
             "reproduce": "Signed saliency"}
    for name, args in runs.items():
        out = tmp_path / f"out_{name}"
        assert main([*args, "--out", str(out)]) == 0, name
        page = (out / "report.html").read_text()
        assert page.lower().startswith("<!doctype html>") and shows[name] in page, name
