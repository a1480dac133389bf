#!/usr/bin/env python3
"""Screenshots of the web pages for the docs: docs/img/dashboard.png and settings.png.

Usage: tools/screenshots.py [--seconds 70] [--lang en]
Runs the device as on the board (tools/simulate.py --w5500: the real W5500 driver on the
chip model, factory settings, so the pages show the board's ports 502 and 80 and its static
address) with the simulated Aidon meter, the device ports served on free ports of
127.0.0.1. Lets it run --seconds so the power chart has a few samples (one per 10 s), then
opens the pages in headless Chromium (Debian's /usr/bin/chromium + chromedriver, Selenium).
"""

import argparse
import os
import socket
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.append(ROOT)
import tools._host  # noqa: E402,F401  (root and tests/ after the stdlib: docs/architecture.md)
OUT = os.path.join(ROOT, "docs", "img")


def free_port():
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def browser(lang):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", "--hide-scrollbars",
                "--user-data-dir=" + tempfile.mkdtemp(prefix="han2x-shots-"),
                "--lang=" + lang, "--window-size=1200,900"):
        opts.add_argument(arg)
    opts.add_experimental_option("prefs", {"intl.accept_languages": lang})
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)


def shoot(driver, url, name, ready):
    driver.get(url)
    deadline = time.monotonic() + 10
    while not driver.execute_script(ready) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1200, height + 140)  # the window includes the browser's frame
    time.sleep(0.3)
    path = os.path.join(OUT, name)
    driver.save_screenshot(path)
    print("wrote", os.path.relpath(path, ROOT))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=70, help="let the meter run this long")
    p.add_argument("--lang", default="en", help="browser language (en or nb)")
    args = p.parse_args()
    os.makedirs(OUT, exist_ok=True)
    from han2x_core.settings import DEFAULTS
    from tools import simulate

    http_port = free_port()
    device = simulate.build_w5500_device(
        simulate.build_parser().parse_args(["--w5500", "--quiet"]), settings=dict(DEFAULTS),
        port_map={DEFAULTS["modbus_port"]: free_port(), DEFAULTS["web_port"]: http_port})
    stop = []

    def run():
        while not stop:
            device.step()
            device.wait()

    loop = threading.Thread(target=run, daemon=True)
    loop.start()
    try:
        time.sleep(args.seconds)
        driver = browser(args.lang)
        try:
            url = "http://127.0.0.1:%d" % http_port
            shoot(driver, url + "/", "dashboard.png",
                  "return document.body.getAttribute('data-polls') && "
                  "document.getElementById('chart').getAttribute('data-samples')")
            shoot(driver, url + "/settings", "settings.png", "return true")
        finally:
            driver.quit()
    finally:
        stop.append(1)
        loop.join(5)
        device.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
