"""Screenshots of every page of ``mixvae serve`` for the README (docs/images/app-*.png).

Serves RUN with ``mixvae serve`` on 127.0.0.1, opens each page in Debian's headless Chromium
(through chromium-driver; the map drawn in SVG, as headless Chromium draws no WebGL), draws a digit on
the Try page, moves a latent slider on an expert's page, clicks a point of the map, and saves one
PNG per page.

    python tools/app_screenshots.py runs/explore docs/images
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

PAGES = ("clusters", "expert", "try", "map", "outliers", "training")


def browser(width: int, height: int) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--hide-scrollbars",
                 f"--window-size={width},{height}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"), options=options)


def settle(driver: Any, seconds: float = 1.0) -> None:
    end = time.monotonic() + 60
    while time.monotonic() < end and not driver.execute_script(
            "return [...document.images].every(i => i.complete)"):
        time.sleep(0.2)
    time.sleep(seconds)


def draw_digit(driver: Any) -> None:
    """A 7: a bar across the top, then a stroke down to the bottom left."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    canvas = driver.find_element(By.ID, "canvas")
    ActionChains(driver).move_to_element_with_offset(canvas, -70, -90).click_and_hold() \
        .move_by_offset(70, 0).move_by_offset(70, 0).move_by_offset(-40, 60).move_by_offset(-40, 60) \
        .move_by_offset(-25, 55).release().perform()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--expert", type=int, default=0, help="the expert whose page is shown")
    args = p.parse_args()
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    proc = subprocess.Popen([sys.executable, "-m", "mixvae", "serve", str(args.run), "--port", "0"],
                            stderr=subprocess.PIPE, text=True)
    base = None
    for line in proc.stderr:  # type: ignore[union-attr]
        found = re.search(r"at (http://127\.0\.0\.1:\d+)/", line)
        if found:
            base = found.group(1)
            break
    if base is None:
        return proc.wait()
    driver = browser(1300, 900)
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        for page, path in zip(PAGES, ("/", f"/expert/{args.expert}", "/try", "/map?draw=svg", "/outliers", "/training")):
            driver.get(base + path)
            settle(driver)
            if page == "try":
                draw_digit(driver)
                time.sleep(2)
            if page == "expert":
                slider = driver.find_elements(By.CSS_SELECTOR, "#sliders input.z")[0]
                ActionChains(driver).move_to_element_with_offset(slider, slider.size["width"] // 3, 0).click().perform()
                time.sleep(1)
            if page == "map":
                end = time.monotonic() + 600
                while time.monotonic() < end and not driver.find_element(By.ID, "map").get_attribute("data-points"):
                    time.sleep(1)
                driver.execute_script("document.getElementById('map').emit('plotly_click', {points: [{customdata: 0}]})")
                time.sleep(3)
            settle(driver, 0.5)
            driver.save_screenshot(str(args.out / f"app-{page}.png"))
            print(args.out / f"app-{page}.png")
    finally:
        driver.quit()
        proc.terminate()
        proc.wait(timeout=60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
