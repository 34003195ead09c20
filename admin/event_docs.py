"""The events pushed to plant systems, in the OpenAPI document: OpenAPI 3.1's
``webhooks`` (requests this system makes to its receivers) with their headers, and
each payload's schema under ``components`` (``core.event_schemas``). The prose is
docs/events.md."""

from __future__ import annotations

from typing import Any

from core.event_schemas import EVENT_MODELS, event_json_schemas

HEADERS = {
    "X-Inspection-Event": "the event's kind",
    "X-Inspection-Delivery": "the delivery's id, the same on every retry: dedupe by it",
    "X-Inspection-Timestamp": "when this try was signed, Unix seconds",
    "X-Inspection-Signature": "sha256= and the hex HMAC-SHA256, keyed with the webhook's "
    "secret, of '<timestamp>.<body>'",
}


def webhook_operation(kind: str, schema_name: str, summary: str) -> dict[str, Any]:
    return {
        "post": {
            "operationId": f"event_{kind.replace('.', '_')}",
            "summary": summary,
            "description": (
                f"POSTed to each active webhook that takes `{kind}` "
                + ("(only from the Webhooks page's test button). " if kind == "test" else ". ")
                + "Delivered at least once; retried with backoff until a 2xx answer. "
                "See docs/events.md."
            ),
            "security": [],  # the receiver checks X-Inspection-Signature instead
            "parameters": [
                {
                    "name": name,
                    "in": "header",
                    "required": True,
                    "description": text,
                    "schema": {"type": "string"},
                }
                for name, text in HEADERS.items()
            ],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": f"#/components/schemas/{schema_name}"}}
                },
            },
            "responses": {
                "2XX": {"description": "delivered"},
                "default": {"description": "any other answer: a failed try, retried"},
            },
        }
    }


def add_event_webhooks(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` with the events' ``webhooks`` and payload schemas added."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for name, schema in event_json_schemas().items():
        schemas.setdefault(name, schema)  # never over an API model's schema of the same name
    document["webhooks"] = {
        kind: webhook_operation(kind, model.__name__, (model.__doc__ or kind).strip())
        for kind, model in EVENT_MODELS.items()
    }
    return document
