"""Plant systems' webhooks and the delivery log (admins only).

A webhook is a URL, the events it takes, and a secret its requests are signed
with (``core.push``). The secret is shown once, when it is made (at creation, or
when an admin rotates it); afterwards the site shows only that there is one.
Deactivating, deleting and rotating ask first (``admin.confirmation``).

"Send a test event" writes an event of its own kind, ``test``, already fanned out,
with one delivery to that webhook alone (docs/events.md): a receiver can tell it
from a real result, and no other plant system gets it.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from admin.confirmation import Question, ask, confirmed
from admin.db import get_db, get_or_404
from admin.id_pages import newest_first, page_of
from admin.roles import admin_required
from core.push import (
    check_subscriptions,
    check_webhook_url,
    new_secret,
    retry_now,
    send_test_event,
)
from core.settings import get_settings
from core.tables import DELIVERY_STATES, EVENT_KINDS, Delivery, Event, Webhook

bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")
MAX_NAME_LENGTH = 80


@bp.before_request
@admin_required
def only_admins() -> None:
    """Every page here is an admin's: the URLs and the delivery log are the plant's."""


def render_webhooks_page(
    db: Session,
    new_secret_for: Webhook | None = None,
    secret: str | None = None,
    form: Any = None,
) -> Any:
    """The page; ``form``: a refused form's fields, filled in again."""
    counts: dict[int | None, int] = {
        webhook_id: count
        for webhook_id, count in db.execute(
            select(Delivery.webhook_id, func.count(Delivery.id))
            .where(Delivery.status == "failed")
            .group_by(Delivery.webhook_id)
        )
    }
    return render_template(
        "webhooks.html",
        webhooks=db.scalars(select(Webhook).order_by(Webhook.name, Webhook.id)).all(),
        kinds=EVENT_KINDS,
        failed=counts,
        new_secret_for=new_secret_for,
        secret=secret,
        form=form or {},
    )


@bp.route("/")
def webhooks() -> Any:
    return render_webhooks_page(get_db())


@bp.route("/", methods=["POST"])
def add_webhook() -> Any:
    db = get_db()
    name = request.form.get("name", "").strip()
    try:
        if not name or len(name) > MAX_NAME_LENGTH:
            raise ValueError(f"Give the webhook a name of 1 to {MAX_NAME_LENGTH} characters.")
        url = check_webhook_url(request.form.get("url", ""))
        events = check_subscriptions(request.form.getlist("events"))
    except ValueError as exc:
        flash(str(exc), "error")
        return render_webhooks_page(db, form=request.form), 400
    secret = new_secret()
    hook = Webhook(
        name=name, url=url, secret=secret, events=events, created_by=current_user.username
    )
    db.add(hook)
    db.commit()
    flash(f"Webhook {name} added.", "info")
    return render_webhooks_page(db, new_secret_for=hook, secret=secret)


@bp.route("/<int:webhook_id>/active", methods=["POST"])
def set_active(webhook_id: int) -> Any:
    db = get_db()
    hook = get_or_404(Webhook, webhook_id)
    active = request.form.get("active")
    if active not in ("0", "1"):
        abort(400)
    if hook.active and active == "0" and not confirmed():
        return ask(
            Question(
                title=f"Deactivate the webhook {hook.name}?",
                changes=[
                    f"{hook.url} gets no more events from then on; events meanwhile are "
                    "not kept for it.",
                    "Deliveries to it still pending fail when their turn comes; retry them "
                    "from the delivery log after activating it again.",
                ],
                back=url_for("webhooks.webhooks"),
                yes="Yes, deactivate it",
            )
        )
    hook.active = active == "1"
    db.commit()
    flash(f"Webhook {hook.name} {'activated' if hook.active else 'deactivated'}.", "info")
    return redirect(url_for("webhooks.webhooks"))


@bp.route("/<int:webhook_id>/delete", methods=["POST"])
def delete_webhook(webhook_id: int) -> Any:
    db = get_db()
    hook = get_or_404(Webhook, webhook_id)
    if not confirmed():
        return ask(
            Question(
                title=f"Delete the webhook {hook.name}?",
                changes=[
                    f"{hook.url} gets no more events, and its deliveries leave the log.",
                    "It cannot be restored; deactivate it instead to keep its log.",
                ],
                back=url_for("webhooks.webhooks"),
                yes="Yes, delete it",
            )
        )
    name = hook.name
    db.execute(delete(Delivery).where(Delivery.webhook_id == hook.id))
    db.delete(hook)
    db.commit()
    flash(f"Webhook {name} deleted.", "info")
    return redirect(url_for("webhooks.webhooks"))


@bp.route("/<int:webhook_id>/rotate", methods=["POST"])
def rotate_secret(webhook_id: int) -> Any:
    db = get_db()
    hook = get_or_404(Webhook, webhook_id)
    if not confirmed():
        return ask(
            Question(
                title=f"Make a new secret for {hook.name}?",
                changes=[
                    "Requests are signed with the new secret at once; until the receiver "
                    "has it, it finds every signature wrong.",
                    "The new secret is shown once, on the next page.",
                ],
                back=url_for("webhooks.webhooks"),
                yes="Yes, make a new secret",
            )
        )
    secret = hook.secret = new_secret()
    db.commit()
    flash(f"Webhook {hook.name} has a new secret.", "info")
    return render_webhooks_page(db, new_secret_for=hook, secret=secret)


@bp.route("/<int:webhook_id>/test", methods=["POST"])
def send_test(webhook_id: int) -> Any:
    db = get_db()
    hook = get_or_404(Webhook, webhook_id)
    if not hook.active:
        flash(f"Webhook {hook.name} is inactive; activate it to send it a test event.", "error")
        return redirect(url_for("webhooks.webhooks"))
    delivery = send_test_event(db, hook, get_settings().line_name, current_user.username)
    db.commit()
    flash(
        f"Test event queued for {hook.name} (delivery {delivery.id}); workers send it within "
        "seconds: see its row in the delivery log.",
        "info",
    )
    return redirect(url_for("webhooks.deliveries", webhook=hook.id))


@bp.route("/deliveries")
def deliveries() -> Any:
    db = get_db()
    query = (
        select(Delivery, Event.kind, Event.created_at, Webhook.name)
        .join(Event, Delivery.event_id == Event.id)
        .outerjoin(Webhook, Delivery.webhook_id == Webhook.id)
    )
    status = request.args.get("status", "")
    if status in DELIVERY_STATES:
        query = query.where(Delivery.status == status)
    else:
        status = ""
    webhook = request.args.get("webhook", "")
    if webhook == "mqtt":
        query = query.where(Delivery.target == "mqtt")
    elif webhook.isdigit() and len(webhook) < 10:
        query = query.where(Delivery.webhook_id == int(webhook))
    else:
        webhook = ""
    rows, older = page_of(db.execute(newest_first(query, Delivery.id)).all(), lambda row: row[0].id)
    return render_template(
        "deliveries.html",
        rows=rows,
        older=older,
        status=status,
        webhook=webhook,
        states=DELIVERY_STATES,
        webhooks=db.scalars(select(Webhook).order_by(Webhook.name)).all(),
    )


@bp.route("/deliveries/<int:delivery_id>/retry", methods=["POST"])
def retry(delivery_id: int) -> Any:
    db = get_db()
    get_or_404(Delivery, delivery_id)
    if retry_now(db, delivery_id):
        db.commit()
        flash(f"Delivery {delivery_id} is sent again within seconds.", "info")
    else:
        flash(f"Delivery {delivery_id} was delivered already; nothing to retry.", "error")
    # back to the log as it was filtered (only these two fields: never a URL from the form)
    shown: dict[str, Any] = {
        name: value
        for name in ("status", "webhook")
        if (value := request.form.get(name, "")) and (value.isalnum() and len(value) <= 10)
    }
    return redirect(url_for("webhooks.deliveries", **shown))
