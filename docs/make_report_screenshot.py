"""docs/report.png: a screenshot of a demo's report.html in headless Chromium, and `browse`, which the
browser test uses to open a report.

    python docs/make_report_screenshot.py halluscope-demo/report.html
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

PNG = Path(__file__).with_name("report.png")


def chromium() -> tuple[str, str] | None:
    """(browser, driver) paths, or None where Debian's chromium and chromium-driver are not installed."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def browse(page: Path, screenshot: Path | None = None, width: int = 1280, height: int = 1700) -> dict:
    """Open `page` in headless Chromium: its console messages, each image's naturalWidth (0: not
    decoded), the ids of its sections; optionally save a screenshot."""
    from selenium import webdriver

    browser, driver = chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={width},{height}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(service=webdriver.ChromeService(driver), options=options)
    try:
        d.get(Path(page).resolve().as_uri())
        widths = d.execute_script("return Array.from(document.images).map(i => i.complete ? i.naturalWidth : 0)")
        sections = d.execute_script("return Array.from(document.querySelectorAll('h2[id]')).map(h => h.id)")
        if screenshot is not None:
            d.save_screenshot(str(screenshot))
        return {"console": d.get_log("browser"), "image_widths": widths, "sections": sections}
    finally:
        d.quit()


if __name__ == "__main__":
    seen = browse(Path(sys.argv[1]), PNG)
    print(f"wrote {PNG}: {len(seen['image_widths'])} images, sections {seen['sections']}, "
          f"{len(seen['console'])} console messages")
