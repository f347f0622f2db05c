"""``mixvae serve`` in a real browser: Debian's headless Chromium driven through chromium-driver.

Nothing is downloaded: selenium is given the system's chromedriver and chromium. Every page's
images load, a stroke drawn with pointer events and an uploaded PNG are routed (the chart shows
the model's own probabilities), a slider move decodes a new image, the clusters page opens an
expert, the map draws every image. A screenshot of each page is saved (``MIXVAE_SCREENSHOTS``
names the folder; a temporary one otherwise).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("flask")
webdriver = pytest.importorskip("selenium.webdriver")

from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By

from mixvae.app import Explorer, create_app, make_server
from mixvae.cli import main
from mixvae.estimator import MixtureVAE

from test_assign import png_folder, train_tiny

CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(shutil.which(CHROMIUM) is None or shutil.which(DRIVER) is None,
                       reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)"),
]


def start_browser(width: int = 1300, height: int = 1000) -> Any:
    """Headless Chromium from the system, through the system's chromedriver (nothing downloaded)."""
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--window-size={width},{height}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)


def wait_for(check: Callable[[], Any], timeout: float = 30.0) -> Any:
    end = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {check}")
        time.sleep(0.1)


IMAGES = "return [...document.images].map(i => [i.getAttribute('src'), i.complete, i.naturalWidth])"


def all_images_loaded(driver: Any) -> list[list[Any]]:
    def loaded() -> list[list[Any]] | None:
        found = driver.execute_script(IMAGES)
        return found if all(done for _, done, _ in found) else None

    images = wait_for(lambda: [found] if (found := loaded()) is not None else None)[0]
    broken = [src for src, _, width in images if width == 0]
    assert not broken, broken
    return images


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[tuple[str, Explorer, Any, Path, list[Path]]]:
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("browser")
    folder, files = png_folder(root)
    run = train_tiny(folder, root / "run")
    explorer = Explorer.open(run, log=lambda m: None)
    server = make_server(create_app(explorer), "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    driver = start_browser()
    try:
        yield f"http://127.0.0.1:{server.server_port}", explorer, driver, root, files
    finally:
        driver.quit()
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("MIXVAE_SCREENSHOTS") or tmp_path_factory.mktemp("shots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def chart(driver: Any) -> list[float] | None:
    raw = driver.find_element(By.ID, "chart").get_attribute("data-probabilities")
    return json.loads(raw) if raw else None


@pytest.mark.parametrize("path", ["/", "/expert/0", "/expert/1", "/outliers", "/training", "/try", "/item/3", "/search?q=img"])
def test_every_image_loads(site, shots, path):
    base, _, driver, _, _ = site
    driver.get(base + path)
    images = all_images_loaded(driver)
    if path not in ("/try",):
        assert images
    name = path.strip("/").replace("/", "-") or "clusters"
    driver.save_screenshot(str(shots / f"{name}.png"))


def test_clusters_page_opens_an_expert(site):
    base, ex, driver, _, _ = site
    driver.get(base + "/")
    k = int(np.bincount(ex.assigned.expert, minlength=ex.n_experts).argmax())
    driver.find_element(By.CSS_SELECTOR, f"#expert-{k} a.expert-link").click()
    wait_for(lambda: driver.current_url.endswith(f"/expert/{k}"))
    assert driver.find_element(By.TAG_NAME, "h1").text.startswith(f"Expert {k}")
    all_images_loaded(driver)


def test_a_stroke_on_the_canvas_is_routed(site, shots):
    base, ex, driver, _, _ = site
    driver.get(base + "/try")
    canvas = driver.find_element(By.ID, "canvas")
    assert chart(driver) is None
    # a horizontal bar across the top quarter, drawn with pointer events (down, moves, up)
    ActionChains(driver).move_to_element_with_offset(canvas, -120, -105).click_and_hold() \
        .move_by_offset(80, 0).move_by_offset(80, 0).move_by_offset(80, 0).release().perform()
    first = wait_for(lambda: chart(driver))
    assert len(first) == ex.n_experts and abs(sum(first) - 1) < 1e-5
    assert len(driver.find_elements(By.CSS_SELECTOR, "#chart .bar")) == ex.n_experts
    all_images_loaded(driver)  # every expert's reconstruction
    # a second stroke, across the bottom, changes the image and so the routing
    ActionChains(driver).move_to_element_with_offset(canvas, -120, 105).click_and_hold() \
        .move_by_offset(80, 0).move_by_offset(80, 0).move_by_offset(80, 0).release().perform()
    second = wait_for(lambda: c if (c := chart(driver)) != first else None)
    assert second != first
    driver.save_screenshot(str(shots / "try.png"))


def test_an_uploaded_png_is_routed_as_the_model_routes_it(site):
    base, ex, driver, root, files = site
    driver.get(base + "/try")
    driver.find_element(By.ID, "file").send_keys(str(files[7]))
    got = wait_for(lambda: chart(driver))
    image = np.asarray(Image.open(files[7]).convert("L"))
    expected = MixtureVAE.load(ex.run).predict_proba(image[None])[0]
    np.testing.assert_allclose(got, expected, atol=1e-5)
    best = driver.find_element(By.CSS_SELECTOR, "#chart .bar.top .name").text
    assert best.startswith(f"expert {int(np.argmax(expected))}")
    # a file that is no image gets a message, and the page keeps working
    bad = root / "notes.png"
    bad.write_text("not an image")
    driver.find_element(By.ID, "file").send_keys(str(bad))
    wait_for(lambda: "not an image" in driver.find_element(By.ID, "message").text)


def test_a_slider_move_decodes_a_new_image(site, shots):
    base, _, driver, _, _ = site
    driver.get(base + "/expert/0")
    all_images_loaded(driver)
    decoded = driver.find_element(By.ID, "decoded")
    before = decoded.get_attribute("src")
    slider = driver.find_elements(By.CSS_SELECTOR, "#sliders input.z")[0]
    ActionChains(driver).move_to_element_with_offset(slider, slider.size["width"] // 2 - 3, 0).click().perform()
    after = wait_for(lambda: s if (s := decoded.get_attribute("src")) != before else None)
    assert "z=" in after and float(after.split("z=")[1].split(",")[0]) > 1
    wait_for(lambda: driver.execute_script("const i = document.getElementById('decoded');"
                                           "return i.complete && i.naturalWidth > 0"))
    with urllib.request.urlopen(before) as a, urllib.request.urlopen(after) as b:
        assert a.read() != b.read()  # a different image, not only a different address
    # the temperature slider draws new samples
    samples = [i.get_attribute("src") for i in driver.find_elements(By.CSS_SELECTOR, "#samples img")]
    temp = driver.find_element(By.ID, "temperature")
    ActionChains(driver).move_to_element_with_offset(temp, -temp.size["width"] // 2 + 3, 0).click().perform()
    wait_for(lambda: [i.get_attribute("src") for i in driver.find_elements(By.CSS_SELECTOR, "#samples img")] != samples)
    assert "t=0" in driver.find_element(By.CSS_SELECTOR, "#samples img").get_attribute("src")
    all_images_loaded(driver)
    driver.save_screenshot(str(shots / "expert.png"))


def test_the_map_draws_every_image(site, shots):
    base, ex, driver, _, _ = site
    driver.get_log("browser")  # what earlier tests left (a refused upload's 400)
    driver.get(base + "/map")
    points = wait_for(lambda: driver.find_element(By.ID, "map").get_attribute("data-points"), timeout=120)
    assert int(points) == len(ex.sources)
    assert len(driver.find_elements(By.CSS_SELECTOR, "#map .scatterlayer .point")) == len(ex.sources)  # drawn
    driver.execute_script("document.getElementById('map').emit('plotly_click', {points: [{customdata: 3}]})")
    wait_for(lambda: ex.sources[3] in driver.find_element(By.ID, "picked").text)
    all_images_loaded(driver)
    errors = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors
    driver.save_screenshot(str(shots / "map.png"))


def test_a_failed_upload_leaves_no_old_answer_and_clear_clears_everything(site):
    base, _, driver, root, files = site
    driver.get(base + "/try")
    driver.find_element(By.ID, "file").send_keys(str(files[2]))
    wait_for(lambda: chart(driver))
    seen = driver.find_element(By.ID, "seen")
    assert seen.is_displayed() and seen.get_attribute("src").startswith("data:image/png;base64,")
    uploaded = driver.execute_script(  # the upload is drawn on the canvas: its centre is not the blank black
        "const c = document.getElementById('canvas'); return Array.from("
        "c.getContext('2d').getImageData(0, 0, c.width, c.height).data).some((v, i) => i % 4 !== 3 && v > 0);")
    assert uploaded is (bool(np.asarray(Image.open(files[2])).any()))
    bad = root / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    driver.find_element(By.ID, "file").send_keys(str(bad))
    wait_for(lambda: driver.find_element(By.ID, "message").text)
    assert chart(driver) is None and driver.find_element(By.ID, "score").text == "–"
    assert not driver.find_elements(By.CSS_SELECTOR, "#recons img") and not driver.find_elements(By.ID, "seen")
    driver.find_element(By.ID, "file").send_keys(str(files[3]))
    wait_for(lambda: chart(driver))
    assert driver.find_element(By.ID, "message").text == ""
    driver.find_element(By.ID, "clear").click()
    assert chart(driver) is None and driver.find_element(By.ID, "score").text == "–"
    assert not driver.find_elements(By.CSS_SELECTOR, "#recons img") and not driver.find_elements(By.ID, "seen")
    assert driver.execute_script("return document.getElementById('file').value") == ""


def test_a_thumbnail_opens_its_images_page_and_its_neighbours_open_theirs(site):
    base, ex, driver, _, _ = site
    driver.get(base + "/outliers")
    first = driver.find_element(By.CSS_SELECTOR, "a.thumb")
    index = int(first.get_attribute("href").rsplit("/", 1)[1])
    first.click()
    wait_for(lambda: driver.current_url.endswith(f"/item/{index}"))
    assert driver.find_element(By.TAG_NAME, "h1").text == ex.sources[index]
    assert len(driver.find_elements(By.CSS_SELECTOR, "#chart .bar")) == ex.n_experts
    all_images_loaded(driver)
    driver.find_element(By.CSS_SELECTOR, ".sub a").click()  # the expert it is routed to
    wait_for(lambda: "/expert/" in driver.current_url)


def test_the_arrow_keys_walk_an_experts_images(site):
    from selenium.webdriver.common.keys import Keys

    base, ex, driver, _, _ = site
    k = int(np.bincount(ex.assigned.expert, minlength=ex.n_experts).argmax())
    members = ex.members(k).tolist()
    driver.get(base + f"/item/{members[0]}")
    body = driver.find_element(By.TAG_NAME, "body")
    body.send_keys(Keys.ARROW_RIGHT)
    wait_for(lambda: driver.current_url.endswith(f"/item/{members[1]}"))
    driver.find_element(By.TAG_NAME, "body").send_keys(Keys.ARROW_LEFT)
    wait_for(lambda: driver.current_url.endswith(f"/item/{members[0]}"))
    driver.find_element(By.TAG_NAME, "body").send_keys(Keys.ARROW_LEFT)  # the first: nowhere to go
    assert driver.current_url.endswith(f"/item/{members[0]}")
    if len(members) > 48:  # an expert's pages follow the keys too
        driver.get(base + f"/expert/{k}")
        driver.find_element(By.TAG_NAME, "body").send_keys(Keys.ARROW_RIGHT)
        wait_for(lambda: "page=2" in driver.current_url)


def test_the_map_is_coloured_by_expert_sub_folder_or_outlier_score(site):
    from selenium.webdriver.support.ui import Select

    base, ex, driver, _, _ = site
    driver.get(base + "/map")
    wait_for(lambda: driver.find_element(By.ID, "map").get_attribute("data-points"), timeout=120)

    def legend() -> list[str]:
        return [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#map .legend .traces .legendtext")]

    experts_shown = sorted({int(k) for k in ex.assigned.expert})
    assert len(legend()) == len(experts_shown)
    choice = Select(driver.find_element(By.ID, "colour-by"))
    choice.select_by_value("label")
    wait_for(lambda: driver.find_element(By.ID, "map").get_attribute("data-colour") == "label")
    folders = sorted({s.split("/", 1)[0] for s in ex.sources})
    assert sorted(legend()) == folders  # the image folder's own classes, one colour each
    assert len(driver.find_elements(By.CSS_SELECTOR, "#map .scatterlayer .point")) == len(ex.sources)
    choice.select_by_value("score")
    wait_for(lambda: driver.find_element(By.ID, "map").get_attribute("data-colour") == "score")
    assert driver.find_elements(By.CSS_SELECTOR, "#map .colorbar")  # a colour scale, not a legend
    assert len(driver.find_elements(By.CSS_SELECTOR, "#map .scatterlayer .point")) == len(ex.sources)


def test_a_lasso_selection_on_the_map_exports_its_images(site):
    base, _, driver, _, _ = site
    driver.get(base + "/map")
    wait_for(lambda: driver.find_element(By.ID, "map").get_attribute("data-points"), timeout=120)
    ids = list(range(0, 40, 2))  # 20 images, as a lasso would hand them over
    driver.execute_script("document.getElementById('map').emit('plotly_selected', {points: arguments[0]})",
                          [{"customdata": i} for i in ids])
    link = wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "#selection a"))[0]
    assert link.text == "export the 20 selected images as CSV"
    assert link.get_attribute("download") == "mixvae-selection.csv" and link.get_attribute("href").startswith("blob:")
    # the page asked the app for exactly these images (the CSV it answers: tests/test_app_guard.py)
    assert driver.find_element(By.ID, "selection").get_attribute("data-ids") == ",".join(map(str, ids))
    driver.find_element(By.ID, "selection-zip").click()  # the images themselves, as a zip of their files
    archive = wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "#selection a.zip"))[0]
    wait_for(lambda: archive.text == "mixvae-selection.zip (20 images)")
    assert archive.get_attribute("href").startswith("blob:")


def test_checked_images_of_an_expert_are_exported(site):
    base, ex, driver, _, _ = site
    k = int(np.bincount(ex.assigned.expert, minlength=ex.n_experts).argmax())
    driver.get(base + f"/expert/{k}")
    boxes = driver.find_elements(By.CSS_SELECTOR, "input.pick")
    assert len(boxes) == min(48, int((ex.assigned.expert == k).sum()))
    assert driver.find_element(By.ID, "export-picked").get_attribute("disabled")
    for box in boxes[1:4]:
        box.click()
    assert driver.find_element(By.ID, "picked-count").text == "3 selected"
    driver.find_element(By.ID, "export-picked").click()
    file = wait_for(lambda: (f := driver.find_element(By.ID, "picked-file")).is_displayed() and f)
    assert file.get_attribute("href").startswith("blob:") and file.text == "mixvae-selection.csv (3 images)"
    members = ex.members(k).tolist()
    assert driver.find_element(By.ID, "picked-bar").get_attribute("data-ids") == ",".join(map(str, members[1:4]))
    driver.find_element(By.ID, "zip-picked").click()
    archive = wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "#picked-bar a.zip"))[0]
    wait_for(lambda: archive.text == "mixvae-selection.zip (3 images)" and archive.get_attribute("href"))
    driver.find_element(By.ID, "pick-all").click()
    assert driver.find_element(By.ID, "picked-count").text == f"{len(boxes)} selected"


def text_of(driver: Any, selector: str) -> str:
    """An element's text, or "" while the page it was on is being replaced."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

    try:
        return str(driver.find_element(By.CSS_SELECTOR, selector).text)
    except (NoSuchElementException, StaleElementReferenceException):
        return ""


def test_names_and_merges_made_in_the_browser_are_kept_across_a_restart_and_assign_writes_them(tmp_path):
    """Name a cluster, merge two, lasso-select 20 images on the map and export them, restart the
    server: every decision is kept, and assign writes the names."""
    import csv

    torch.manual_seed(0)
    folder, _ = png_folder(tmp_path)
    run = train_tiny(folder, tmp_path / "run")

    def serve() -> tuple[Any, str, Explorer]:
        ex = Explorer.open(run, log=lambda m: None)
        server = make_server(create_app(ex), "127.0.0.1", 0)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server, f"http://127.0.0.1:{server.server_port}", ex

    server, base, ex = serve()
    sizes = [len(ex.members(k)) for k in range(ex.n_experts)]
    k, j = int(np.argmax(sizes)), int(np.argsort(sizes)[-2])
    driver = start_browser()
    try:
        driver.get(base + f"/expert/{j}")
        driver.find_element(By.ID, "cluster-name").send_keys("top band")
        driver.find_element(By.ID, "save-name").click()
        wait_for(lambda: "top band" in text_of(driver, "h1"))
        driver.get(base + f"/expert/{k}")
        from selenium.webdriver.support.ui import Select

        Select(driver.find_element(By.ID, "merge-into")).select_by_value(str(j))
        driver.find_element(By.ID, "merge").click()
        wait_for(lambda: driver.current_url.endswith(f"/expert/{j}")
                 and f"{sizes[j] + sizes[k]} images routed here" in text_of(driver, ".sub"))
        driver.get(base + "/map")
        wait_for(lambda: driver.find_element(By.ID, "map").get_attribute("data-points"), timeout=120)
        ids = list(range(20))
        driver.execute_script("document.getElementById('map').emit('plotly_selected', {points: arguments[0]})",
                              [{"customdata": i} for i in ids])
        wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "#selection a"))
        server.shutdown()
        server.server_close()
        server, base, _ = serve()  # a restart
        driver.get(base + f"/expert/{k}")
        assert "Merged into" in driver.find_element(By.ID, "curate").text
        driver.get(base + f"/expert/{j}")
        assert "top band" in driver.find_element(By.TAG_NAME, "h1").text
    finally:
        driver.quit()
        server.shutdown()
        server.server_close()
    out = tmp_path / "assigned.csv"
    assert main(["assign", str(run), "--data", str(folder), "--out", str(out), "--quiet"]) == 0
    rows = list(csv.DictReader(out.read_text().splitlines()))
    assert {r["name"] for r in rows if int(r["expert"]) == j} == {"top band"}
    assert sum(int(r["expert"]) == j for r in rows) == sizes[j] + sizes[k]


def test_undo_clears_every_name_and_merge(tmp_path):
    torch.manual_seed(0)
    folder, _ = png_folder(tmp_path)
    run = train_tiny(folder, tmp_path / "run")
    ex = Explorer.open(run, log=lambda m: None)
    ex.curate("name", 0, "zero")
    ex.curate("merge", 1, 2)
    server = make_server(create_app(ex), "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    driver = start_browser()
    try:
        driver.get(f"http://127.0.0.1:{server.server_port}/expert/1")
        driver.find_element(By.ID, "reset-curation").click()
        wait_for(lambda: "merge into" in text_of(driver, "#curate"))  # expert 1 is itself again
    finally:
        driver.quit()
        server.shutdown()
        server.server_close()
    assert ex.curation.names == {} and ex.curation.merged == {}


def test_checked_images_are_moved_or_marked_as_junk(tmp_path):
    from selenium.webdriver.support.ui import Select

    torch.manual_seed(0)
    folder, _ = png_folder(tmp_path)
    run = train_tiny(folder, tmp_path / "run")
    ex = Explorer.open(run, log=lambda m: None)
    k = int(np.argmax([len(ex.members(e)) for e in range(ex.n_experts)]))
    j = (k + 1) % ex.n_experts
    first = ex.members(k).tolist()[:3]
    server = make_server(create_app(ex), "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    driver = start_browser()
    try:
        driver.get(f"http://127.0.0.1:{server.server_port}/expert/{k}")
        boxes = driver.find_elements(By.CSS_SELECTOR, "input.pick")
        boxes[0].click()
        boxes[1].click()
        Select(driver.find_element(By.ID, "move-into")).select_by_value(str(j))
        driver.find_element(By.ID, "move-picked").click()
        wait_for(lambda: set(first[:2]) <= set(ex.members(j).tolist()))  # ordered by their new cluster's probability
        wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "input.pick"))  # the page again, after its reload
        wait_for(lambda: driver.execute_script("return document.readyState") == "complete")
        box = next(b for b in driver.find_elements(By.CSS_SELECTOR, "input.pick") if int(b.get_attribute("value")) == first[2])
        box.click()
        driver.find_element(By.ID, "junk-picked").click()
        wait_for(lambda: int(ex.assigned.expert[first[2]]) == -1)
    finally:
        driver.quit()
        server.shutdown()
        server.server_close()
    assert not set(first) & set(ex.members(k).tolist())
