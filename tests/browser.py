"""A real browser for the tests: Debian's Chromium (`make deps`: packages chromium, chromium-driver), headless,
driven by Playwright (its own browser download does not work on these machines; Debian's binary does).

`open_page` loads a file and returns what a person and the network would have seen: every request the page
made, a screenshot, and the page's elements as the browser built them.
"""

import dataclasses
import io
import shutil
import tempfile
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
# Root needs --no-sandbox; the rest keeps Chromium's own traffic (updates, sync, field trials) out of the way.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-default-apps"]
VIEWPORT = {"width": 1100, "height": 900}


@dataclasses.dataclass
class Seen:
    url: str
    requests: list[str]  # every request the page made, the page itself first
    screenshot: bytes  # PNG of the whole page
    timelines: list[str]  # data-scenario of each svg.timeline, in order
    sections: list[str]  # class of each section.scenario
    banner: str  # the banner's text
    text: str  # the page's visible text


def chromium() -> Path:
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: `make deps` installs Debian's chromium")
    return CHROMIUM


def open_page(path: Path) -> Seen:
    from playwright.sync_api import sync_playwright

    profile = Path(tempfile.mkdtemp(prefix="wdimage-chromium-"))  # a fresh profile each time
    try:
        with sync_playwright() as p:
            context = p.chromium.launch_persistent_context(
                str(profile), executable_path=str(chromium()), headless=True, args=CHROMIUM_ARGS,
                viewport=VIEWPORT)
            try:
                page = context.new_page()
                requests: list[str] = []
                page.on("request", lambda request: requests.append(request.url))
                url = path.resolve().as_uri()
                page.goto(url, wait_until="load")
                page.wait_for_timeout(300)  # anything the page would load late
                seen = Seen(
                    url=url, requests=requests, screenshot=page.screenshot(full_page=True),
                    timelines=[e.get_attribute("data-scenario") for e in page.locator("svg.timeline").all()],
                    sections=[e.get_attribute("class") for e in page.locator("section.scenario").all()],
                    banner=page.locator("div.banner").inner_text() if page.locator("div.banner").count() else "",
                    text=page.locator("body").inner_text())
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    return seen


def colours(png: bytes) -> dict[tuple[int, int, int], int]:
    """Pixel count per colour of a screenshot."""
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    return {colour: count for count, colour in image.getcolors(maxcolors=image.width * image.height)}


def hex_rgb(value: str) -> tuple[int, int, int]:
    return tuple(int(value.lstrip("#")[i:i + 2], 16) for i in (0, 2, 4))
