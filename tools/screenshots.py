#!/usr/bin/env python3
"""Screenshots of the web pages for the docs: docs/img/dashboard.png and settings.png.

Usage: tools/screenshots.py [--seconds 70] [--lang en]
Starts tools/simulate.py (the simulated Aidon meter) on free ports with a throw-away settings
file, lets it run --seconds so the power chart has a few samples (one per 10 s), then opens
the pages in headless Chromium (Debian's /usr/bin/chromium + chromedriver, via Selenium).
"""

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "docs", "img")


def free_port(preferred):
    """preferred if it is free (the pictures then show make run's ports), else any."""
    for port in (preferred, 0):
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
            return s.getsockname()[1]
        except OSError:
            continue
        finally:
            s.close()


def wait_port(port, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("the simulated device did not start")


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
    http_port, modbus_port = free_port(8080), free_port(5020)
    settings = os.path.join(tempfile.mkdtemp(prefix="han2x-shots-"), "settings.toml")
    sim = subprocess.Popen([sys.executable, os.path.join(ROOT, "tools", "simulate.py"),
                            "--http-port", str(http_port), "--modbus-port", str(modbus_port),
                            "--settings", settings, "--quiet"], cwd=ROOT)
    try:
        wait_port(http_port)
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
        sim.send_signal(signal.SIGTERM)
        sim.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
