#!/usr/bin/env python3
"""The page at / of a running `inception serve`, in headless Chromium (Debian's chromium and chromedriver, driven by
Selenium): load it, upload a real photo and read the five labels and probabilities it shows against `inception
classify --top 5 --json`; the overlay is a PNG of the photo's aspect, equal byte for byte to `inception explain`'s;
clicking the second class changes it; a text file shows the server's one-line error; the Server tab (reached with
the keyboard) shows the model's batches; the face model compares two photos as `inception compare` does; the page
fits a phone's width. A screenshot of each step goes to --shots, and each path is printed.

Usage: browser_check.py --url URL --inception BIN --classifier MODEL WEIGHTS --faces MODEL WEIGHTS --shots DIR
       --photo PHOTO --face A --face B --text FILE
"""
import argparse
import base64
import json
import os
import subprocess
import sys
import tempfile

from PIL import Image
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait


def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1200,1000"]:
        options.add_argument(flag)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def inception(args, *words):
    result = subprocess.run([args.inception, *words], capture_output=True, text=True, check=True,
                            env=dict(os.environ, INCEPTION_TUNE="0"))
    return result.stdout


def blob_bytes(driver, element_id):
    """The bytes behind an <img>'s blob: or data: URL."""
    script = """const done = arguments[arguments.length - 1];
    fetch(document.getElementById(arguments[0]).src).then(r => r.arrayBuffer()).then(b => {
      let s = ""; for (const x of new Uint8Array(b)) s += String.fromCharCode(x); done(btoa(s)); });"""
    return base64.b64decode(driver.execute_async_script(script, element_id))


class Check:
    def __init__(self, driver, shots):
        self.driver, self.shots, self.step = driver, shots, 0

    def shot(self, name):
        self.step += 1
        path = os.path.join(self.shots, f"{self.step:02d}-{name}.png")
        self.driver.save_screenshot(path)
        print(f"screenshot: {path}", flush=True)

    def wait(self, condition, what):
        # The page redraws its tables while a condition reads them (the Server tab every second): an element gone
        # under the condition is a reason to look again, not a failure.
        ignored = (NoSuchElementException, StaleElementReferenceException)
        try:
            return WebDriverWait(self.driver, 120, ignored_exceptions=ignored).until(lambda d: condition(d))
        except Exception:
            self.shot("failed")
            raise AssertionError(f"the page never showed {what}")


def png_aspect(data, photo):
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "the overlay is not a PNG"
    with tempfile.NamedTemporaryFile(suffix=".png") as f:
        f.write(data)
        f.flush()
        w, h = Image.open(f.name).size
    pw, ph = Image.open(photo).size
    assert abs(w / h - pw / ph) < 0.01, f"overlay {w}×{h} is not of the photo's aspect {pw}×{ph}"


def classify(check, args):
    driver, (model, weights) = check.driver, args.classifier
    driver.get(args.url)
    check.wait(lambda d: len(Select(d.find_element(By.ID, "model")).options) >= 2, "the models")
    Select(driver.find_element(By.ID, "model")).select_by_value(model)
    check.shot("loaded")
    driver.find_element(By.ID, "photo").send_keys(os.path.abspath(args.photo))
    check.wait(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#top .class")) == 5, "five classes")
    check.wait(lambda d: d.find_element(By.ID, "overlay").get_attribute("data-index"), "the overlay")
    check.shot("classified")
    shown = [(b.find_element(By.CLASS_NAME, "label").text, float(b.find_element(By.CLASS_NAME, "probability").text
                                                                   .rstrip("%")))
             for b in driver.find_elements(By.CSS_SELECTOR, "#top .class")]
    cli = json.loads(inception(args, "classify", "--weights", weights, "--model", model, "--top", "5", "--json",
                               args.photo))[0]["predictions"]
    for (label, percent), p in zip(shown, cli):
        assert label == p["label"], f"the page shows {label}, classify says {p['label']}"
        assert abs(percent - 100 * p["probability"]) <= 0.0051, f"{label}: {percent}% against {p['probability']}"
    print(f"top five as classify: {shown}")
    first = blob_bytes(driver, "overlay")
    png_aspect(first, args.photo)
    buttons = driver.find_elements(By.CSS_SELECTOR, "#top .class")
    second = buttons[1].get_attribute("data-index")
    buttons[1].send_keys(Keys.ENTER)  # the keyboard reaches and presses it
    check.wait(lambda d: d.find_element(By.ID, "overlay").get_attribute("data-index") == second, "the second overlay")
    check.shot("second-class")
    overlay = blob_bytes(driver, "overlay")
    png_aspect(overlay, args.photo)
    assert overlay != first, "the overlay did not change with the class"
    with tempfile.TemporaryDirectory() as folder:
        out = os.path.join(folder, "cli.png")
        inception(args, "explain", "--weights", weights, "--model", model, "--class", second, "--output", out,
                  args.photo)
        assert open(out, "rb").read() == overlay, "the page's overlay differs from inception explain's"
    print(f"overlay of class {second}: {len(overlay)} bytes, equal to inception explain's")


def errors_and_state(check, args):
    driver = check.driver
    driver.find_element(By.ID, "photo").send_keys(os.path.abspath(args.text))
    check.wait(lambda d: d.find_element(By.ID, "error").text, "the error")
    error = driver.find_element(By.ID, "error").text
    assert error == "not a JPEG or PNG image", f"the error says {error!r}"
    check.shot("not-an-image")
    print(f"a text file: {error}")
    driver.find_element(By.ID, "tab-try").send_keys(Keys.ARROW_RIGHT)
    model = args.classifier[0]
    check.wait(lambda d: any(model in r.text and r.find_elements(By.TAG_NAME, "td")[2].text not in ("0", "")
                             for r in d.find_elements(By.CSS_SELECTOR, "#metrics tr")), "the server's batches")
    assert driver.find_element(By.ID, "tab-state").get_attribute("aria-selected") == "true"
    check.shot("server-state")
    print("server tab: " + " | ".join(r.text for r in driver.find_elements(By.CSS_SELECTOR, "#metrics tr")))
    driver.find_element(By.ID, "tab-state").send_keys(Keys.ARROW_LEFT)


def faces(check, args):
    driver, (model, weights) = check.driver, args.faces
    Select(driver.find_element(By.ID, "model")).select_by_value(model)
    check.wait(lambda d: d.find_element(By.ID, "compare").is_displayed(), "the face comparison")
    driver.find_element(By.ID, "face-a").send_keys(os.path.abspath(args.face[0]))
    driver.find_element(By.ID, "face-b").send_keys(os.path.abspath(args.face[1]))
    driver.find_element(By.ID, "compare").click()
    check.wait(lambda d: d.find_element(By.ID, "verdict").text, "the verdict")
    check.wait(lambda d: d.execute_script("return document.getElementById('overlay-b').naturalWidth") > 0,
               "the second face's overlay")
    check.shot("faces")
    verdict = driver.find_element(By.ID, "verdict").text
    cli = json.loads(inception(args, "compare", "--weights", weights, "--model", model, "--json", "--no-detect",
                               *args.face))
    assert verdict.startswith(f"distance {cli['distance']:.4f}"), f"{verdict!r} against {cli['distance']}"
    for element, photo in zip(["overlay-a", "overlay-b"], args.face):
        png_aspect(blob_bytes(driver, element), photo)
    print(f"faces: {verdict}")


def phone(check, args):
    driver = check.driver
    driver.set_window_size(390, 844)
    Select(driver.find_element(By.ID, "model")).select_by_value(args.classifier[0])
    wide = driver.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
    check.shot("phone")
    assert wide <= 0, f"at a phone's width the page is {wide} px too wide"
    unlabelled = driver.execute_script("""return [...document.querySelectorAll('input, select')]
        .filter(e => !e.labels || e.labels.length === 0).map(e => e.id)""")
    assert not unlabelled, f"controls without a label: {unlabelled}"
    print("phone width: fits; every control labelled")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True)
    parser.add_argument("--inception", required=True)
    parser.add_argument("--classifier", nargs=2, required=True)
    parser.add_argument("--faces", nargs=2, required=True)
    parser.add_argument("--shots", required=True)
    parser.add_argument("--photo", required=True)
    parser.add_argument("--face", action="append", required=True)
    parser.add_argument("--text", required=True)
    args = parser.parse_args()
    os.makedirs(args.shots, exist_ok=True)
    driver = browser()
    try:
        check = Check(driver, args.shots)
        classify(check, args)
        errors_and_state(check, args)
        faces(check, args)
        phone(check, args)
    finally:
        driver.quit()
    print("browser_check: every check passed")


if __name__ == "__main__":
    sys.exit(main())
