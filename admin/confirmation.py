"""Asking before a change that is hard to take back (deactivating a reference or a
label, revoking a token, deactivating a user, saving a threshold).

The page asks first: a form (or its button) with ``data-confirm="message"`` is sent
only after ``window.confirm`` (``static/confirm.js``), with ``confirmed=1`` added.
The server asks too, so that a client without the script must confirm as well: a
request without ``confirmed=1`` changes nothing and gets a page that says what
would change, with a "Yes, do it" button that sends the same form again, confirmed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from flask import render_template, request

from admin.stale_forms import dropped_files, kept_fields, secret_fields

CONFIRMED = "confirmed"


@dataclass(frozen=True)
class Pick:
    """One choice the confirmation page asks for: radio buttons named ``name``,
    each a (value, text), the first chosen."""

    name: str
    options: Sequence[tuple[str, str]]


@dataclass(frozen=True)
class Question:
    title: str
    changes: Sequence[str]  # what will change, one line each
    back: str  # where "Cancel" goes
    yes: str = "Yes, do it"
    pick: Pick | None = None
    # fields posted again in place of the request's (the request's name -> value)
    replace: dict[str, str] = field(default_factory=dict)


def confirmed() -> bool:
    return request.form.get(CONFIRMED) == "1"


def ask(question: Question) -> Any:
    """The confirmation page for this POST: its fields, sent again with
    ``confirmed=1`` when the user presses the button (status 200: nothing was wrong
    with the request; it waits for a yes)."""
    leave = {CONFIRMED, *question.replace, *((question.pick.name,) if question.pick else ())}
    fields = [(name, value) for name, value in kept_fields(request.form) if name not in leave]
    fields += [*question.replace.items(), (CONFIRMED, "1")]
    return render_template(
        "confirm.html",
        question=question,
        target=request.full_path.rstrip("?"),
        fields=fields,
        files=dropped_files(request.files),
        secrets=secret_fields(request.form),
    )
