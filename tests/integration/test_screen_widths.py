"""Every page of the supervisors' site at a phone's, a tablet's (both ways round) and
a desktop's width (#29), in a real Chromium against a real admin server: nothing
scrolls sideways, every control is a touch target of at least 44 px, the collapsed
menu opens and is readable, and a tablet shows the review actions without scrolling.

Screenshots of each page at each width go to $SCREENSHOT_DIR as ``<page>-<width>.png``
(``make screenshots`` sets it to docs/screenshots).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.db import session_scope
from core.tables import DeadLetter, Inspection
from tests.conftest import SAMPLE
from tests.integration.browser import admin_server, log_in
from tests.integration.conftest import add_inspections, make_token
from tests.integration.test_browser_frames import add_frame
from tests.integration.test_camera_thresholds import add_good_frame

#: width -> height: a phone, a tablet upright and lying, a desktop
VIEWPORTS = {390: 844, 768: 1024, 1024: 768, 1920: 1080}
#: the smallest touch target (WCAG 2.5.5, Apple's and Google's guidelines)
TOUCH = 44

#: every visible control, with a name to find it by; a checkbox or radio is
#: measured by itself: the site draws it with a 44 px hit area
OFFENDERS_JS = """
min => {
  const visible = el => {
    const box = el.getBoundingClientRect(), style = getComputedStyle(el);
    return box.width > 1 && box.height > 1 && style.visibility !== 'hidden';
  };
  const name = el => {
    let text = el.tagName.toLowerCase();
    if (el.id) text += '#' + el.id;
    if (typeof el.className === 'string' && el.className.trim())
      text += '.' + el.className.trim().split(/\\s+/).join('.');
    if (el.getAttribute('name')) text += `[name=${el.getAttribute('name')}]`;
    if (el.type && el.tagName === 'INPUT') text += `[type=${el.type}]`;
    const words = (el.tagName === 'SELECT' ? el.selectedOptions[0]?.text
                   : el.innerText || el.value || el.getAttribute('aria-label') || '').trim();
    return `${text} "${words.slice(0, 30)}"`;
  };
  const controls = 'button, .button, select, textarea, input:not([type=hidden]), nav a';
  return [...document.querySelectorAll(controls)]
    .filter(visible)
    .map(el => [name(el), el.getBoundingClientRect().height])
    .filter(([, height]) => height < min)
    .map(([text, height]) => `${text} is ${Math.round(height)} px high`);
}
"""

#: the contrast of each visible menu link against the background it is drawn on
CONTRAST_JS = """
() => {
  const rgb = text => text.match(/[\\d.]+/g).map(Number);
  const luminance = ([r, g, b]) => {
    const c = [r, g, b].map(v => v / 255)
      .map(v => v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4);
    return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
  };
  const background = el => {
    for (; el; el = el.parentElement) {
      const color = rgb(getComputedStyle(el).backgroundColor);
      if (color.length < 4 || color[3] > 0) return color;
    }
    return [255, 255, 255];
  };
  return [...document.querySelectorAll('header nav a')]
    .filter(a => a.getBoundingClientRect().height > 0)
    .map(a => {
      const [fg, bg] = [luminance(rgb(getComputedStyle(a).color)), luminance(background(a))];
      return [a.innerText.trim(), (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05)];
    });
}
"""


@dataclass
class WidthSite:
    url: str
    image_id: int  # a flagged inspection judged whole
    frame_id: int  # a flagged frame with two findings


@pytest.fixture
def width_site(app, settings, tmp_path) -> Iterator[WidthSite]:
    """The admin server over the ``app`` fixture's references and users, 30 flagged
    inspections, a frame with findings, a camera with a good frame (the widest table),
    an API token and a dead letter."""
    ids = add_inspections(settings, 30)
    frame = add_frame(settings)
    add_good_frame(settings, "line-9")
    make_token(app, "mes-line-3", "submit", "read")
    with session_scope(settings.database_url) as session:
        session.add(
            DeadLetter(
                reason="body is not JSON",
                task="inspect",
                task_id="f" * 64,  # long words must wrap, not widen the page
                headers={"lang": "py", "origin": "gen4711@plc-line-3.plant.example.com"},
                body="x" * 300,
                body_bytes=4096,
            )
        )
    with admin_server(settings, tmp_path / "admin.log") as url:
        yield WidthSite(url, ids[-1], frame.id)


def compare_two(page, url: str) -> None:
    """Compare a scratches image with a patches image: the page with a result."""
    if not page.goto(f"{url}/compare").ok:
        return  # failed_page has noted it
    page.set_input_files("input[name=first]", str(sorted((SAMPLE / "scratches").glob("*"))[0]))
    page.set_input_files("input[name=second]", str(sorted((SAMPLE / "patches").glob("*"))[0]))
    page.click("#detect")
    page.wait_for_selector("#dissimilarity")


def stale_review(page, site: WidthSite) -> None:
    """A review posted with an expired form token: the friendly page that keeps what
    was typed (posted as a plain form, as a browser without the page's script does)."""
    page.goto(f"{site.url}/inspections/{site.image_id}")
    with page.expect_navigation():
        page.evaluate(
            """() => {
                 const form = document.createElement('form');
                 form.method = 'post';
                 form.action = document.getElementById('review-form').getAttribute('action');
                 for (const [name, value] of [['csrf_token', 'expired'], ['action', 'comment'],
                     ['comment', 'Scale pattern along the edge; checked with the shift lead.']]) {
                   const input = document.createElement('input');
                   input.type = 'hidden'; input.name = name; input.value = value;
                   form.appendChild(input);
                 }
                 document.body.appendChild(form);
                 form.submit();
               }"""
        )
    page.wait_for_selector("#submit-again")


def pages(site: WidthSite) -> dict[str, Callable]:
    """Each page (but the login page) by its screenshot name: how to open it."""

    def opener(path: str) -> Callable:
        return lambda page: page.goto(f"{site.url}{path}")

    return {
        "queue": opener("/inspections"),
        "gallery": opener("/inspections?view=gallery"),
        "detail": opener(f"/inspections/{site.image_id}"),
        "frame-detail": opener(f"/inspections/{site.frame_id}"),
        "references": opener("/references/"),
        "compare": lambda page: compare_two(page, site.url),
        "dashboard": opener("/dashboard"),
        "thresholds": opener("/thresholds/"),
        "users": opener("/users/"),
        "dead-letters": opener("/dead-letters"),
        "stale-form": lambda page: stale_review(page, site),
    }


def page_problems(page, name: str, width: int, screenshots: Path) -> list[str]:
    """What is wrong with the page shown: sideways scrolling, small touch targets."""
    page.wait_for_load_state("load")
    # the first screen, as a user sees it on arriving: what fits without scrolling
    page.screenshot(path=str(screenshots / f"{name}-{width}.png"))
    problems = []
    scroll_width, inner_width = page.evaluate(
        "[document.documentElement.scrollWidth, window.innerWidth]"
    )
    if scroll_width > inner_width:
        wide = page.evaluate(
            """w => [...document.querySelectorAll('main *, header *')]
                 .filter(e => e.getBoundingClientRect().right > w + 0.5)
                 .slice(0, 4).map(e => e.tagName.toLowerCase() + (e.className &&
                   typeof e.className === 'string' ? '.' + e.className.split(' ')[0] : ''))""",
            inner_width,
        )
        problems.append(f"scrolls sideways: {scroll_width} px wide at {inner_width} ({wide})")
    problems += page.evaluate(OFFENDERS_JS, TOUCH)
    return [f"{name} at {width}: {problem}" for problem in problems]


def menu_problems(page, width: int, screenshots: Path) -> list[str]:
    """The menu's links are readable (contrast 4.5:1) at every width; where the menu is
    collapsed behind its button, the button (or Space on it) opens it, and each link
    then shows as a touch target within the width."""
    button = page.locator("header .menu-button")
    links = page.locator("header nav a")
    if button.is_visible():
        if links.first.is_visible():
            return [f"menu at {width}: the links show before the menu button is pressed"]
        page.focus("header input.menu-toggle")
        page.keyboard.press("Space")
        if not links.first.is_visible():
            return [f"menu at {width}: Space on the menu button does not open it"]
        page.keyboard.press("Space")
        button.click()
        page.screenshot(path=str(screenshots / f"menu-{width}.png"))
    problems = [
        f"menu at {width}: link {text!r} has a contrast of {ratio:.1f}:1"
        for text, ratio in page.evaluate(CONTRAST_JS)
        if ratio < 4.5
    ]
    for link in links.all():
        box = link.bounding_box()
        if not link.is_visible() or box is None:
            problems.append(f"menu at {width}: {link.inner_text()!r} hidden")
        elif box["height"] < TOUCH or box["x"] < 0 or box["x"] + box["width"] > width:
            problems.append(f"menu at {width}: {link.inner_text()!r} at {box}")
    if button.is_visible():
        problems += [f"menu at {width} (open): {p}" for p in page.evaluate(OFFENDERS_JS, TOUCH)]
        button.click()
        if links.first.is_visible():
            problems.append(f"menu at {width}: the button does not close it")
    return problems


def review_problems(page, name: str) -> list[str]:
    """On a tablet (1024x768) Confirm is on the first screen."""
    bottom = page.evaluate(
        """() => { const b = document.querySelector('#confirm');
                   return b && b.getBoundingClientRect().bottom + window.scrollY; }"""
    )
    if bottom is None:
        return [f"{name} at 1024: no #confirm button"]
    if bottom > VIEWPORTS[1024]:
        return [f"{name} at 1024: #confirm ends {bottom:.0f} px down, below the 768 px screen"]
    return []


def failed_page(response, width: int, problems: list[str]) -> None:
    """A page that failed would pass every check on an error page: it is a problem
    (but the stale-form page, a 400 by design)."""
    stale = response.request.method == "POST" and response.status == 400
    if response.request.resource_type == "document" and response.status >= 400 and not stale:
        problems.append(f"{response.url} at {width}: HTTP {response.status}")


def test_every_page_fits_every_screen(width_site, page, screenshots):
    browser = page.context.browser
    problems: list[str] = []
    for width, height in VIEWPORTS.items():
        context = browser.new_context(viewport={"width": width, "height": height})
        try:
            tab = context.new_page()
            tab.on("response", lambda r, w=width: failed_page(r, w, problems))
            tab.goto(f"{width_site.url}/login")
            tab.fill("input[name=username]", "ada")
            problems.extend(page_problems(tab, "login", width, screenshots))
            log_in(tab, width_site.url, "ada", "admin-password")
            problems.extend(menu_problems(tab, width, screenshots))
            for name, open_page in pages(width_site).items():
                open_page(tab)
                problems.extend(page_problems(tab, name, width, screenshots))
                if width == 1024 and name in ("detail", "frame-detail"):
                    problems.extend(review_problems(tab, name))
        finally:
            context.close()
    assert not problems, "\n".join(problems)


def review_state(settings, inspection_id: int) -> str:
    with session_scope(settings.database_url) as session:
        return session.get(Inspection, inspection_id).review_state


def in_first_screen(page, selector: str) -> bool:
    box = page.locator(selector).bounding_box()
    return (
        box is not None
        and box["y"] >= 0
        and box["y"] + box["height"] <= page.viewport_size["height"]
    )


def test_review_viewer_and_compare_work_at_every_width(width_site, page, settings):
    """What a supervisor does at each width, by touch on the phone and the tablet (taps,
    no keys): review an image in place and undo it, zoom the viewer, confirm a queue
    selection without a reload, and see Compare's verdict on the first screen."""
    browser = page.context.browser
    for n, (width, height) in enumerate(VIEWPORTS.items()):
        touch = width < 1920
        context = browser.new_context(viewport={"width": width, "height": height}, has_touch=touch)
        try:
            tab = context.new_page()
            log_in(tab, width_site.url, "ada", "admin-password")
            press = tab.tap if touch else tab.click

            # the detail page: Confirm goes on to the next pending image, Undo comes along
            target = width_site.image_id - 2 * n
            tab.goto(f"{width_site.url}/inspections/{target}")
            image = tab.locator("#frame-image")
            before = image.bounding_box()["width"]
            press("#zoom-in")
            tab.wait_for_function(
                "w => document.getElementById('frame-image').offsetWidth > w * 1.1",
                arg=before,
            )
            press("#confirm")
            tab.wait_for_url(lambda url, t=target: not url.split("?")[0].endswith(f"/{t}"))
            assert review_state(settings, target) == "confirmed", width
            tab.wait_for_selector("#status-undo")
            press("#status-undo")
            tab.wait_for_function(
                "t => location.pathname.endsWith('/' + t)", arg=target, timeout=10_000
            )
            assert review_state(settings, target) == "pending", width

            # the queue: a selection confirmed in place, the page not reloaded
            tab.goto(f"{width_site.url}/inspections")
            tab.evaluate("window.notReloaded = true")
            row = tab.locator("tr.review-item").nth(1)
            chosen = int(row.get_attribute("data-inspection-id"))
            row.locator("input[name=ids]").check()
            press("#bulk-confirm")
            tab.wait_for_function(
                "id => document.querySelector('#row-' + id).dataset.state === 'confirmed'",
                arg=chosen,
            )
            assert tab.evaluate("window.notReloaded") is True, width
            assert review_state(settings, chosen) == "confirmed", width

            # Compare: the verdict on the first screen after a run
            compare_two(tab, width_site.url)
            assert in_first_screen(tab, "#verdict-headline"), width
        finally:
            context.close()
