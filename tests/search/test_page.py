"""The search page in a real browser (Debian's chromium, driven by Playwright) against a real
`foley serve`: searching, pictures, playing, filters in the URL, search by example, uploads
followed to their new row, the keyboard, and no console errors.

Set FOLEY_PAGE_SHOTS=/some/folder to keep screenshots of the list, a detail and an upload.
A failing test leaves a screenshot in its tmp_path (the path is printed).
"""

from __future__ import annotations

import io
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import soundfile as sf

from tests.search.browser import API_KEY, CHROMIUM, CHROMIUM_ARGS, Server, running_server
from tests.sounds import SAMPLE_RATE, tone, write_library

if not CHROMIUM.exists():
    pytest.skip(
        f"no chromium at {CHROMIUM}: install it with `apt-get install chromium` "
        "(scripts/setup.sh does) to run the browser tests",
        allow_module_level=True,
    )

from playwright.sync_api import (  # noqa: E402
    Browser,
    ConsoleMessage,
    Page,
    Response,
    expect,
    sync_playwright,
)

PAGE_BYTES_LIMIT = 100 * 1024
ROWS = 20
# How long an expectation waits for the page, not a limit on it: a loaded machine is slow.
WAIT_MS = 60_000
expect.set_options(timeout=WAIT_MS)


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, tiny_clap_dir: Path, tiny_clap: object
) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("page"), tiny_clap_dir, tiny_clap) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        yield launched
        launched.close()


class Console:
    """Errors the page wrote to the console, less those a test says it expects."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.expected: list[str] = []

    def record(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(message.text)

    def unexpected(self) -> list[str]:
        return [e for e in self.errors if not any(re.search(p, e) for p in self.expected)]


@pytest.fixture
def console() -> Console:
    return Console()


@pytest.fixture
def page(
    browser: Browser, server: Server, console: Console, request: pytest.FixtureRequest,
    tmp_path: Path,
) -> Iterator[Page]:  # fmt: skip
    context = browser.new_context(base_url=server.url, viewport={"width": 1100, "height": 900})
    opened = context.new_page()
    opened.set_default_timeout(WAIT_MS)
    opened.on("console", console.record)
    opened.on("pageerror", lambda error: console.errors.append(f"page error: {error}"))
    yield opened
    failed = getattr(request.node, "report_call", None)
    if failed is not None and failed.failed:
        shot = tmp_path / "failure.png"
        opened.screenshot(path=str(shot), full_page=True)
        print(f"screenshot of the failed page: {shot}")
    context.close()
    assert console.unexpected() == [], "the page wrote errors to the console"


def shot(page: Page, name: str) -> None:
    folder = os.environ.get("FOLEY_PAGE_SHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"))


def search(page: Page, query: str) -> None:
    page.fill("#q", query)
    page.press("#q", "Enter")
    expect(page.locator("#status")).to_contain_text("sounds")


def audio_state(page: Page, row: int) -> dict[str, float | bool]:
    return page.eval_on_selector_all(
        ".hit audio",
        "(all, i) => ({paused: all[i].paused, time: all[i].currentTime})",
        row,
    )


def wait_playing(page: Page, row: int, past_s: float = 0.3) -> None:
    page.wait_for_function(
        "([i, t]) => { const a = document.querySelectorAll('#results .hit audio')[i];"
        " return !a.paused && a.currentTime > t; }",
        arg=[row, past_s],
    )


def test_search_shows_rows_with_pictures_and_loads_no_audio(page: Page, server: Server) -> None:
    audio_requests: list[str] = []
    page.on("request", lambda r: "/audio" in r.url and audio_requests.append(r.url))
    weights: dict[str, int] = {}
    page_files = (server.url, *(f"{server.url}/static/app.{ext}" for ext in ("js", "css")))

    def weigh(response: Response) -> None:
        if response.url.rstrip("/") in page_files:
            weights[response.url] = len(response.body())

    page.on("response", weigh)
    page.goto("/")
    search(page, "a short bright tone")
    rows = page.locator("#results .hit")
    expect(rows).to_have_count(ROWS)
    expect(page.locator("#status")).to_have_text("20 sounds for “a short bright tone”.")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#results .hit img')].slice(0, 6)"
        ".every(img => img.complete && img.naturalWidth === 195 && img.naturalHeight === 101)"
    )
    first = rows.first
    expect(first.locator(".title")).to_have_text(re.compile(r"clip \d\d"))
    expect(first.locator(".meta")).to_contain_text("0:03")
    expect(first.locator(".meta")).to_contain_text("library")
    expect(first.locator(".tags .chip")).to_have_count(1)
    expect(first.locator("img")).to_have_attribute("alt", re.compile("^waveform of clip"))
    expect(first.locator(".download")).to_have_attribute(
        "href", re.compile(r"/api/sounds/\d+/audio")
    )
    assert audio_requests == [], "audio was fetched before anything was played"
    shot(page, "list-view")

    timings = page.evaluate("window.foleyTimings")
    total = sum(weights.values())
    print(f"page weight {total} bytes {weights}; API answer to rows on screen {timings} ms")
    assert len(weights) == 3 and total < PAGE_BYTES_LIMIT


def test_one_sound_plays_at_a_time_with_a_moving_line(page: Page) -> None:
    page.goto("/?q=noise")
    rows = page.locator("#results .hit")
    expect(rows).to_have_count(ROWS)
    rows.nth(0).locator(".play").click()
    wait_playing(page, 0)
    expect(rows.nth(0)).to_have_class(re.compile("playing"))
    expect(rows.nth(0).locator(".play")).to_have_attribute("aria-label", re.compile("^Pause"))
    line = rows.nth(0).locator(".progress")
    assert float(line.evaluate("l => parseFloat(l.style.left)")) > 0

    rows.nth(1).locator(".play").click()
    wait_playing(page, 1)
    assert audio_state(page, 0)["paused"] is True
    before = audio_state(page, 1)["time"]
    wait_playing(page, 1, past_s=float(before) + 0.3)  # currentTime advances

    box = rows.nth(2).locator(".picture").bounding_box()
    assert box is not None
    page.mouse.click(box["x"] + box["width"] * 0.75, box["y"] + box["height"] / 2)
    page.wait_for_function(  # clicked at 3/4 of a 3 s clip
        "() => document.querySelectorAll('#results .hit audio')[2].currentTime > 2.0"
    )
    assert audio_state(page, 1)["paused"] is True


def test_filters_change_the_url_and_survive_a_reload(page: Page) -> None:
    page.goto("/")
    search(page, "beep")
    page.fill("#tag", "tones")
    page.press("#tag", "Enter")
    page.fill("#min", "1")
    page.press("#min", "Enter")
    expect(page).to_have_url(re.compile(r"q=beep.*min=1.*tag=tones"))
    expect(page.locator("#chips .chip")).to_have_text(["≥ 1 s", "tag: tones"])
    rows = page.locator("#results .hit")
    expect(rows).to_have_count(10)  # ten clips in the Tones folder
    expect(rows.locator(".tags .chip")).to_have_text(["tones"] * 10)

    page.reload()
    expect(page.locator("#q")).to_have_value("beep")
    expect(page.locator("#min")).to_have_value("1")
    expect(page.locator("#chips .chip")).to_have_count(2)
    expect(rows).to_have_count(10)

    page.get_by_role("button", name="Remove filter tag: tones").click()
    expect(page).not_to_have_url(re.compile("tag="))
    expect(rows).to_have_count(ROWS)
    page.get_by_role("button", name="More results").click()
    expect(rows).to_have_count(30)
    expect(page.get_by_role("button", name="More results")).to_be_hidden()

    page.fill("#min", "")
    page.fill("#max", "0.5")
    page.press("#max", "Enter")
    expect(rows).to_have_count(0)
    expect(page.locator("#status")).to_contain_text("Remove a filter")
    page.go_back()
    expect(page).not_to_have_url(re.compile("max="))
    expect(rows).to_have_count(ROWS)


def test_errors_from_the_api_are_said_in_words(page: Page, console: Console) -> None:
    console.expected.append("status of 422")
    page.goto("/?q=rain&min=5&max=1")
    expect(page.locator("#error")).to_have_text(
        "Foley could not use that: min_duration is greater than max_duration"
    )
    expect(page.locator("#results .hit")).to_have_count(0)


def test_search_by_example_file_drop_and_find_similar(page: Page, server: Server) -> None:
    clip = server.library / "Impacts" / "clip_07.flac"
    page.goto("/")
    page.set_input_files("#example-file", str(clip))
    rows = page.locator("#results .hit")
    expect(rows).to_have_count(ROWS)
    expect(rows.first.locator(".title")).to_have_text("clip 07")
    expect(page.locator("#chips .chip")).to_have_text(["like clip_07.flac"])

    audio_url = rows.first.locator(".download").get_attribute("href")
    page.goto("/")
    page.evaluate(DROP, {"selector": "#example", "url": audio_url})
    expect(rows.first.locator(".title")).to_have_text("clip 07")
    expect(page.locator("#status")).to_contain_text("like dropped.flac")

    like_id = rows.first.get_attribute("data-id")
    rows.first.get_by_role("button", name="Find sounds similar to clip 07").click()
    expect(page).to_have_url(re.compile(rf"like={like_id}"))
    expect(page.locator("#status")).to_have_text(f"20 sounds like sound {like_id}.")
    expect(rows).to_have_count(ROWS)
    assert like_id not in rows.evaluate_all("all => all.map(r => r.dataset.id)")


DROP = """async ({selector, url}) => {
  const bytes = await (await fetch(url)).blob();
  const transfer = new DataTransfer();
  transfer.items.add(new File([bytes], "dropped.flac", {type: "audio/flac"}));
  const zone = document.querySelector(selector);
  for (const type of ["dragover", "drop"])
    zone.dispatchEvent(
      new DragEvent(type, {dataTransfer: transfer, bubbles: true, cancelable: true}));
}"""


def wav_bytes(kind: int) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, tone(kind, 2.0), SAMPLE_RATE, format="WAV")
    return buffer.getvalue()


def test_upload_is_followed_until_its_row_appears(
    page: Page, console: Console, tmp_path: Path
) -> None:
    console.expected.append("status of 401")
    good, bad = tmp_path / "bell in hall.wav", tmp_path / "notes.wav"
    good.write_bytes(wav_bytes(41))
    bad.write_bytes(b"these are notes, not audio " * 40)
    page.goto("/")
    page.set_input_files("#files", str(good))
    first = page.locator("#uploads .upload").first
    expect(first.locator(".why")).to_have_text(
        "This needs an API key: enter it under “Add sounds”."
    )
    expect(page.locator("#key")).to_be_focused()

    page.fill("#key", API_KEY)
    page.reload()  # the key is kept in the browser
    expect(page.locator("#key")).to_have_value(API_KEY)
    page.set_input_files("#files", [str(good), str(bad)])
    items = page.locator("#uploads .upload")
    expect(items).to_have_count(2)
    done = items.filter(has_text="bell in hall.wav").first
    expect(done).to_have_attribute("data-status", "succeeded", timeout=60_000)
    new_row = done.locator(".hit")
    expect(new_row.locator(".title")).to_have_text("bell in hall")
    expect(new_row.locator(".meta")).to_contain_text("upload")
    failed = items.filter(has_text="notes.wav")
    expect(failed).to_have_attribute("data-status", "failed")
    expect(failed.locator(".why")).to_contain_text("notes.wav")
    new_row.locator(".play").click()
    page.wait_for_function(
        "() => { const a = document.querySelector('#uploads .hit audio');"
        " return !a.paused && a.currentTime > 0.2; }"
    )
    search(page, "bell")
    page.select_option("#source", "upload")
    expect(page.locator("#results .hit .title")).to_have_text(["bell in hall"])


def test_generate_when_the_api_says_missing(page: Page, server: Server) -> None:
    """Generation does not exist yet: the search answer is extended as the API will answer
    (`missing: true` and a job), and the job is a real upload job standing in for it."""
    upload = httpx.post(
        f"{server.url}/api/uploads",
        files={"files": ("made.wav", wav_bytes(43))},
        headers={"X-API-Key": API_KEY},
    )
    job = upload.json()["data"][0]

    def missing(route) -> None:  # noqa: ANN001 - Playwright's Route
        body = route.fetch().json() | {"missing": True, "job": job}
        route.fulfill(status=200, content_type="application/json", body=json.dumps(body))

    page.route(re.compile(r"/api/search\?"), missing)
    page.goto("/?q=a+glass+harmonica")
    box = page.locator("#missing")
    expect(box).to_contain_text("Nothing in the library is close enough")
    expect(page.locator("#results .hit")).to_have_count(ROWS)
    box.get_by_role("button", name="Generate it").click()
    made = box.locator(".hit")
    expect(made.locator(".badge")).to_have_text("generated", timeout=60_000)
    made.locator(".play").click()
    page.wait_for_function(
        "() => { const a = document.querySelector('#missing .hit audio');"
        " return !a.paused && a.currentTime > 0.2; }"
    )


def test_keyboard_reaches_every_control_and_plays(page: Page) -> None:
    page.goto("/?q=tone&tag=impacts")
    rows = page.locator("#results .hit")
    expect(rows).to_have_count(10)
    reached = set()
    for _ in range(100):
        page.keyboard.press("Tab")
        reached.add(page.evaluate(FOCUSED))
    for control in (
        "q", "mode", "Search", "example-file", "min", "max", "source", "tag", "apply",
        "Remove filter tag: impacts", "Waveform", "Spectrogram", "hit", "Play clip",
        "Only sounds tagged impacts", "Download clip", "Find sounds similar", "Details", "key",
        "forget", "files",
    ):  # fmt: skip
        assert any(name.startswith(control) for name in reached), (control, sorted(reached))

    rows.first.focus()
    page.keyboard.press("Space")
    wait_playing(page, 0)
    page.keyboard.press("ArrowDown")
    expect(rows.nth(1)).to_be_focused()
    page.keyboard.press("Space")
    wait_playing(page, 1)
    assert audio_state(page, 0)["paused"] is True
    page.keyboard.press("ArrowUp")
    expect(rows.nth(0)).to_be_focused()
    page.keyboard.press("Escape")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#results audio')].every(a => a.paused)"
    )
    assert audio_state(page, 1)["time"] == 0


FOCUSED = """() => {
  const e = document.activeElement;
  if (e.classList.contains("hit")) return "hit";
  return e.id || e.getAttribute("aria-label") || e.textContent.trim();
}"""


def test_detail_and_spectrogram_view(page: Page) -> None:
    page.goto("/?q=chirp&view=spectrogram")
    rows = page.locator("#results .hit")
    expect(rows).to_have_count(ROWS)
    expect(rows.first.locator("img")).to_have_attribute("src", re.compile("spectrogram.png$"))
    page.get_by_role("button", name="Waveform").click()
    expect(page).not_to_have_url(re.compile("view="))
    expect(rows.first.locator("img")).to_have_attribute("src", re.compile("waveform.png$"))
    page.get_by_role("button", name="Spectrogram").click()
    expect(page).to_have_url(re.compile("view=spectrogram"))

    rows.first.get_by_role("button", name="Details").click()
    detail = rows.first.locator(".detail")
    expect(detail.locator("img")).to_have_count(2)
    expect(detail).to_contain_text("16000 Hz, 1 channel")
    page.wait_for_function(
        "() => [...document.querySelectorAll('.detail img')]"
        ".every(img => img.complete && img.naturalWidth === 780)"
    )
    detail.locator(".picture").nth(1).click()
    wait_playing(page, 0)
    shot(page, "detail-spectrogram")


def test_cancel_a_queued_upload(page: Page, server: Server, tmp_path: Path) -> None:
    """The one worker is busy scanning a big folder, so the upload waits in the queue."""
    bulk = tmp_path / "bulk"
    write_library(bulk, count=150, seconds=3.0)
    key = {"X-API-Key": API_KEY}
    library = httpx.post(f"{server.url}/api/libraries", json={"path": str(bulk)}, headers=key)
    scan = httpx.post(f"{server.url}/api/libraries/{library.json()['id']}/scan", headers=key)
    assert scan.status_code == 202, scan.text
    wav = tmp_path / "late.wav"
    wav.write_bytes(wav_bytes(44))
    page.goto("/")
    page.fill("#key", API_KEY)
    page.set_input_files("#files", str(wav))
    item = page.locator("#uploads .upload").first
    expect(item).to_have_attribute("data-status", "queued")
    shot(page, "upload-in-progress")
    item.get_by_role("button", name="Cancel late.wav").click()
    expect(item).to_have_attribute("data-status", "cancelled")
    expect(item.locator(".state")).to_have_text("cancelled")
    expect(item.get_by_role("button", name="Cancel late.wav")).to_be_hidden()
    job = httpx.get(f"{server.url}{item.evaluate('i => i.job.url')}").json()
    assert job["status"] == "cancelled"
