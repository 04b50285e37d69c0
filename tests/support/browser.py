#!/usr/bin/python3
"""Drives Debian's headless Chromium through Selenium and chromedriver (Debian packages chromium,
chromium-driver, python3-selenium) for tests/status_page.rs: loads URL, reads what the test asks
for from the live DOM, saves a screenshot, and prints the findings as one JSON object.

Usage: browser.py URL SCREENSHOT_PNG
"""
import json
import sys
import tempfile

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By


def main() -> int:
    url, shot = sys.argv[1], sys.argv[2]
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    profile = tempfile.mkdtemp(prefix="sipedge-chromium-")
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--window-size=1280,1500",
        f"--user-data-dir={profile}",
    ):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    try:
        driver.set_page_load_timeout(15)
        driver.get(url)
        text = lambda css: [e.text for e in driver.find_elements(By.CSS_SELECTOR, css)]
        found = {
            "title": driver.title,
            "scripts": len(driver.find_elements(By.TAG_NAME, "script")),
            "hostile_bold": len(driver.find_elements(By.XPATH, "//b[normalize-space()='bold']")),
            "summary": text("#summary .card"),
            "refusals": text("#refusals tbody tr"),
            "probe": text("#push-probe p"),
            "providers": text("#providers tbody tr"),
            "partner_rows": len(driver.find_elements(By.CSS_SELECTOR, "#partners tbody tr")),
            "partners_heading": text("#partners h2"),
            "reload_errors": text("#reload-errors tbody tr"),
        }
        driver.save_screenshot(shot)
    finally:
        driver.quit()
    print(json.dumps(found))
    return 0


if __name__ == "__main__":
    sys.exit(main())
