"""``morphcat app`` in a real headless browser: Debian's chromium driven by Selenium through
chromedriver, against the real console script serving a tiny bundle and an annotations folder
made by ``morphcat synth`` + ``morphcat annotate``.

Chromium and chromedriver are Debian's (``/usr/bin``): a browser a test tool downloads does not
run here, so when either is missing the setup installs them with apt-get, and fails, saying
why, when it cannot. Screenshots go to ``$MORPHCAT_SCREENSHOTS`` (default: a pytest temporary
folder, printed).
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image

from catalogs.contract import read_catalog
from export.serve.runtime import open_bundle
from flows.webapp import analysis, catalog_view, figures

pytestmark = [pytest.mark.browser, pytest.mark.slow,
              # Keras (building the tiny models) calls np.array(tensor); NumPy 2 warns about its __array__ signature.
              pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")]

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
BROWSER_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1400,2000")
N_GALAXIES = 12
WAIT_S = 60  # one page update at most (the first one opens the bundle)
SERVER_START_S = 90


def _apt_install() -> None:
    """Debian's chromium and chromium-driver, installed as the suite's setup where missing."""
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        pytest.fail(f"the browser test needs {CHROMIUM} and {CHROMEDRIVER}, and cannot install them here "
                    f"(apt-get {'is missing' if shutil.which('apt-get') is None else 'needs root'}): "
                    "run `apt-get install chromium chromium-driver` as root, or deselect with -m 'not browser'")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium", "chromium-driver"]):
        proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
        if proc.returncode != 0:
            pytest.fail(f"`{' '.join(command)}` failed with exit status {proc.returncode}; the browser test needs "
                        f"Debian's chromium and chromium-driver:\n{proc.stdout[-1500:]}\n{proc.stderr[-1500:]}")


@pytest.fixture(scope="module")
def browser_binaries() -> None:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        _apt_install()
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.fail(f"apt-get installed chromium and chromium-driver but {', '.join(missing)} is still missing")


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("MORPHCAT_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\nbrowser test screenshots: {folder}")
    return folder


@pytest.fixture(scope="module")
def annotated(morphcat, tiny_bundle, tmp_path_factory):
    """A synthetic survey and its annotations folder, made with the real commands."""
    work = tmp_path_factory.mktemp("webapp")
    survey, out = work / "survey", work / "annotations"
    proc = morphcat("synth", survey, "--n", N_GALAXIES, "--seed", 5, "--size", 64, "--mix", "balanced",
                    "--workers", 1)
    assert proc.returncode == 0, proc.stderr
    proc = morphcat("annotate", survey / "catalog.parquet", "--bundle", tiny_bundle, "--out", out, "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    return read_catalog(survey / "catalog.parquet"), out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 5) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


@pytest.fixture(scope="module")
def app_url(tiny_bundle, annotated, tmp_path_factory):
    """``morphcat app`` serving the tiny bundle and the annotations on 127.0.0.1; stopped as a
    service manager would (SIGTERM to the command), and checked to be gone."""
    _, out = annotated
    port = _free_port()
    log_path = tmp_path_factory.mktemp("app") / "app.log"
    exe = str(Path(sys.executable).with_name("morphcat"))
    with open(log_path, "w") as log:
        proc = subprocess.Popen([exe, "app", "--bundle", str(tiny_bundle), "--annotations", str(out),
                                 "--port", str(port)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + SERVER_START_S
    while True:
        if proc.poll() is not None:
            pytest.fail(f"morphcat app exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            if _get(f"{url}/_stcore/health") == b"ok":
                break
        except OSError:
            pass
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"morphcat app did not answer on {url} within {SERVER_START_S} s:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.5)
    yield url
    proc.terminate()  # the morphcat command only: it must stop streamlit itself
    try:
        proc.wait(timeout=20)
        _get(f"{url}/_stcore/health", timeout=2)
    except (OSError, subprocess.TimeoutExpired):
        still_serving = proc.poll() is None
    else:
        still_serving = True
    if still_serving:
        os.killpg(proc.pid, signal.SIGKILL)  # the whole group: morphcat app and its streamlit
    assert not still_serving, "streamlit kept serving after `morphcat app` was terminated"


@pytest.fixture(scope="module")
def downloads(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def driver(browser_binaries, downloads):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in BROWSER_FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="morphcat-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    browser = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    browser.set_page_load_timeout(WAIT_S)
    yield browser
    browser.quit()
    shutil.rmtree(profile, ignore_errors=True)


def _wait(driver, condition, what: str):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, WAIT_S, poll_frequency=0.25).until(condition)
    except TimeoutException:
        body = driver.find_element("tag name", "body").text
        pytest.fail(f"timed out waiting for {what}; the page says:\n{body[-2000:]}")


def _text(driver, css: str) -> str:
    found = driver.find_elements("css selector", css)
    return found[0].text if found else ""


def _loaded_images(driver, css: str) -> list:
    """The ``img`` elements under ``css`` that the browser has decoded (natural size > 0)."""
    return [img for img in driver.find_elements("css selector", f"{css} img")
            if driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img)]


def _settled(driver) -> bool:
    """Streamlit has finished running the script for the last interaction."""
    app = driver.find_elements("css selector", "[data-testid='stApp']")
    return bool(app) and app[0].get_attribute("data-test-script-state") == "notRunning"


def _open(driver, url: str) -> None:
    driver.get(url)
    _wait(driver, lambda d: d.find_elements("css selector", "input[type='file']"), "the upload field")


def test_an_upload_shows_its_class_caption_and_grad_cam_overlay(driver, app_url, tiny_bundle, annotated, screenshots):
    catalog, _ = annotated
    image = catalog.image_file(3)
    bundle = open_bundle(tiny_bundle, device="cpu")
    prepared = analysis.prepare_file(image, bundle.image)
    expected = analysis.analyse(bundle, [prepared.model])[0]

    _open(driver, app_url)
    driver.find_element("css selector", "input[type='file']").send_keys(str(image))
    _wait(driver, lambda d: _loaded_images(d, ".st-key-overlay"), "the Grad-CAM overlay")
    _wait(driver, lambda d: _text(d, ".st-key-caption").startswith("Caption:"), "the caption")

    heading = _text(driver, ".st-key-prediction").splitlines()[0]
    assert heading == f"{expected.label} ({expected.confidence:.0%})"
    assert expected.label in bundle.class_names
    assert _text(driver, ".st-key-caption") == f"Caption: {expected.caption}" and expected.caption
    verdict = _text(driver, ".st-key-ood")
    assert verdict.startswith("Out of distribution" if expected.ood_flag else "In distribution")
    assert f"OOD score {expected.ood_score:.3g}" in verdict

    overlay = _loaded_images(driver, ".st-key-overlay")[0]
    assert overlay.get_attribute("alt") == "Grad-CAM overlay"
    served = np.asarray(Image.open(io.BytesIO(_get(overlay.get_attribute("src")))).convert("RGB"))
    want = figures.cam_overlay(prepared.view, expected.cam)
    assert served.shape == want.shape == (analysis.VIEW_SIDE, analysis.VIEW_SIDE, 3)
    assert np.abs(served.astype(int) - want).mean() < 1.0  # the overlay of this image, sent losslessly
    assert np.abs(served.astype(int) - prepared.view).mean() > 5.0  # and not the bare image
    _wait(driver, lambda d: _settled(d) and _loaded_images(d, ".st-key-votes"), "the vote fractions")
    assert _loaded_images(driver, ".st-key-probabilities")
    assert "TensorFlow not loaded" in _text(driver, ".st-key-runtime")
    driver.save_screenshot(str(screenshots / "01-upload.png"))


def test_a_hostile_upload_is_refused_with_its_reason(driver, app_url, tmp_path, screenshots):
    page = tmp_path / "page.jpg"
    page.write_text("<html><body>404 not found</body></html>\n")
    _open(driver, app_url)
    driver.find_element("css selector", "input[type='file']").send_keys(str(page))
    _wait(driver, lambda d: _text(d, ".st-key-upload_error"), "the upload error")
    message = _text(driver, ".st-key-upload_error")
    assert "page.jpg" in message and "not_an_image" in message and "morphcat-upload-" not in message
    assert not driver.find_elements("css selector", ".st-key-overlay")
    driver.save_screenshot(str(screenshots / "02-refused-upload.png"))


def test_an_object_picked_from_the_catalog_gets_its_annotated_class(driver, app_url, annotated):
    catalog, out = annotated
    folder = catalog_view.open_annotations(out)
    first_id = catalog.table.column("object_id")[0].as_py()
    annotated_row = folder.scan(folder.runs[0]).filter(pl.col("object_id") == first_id).collect().row(0, named=True)
    _open(driver, app_url)
    driver.find_element("xpath", "//label[.//p[text()='Pick from the catalog']]").click()
    _wait(driver, lambda d: _settled(d) and _loaded_images(d, ".st-key-overlay"), "the picked object's overlay")
    heading, subtitle = _text(driver, ".st-key-prediction").splitlines()[:2]
    assert heading == f"{annotated_row['label_pred']} ({annotated_row['confidence']:.0%})"
    assert subtitle == f"predicted class of object {first_id}"
    assert _text(driver, ".st-key-caption") == f"Caption: {annotated_row['caption']}"


def test_the_catalog_view_filters_shows_a_gallery_and_downloads(driver, app_url, annotated, downloads, screenshots):
    from selenium.webdriver.common.keys import Keys

    catalog, out = annotated
    folder = catalog_view.open_annotations(out)
    every = folder.scan(folder.runs[0]).collect()
    _open(driver, app_url)
    driver.find_element("xpath", "//label[.//p[text()='Catalog']]").click()
    _wait(driver, lambda d: _settled(d) and len(_loaded_images(d, ".st-key-gallery_0")) == 2, "the gallery")
    assert _text(driver, ".st-key-catalog_summary").startswith(f"{N_GALAXIES} of {N_GALAXIES} objects match")
    cards = driver.find_elements("css selector", "[class*='st-key-gallery_']")
    assert len(cards) == N_GALAXIES
    first = every.row(0, named=True)
    assert first["object_id"] in cards[0].text and first["caption"] in cards[0].text
    driver.save_screenshot(str(screenshots / "03-catalog.png"))

    word = first["caption"].split()[-1]
    kept = catalog_view.apply_filters(every.lazy(), catalog_view.Filters(caption_words=word)).collect().height
    for words, count in ((word, kept), ("nosuchword", 0)):
        field = driver.find_element("css selector", ".st-key-caption_words input")
        field.send_keys(Keys.CONTROL, "a")
        field.send_keys(words, Keys.ENTER)
        _wait(driver, lambda d: _text(d, ".st-key-catalog_summary").startswith(f"{count} of {N_GALAXIES} objects")
              and _settled(d), f"{count} objects with caption word {words!r}")
    assert "No object matches the filters." in driver.find_element("tag name", "body").text

    field = driver.find_element("css selector", ".st-key-caption_words input")
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys(word, Keys.ENTER)
    _wait(driver, lambda d: _text(d, ".st-key-catalog_summary").startswith(f"{kept} of") and _settled(d),
          "the filter to be set again")
    driver.find_element("xpath", "//button[.//p[contains(text(), 'filtered table (Parquet)')]]").click()
    _wait(driver, lambda d: [p for p in downloads.glob("*.parquet")], "the Parquet download")
    got = pl.read_parquet(next(downloads.glob("*.parquet")))
    want = catalog_view.apply_filters(every.lazy(), catalog_view.Filters(caption_words=word)).collect()
    assert got.equals(want)
