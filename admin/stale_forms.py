"""Forms that arrive too late: keep what was typed and offer to send it again.

A page left open for a shift outlives its CSRF token (``WTF_CSRF_TIME_LIMIT``,
an hour) and perhaps its session. Its POST is refused either way, but the text
in it must not be lost: ``errors.py`` answers a stale token with the
"Submit again" page rendered here, and ``auth.py`` carries the fields of a POST
that found no session through the login form to the same page.

The page re-posts the fields with a fresh token only after the user presses its
button, and only for a POST that came from this site (its ``Origin`` or
``Referer``): else a page elsewhere could post to us and have the user
"resubmit" what it chose. Passwords are never written back into a page, and
files cannot be (a browser lets no page fill in a file input).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flask import g, render_template, request, url_for
from werkzeug.datastructures import FileStorage, MultiDict

#: posted fields never shown nor re-posted: the stale token, and secrets
NOT_KEPT = ("csrf_token",)


def is_secret(name: str) -> bool:
    return "password" in name.lower()


def kept_fields(form: MultiDict[str, str]) -> list[tuple[str, str]]:
    """Every posted field in order (a name may repeat), less the token and passwords."""
    return [
        (name, value)
        for name, value in form.items(multi=True)
        if name not in NOT_KEPT and not is_secret(name)
    ]


def secret_fields(form: MultiDict[str, str]) -> list[str]:
    return sorted({name for name in form if is_secret(name) and form.get(name)})


def dropped_files(files: MultiDict[str, FileStorage]) -> list[str]:
    """The file inputs that held a file: what the user must choose again."""
    return sorted({name for name, upload in files.items(multi=True) if upload.filename})


def same_origin() -> bool:
    """Whether the request came from a page of this site (browsers send ``Origin``
    with every POST; ``Referer`` where an older one does not)."""
    origin = request.headers.get("Origin") or request.headers.get("Referer")
    if not origin:
        return False
    here = urlsplit(request.host_url)
    there = urlsplit(origin)
    return (there.scheme, there.netloc) == (here.scheme, here.netloc)


def local_path(address: str | None) -> str | None:
    """``address`` as a path of this site, or None if it is another site's."""
    if not address:
        return None
    parts = urlsplit(address)
    if parts.netloc and parts.netloc != urlsplit(request.host_url).netloc:
        return None
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    return path if path.startswith("/") and not path.startswith("//") else None


def render_resubmit(
    *,
    target: str,
    fields: list[tuple[str, str]],
    files: list[str],
    secrets: list[str],
    back: str | None,
    offer: bool,
    heading: str,
    explanation: str,
    reason: str = "",
    status: int = 200,
) -> Any:
    """The "Submit again" page: what was sent, and a form that sends it to ``target``
    with a fresh CSRF token."""
    # A token made earlier in this request belongs to a session that may since have
    # been replaced (logging in starts a fresh one): make the form's token anew.
    g.pop("csrf_token", None)
    page = render_template(
        "stale_form.html",
        target=target,
        fields=fields,
        files=files,
        secrets=secrets,
        back=back or url_for("inspections.queue"),
        offer=offer,
        heading=heading,
        explanation=explanation,
        reason=reason,
    )
    return page, status


def stale_token_page(reason: str) -> Any:
    """The answer to a form whose CSRF token was refused (status 400)."""
    target = request.full_path.rstrip("?")
    return render_resubmit(
        target=target,
        fields=kept_fields(request.form),
        files=dropped_files(request.files),
        secrets=secret_fields(request.form),
        back=local_path(request.referrer),
        offer=same_origin(),
        heading="The form had expired",
        explanation=(
            "The page was open longer than its form stays valid, so nothing was saved. "
            "What you sent is below; press Submit again to send it now."
        ),
        reason=reason,
        status=400,
    )
