"""The labels people choose from (the ``labels`` table): the active ones fill the
queue's filter, the relabel lists and the reference forms; a new label is an
explicit choice, and one that looks like a label that exists ("Scratch" beside
"scratches") is refused until the admin confirms it is meant.

A form that chooses a label sends ``label`` (a label of the list, or ``NEW_LABEL``
for "new label…"), and for a new one ``new_label``, ``create_label=1`` (the box
"create the new label") and, once warned, ``confirm_similar`` with the new name.
``templates/_labels.html`` draws that choice; ``static/labels.js`` shows the
warning while the name is typed.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.references import ensure_label
from core.tables import UNKNOWN_LABEL, Label, check_name

__all__ = [
    "NEW_LABEL",
    "SimilarLabel",
    "active_labels",
    "chosen_label",
    "ensure_label",
    "filter_labels",
    "near_duplicates",
    "set_label_active",
]

#: the value of the "new label…" choice (a label of its own would be chosen by name)
NEW_LABEL = "+new"
#: labels at least this alike (difflib's ratio of their normal forms) are near-
#: duplicates: "crazing" and "crazng" (0.92) are; "patches" and "scratches" (0.67) not
SIMILARITY = 0.85
_SEPARATORS = re.compile(r"[\s_\-]+")


def active_labels(db: Session) -> list[str]:
    """The labels to choose from, by name."""
    return list(db.scalars(select(Label.name).where(Label.active.is_(True)).order_by(Label.name)))


def filter_labels(db: Session) -> list[str]:
    """The queue's label filter and the relabel list: the active labels, and the
    line's name for a defect no reference matches (not a label anyone creates)."""
    return sorted({*active_labels(db), UNKNOWN_LABEL})


def normal_form(name: str) -> str:
    """``name`` as compared for near-duplicates: case, separators (space, ``_``,
    ``-``) and a plural ending do not count."""
    key = _SEPARATORS.sub(" ", name.casefold()).strip()
    if key.endswith(("ches", "shes", "sses", "xes", "zes")):
        return key[:-2]
    if key.endswith("ies") and len(key) > 4:
        return key[:-3] + "y"
    if key.endswith("s") and not key.endswith("ss"):
        return key[:-1]
    return key


def near_duplicates(name: str, existing: Iterable[str]) -> list[str]:
    """The labels of ``existing`` that ``name`` looks like (other than itself), the
    most alike first: the same up to case, separators and plural, or a small edit
    apart."""
    key = normal_form(name)
    alike = []
    for other in existing:
        if other == name:
            continue
        ratio = difflib.SequenceMatcher(None, key, normal_form(other)).ratio()
        if ratio >= SIMILARITY:
            alike.append((ratio, other))
    return [other for _, other in sorted(alike, key=lambda pair: (-pair[0], pair[1]))]


class SimilarLabel(ValueError):
    """A new label looks like labels that exist; the admin must confirm it."""

    def __init__(self, name: str, similar: list[str]) -> None:
        self.name, self.similar = name, similar
        names = ", ".join(f"'{s}'" for s in similar)
        super().__init__(
            f"'{name}' looks like the existing label{'s' if len(similar) > 1 else ''} {names}: "
            f"choose {'one' if len(similar) > 1 else 'it'} from the list, or confirm that "
            f"'{name}' is a new label"
        )


def existing_label(db: Session, name: str) -> str:
    """``name`` when it is an active label; a ``ValueError`` saying what to do else."""
    label = db.get(Label, name)
    if label is None:
        raise ValueError(
            f"'{name}' is not a label; choose one from the list, or 'new label…' to create it"
        )
    if not label.active:
        raise ValueError(
            f"the label '{name}' is deactivated; an admin can reactivate it in the Labels "
            "section of the References page"
        )
    return name


def chosen_label(db: Session, form: Mapping[str, str], user: str, needs: str = "the form") -> str:
    """The label ``form`` chose: an active label of the list, or a new one the admin
    asked for explicitly, which is added to the list (not committed). A
    ``ValueError`` says what is missing; ``SimilarLabel`` when a new label looks like
    one that exists and the admin has not confirmed it. ``needs`` names what the
    label is for in the message about an empty choice."""
    choice = (form.get("label") or "").strip()
    if choice != NEW_LABEL:
        if not choice:
            raise ValueError(
                f"{needs} needs a label: choose one from the list, or 'new label…' to create one"
            )
        return existing_label(db, choice)
    name = check_name(form.get("new_label") or "", "the new label")
    if db.get(Label, name) is not None:
        return existing_label(db, name)  # typed a label that exists: that one
    if form.get("create_label") != "1":
        raise ValueError(
            f"'{name}' is not a label yet: tick 'create the new label' to add it, or choose "
            "one from the list"
        )
    similar = near_duplicates(name, db.scalars(select(Label.name)))
    if similar and form.get("confirm_similar") != name:
        raise SimilarLabel(name, similar)
    ensure_label(db, name, user)
    return name


def set_label_active(db: Session, name: str, active: bool) -> Label:
    """(De)activate a label (not committed). Rows that carry it keep it; a
    deactivated label only leaves the lists people choose from."""
    label = db.get(Label, name)
    if label is None:
        raise ValueError(f"there is no label '{name}'")
    label.active = active
    return label
