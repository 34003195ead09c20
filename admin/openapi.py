"""The OpenAPI 3.1 description of ``/api/v1/`` (served at ``/api/v1/openapi.json``)."""

from __future__ import annotations

from typing import Any

from core.tables import REVIEW_STATES, STATUSES


def openapi_spec() -> dict[str, Any]:
    review = {
        "type": "object",
        "properties": {
            "state": {"enum": list(REVIEW_STATES)},
            "label": {"type": ["string", "null"]},
            "by": {"type": ["string", "null"]},
            "at": {"type": ["string", "null"], "format": "date-time"},
            "comment": {"type": ["string", "null"]},
        },
    }
    inspection = {
        "type": "object",
        "required": ["id", "job_id", "camera", "status"],
        "properties": {
            "id": {"type": "integer"},
            "job_id": {"type": "string", "format": "uuid"},
            "camera": {"type": "string"},
            "status": {"enum": list(STATUSES)},
            "label": {"type": ["string", "null"]},
            "dissimilarity": {"type": ["number", "null"]},
            "threshold": {"type": ["number", "null"]},
            "nearest_reference_id": {"type": ["integer", "null"]},
            "distances": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "reference_id": {"type": "integer"},
                        "label": {"type": "string"},
                        "kind": {"enum": ["defect", "ok"]},
                        "distance": {"type": "number"},
                    },
                },
            },
            "model_version": {"type": ["string", "null"]},
            "error": {"type": ["string", "null"]},
            "meta": {"type": "object"},
            "captured_at": {"type": ["string", "null"], "format": "date-time"},
            "received_at": {"type": ["string", "null"], "format": "date-time"},
            "processed_at": {"type": ["string", "null"], "format": "date-time"},
            "image_url": {"type": ["string", "null"]},
            "review": review,
        },
    }
    error = {"type": "object", "properties": {"error": {"type": "string"}}}

    def errors(*codes: int) -> dict[str, Any]:
        text = {
            400: "bad request",
            401: "missing or wrong token",
            403: "the token lacks the scope this needs",
            404: "not found",
            413: "image too large",
            503: "queue unreachable",
        }
        return {
            str(c): {
                "description": text[c],
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            }
            for c in codes
        }

    def query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
        return {
            "name": name,
            "in": "query",
            "required": False,
            "description": description,
            "schema": schema,
        }

    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Steel inspection API",
            "version": "1.0.0",
            "description": (
                "Inspections, reviews and job submission for plant systems. Each token has "
                "scopes (submit, read, review, metrics); a request outside them gets 403."
            ),
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Inspection": inspection, "Error": error},
        },
        "paths": {
            "/api/v1/inspections": {
                "get": {
                    "summary": "List inspections, newest first (keyset pages); scope read",
                    "parameters": [
                        query("status", "passed, flagged or rejected", {"enum": ["", *STATUSES]}),
                        query("camera", "camera name", {"type": "string"}),
                        query("label", "predicted label", {"type": "string"}),
                        query("review", "review state", {"enum": ["", *REVIEW_STATES]}),
                        query("since", "processed at or after (ISO 8601)", {"type": "string"}),
                        query("until", "processed before (ISO 8601)", {"type": "string"}),
                        query(
                            "sort", "order", {"enum": ["newest", "oldest", "dissimilar", "similar"]}
                        ),
                        query(
                            "after", "the `next` cursor of the previous page", {"type": "string"}
                        ),
                        query("limit", "page size, 1-500", {"type": "integer", "default": 50}),
                    ],
                    "responses": {
                        "200": {
                            "description": "a page",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "properties": {
                                            "items": {
                                                "type": "array",
                                                "items": {
                                                    "$ref": "#/components/schemas/Inspection"
                                                },
                                            },
                                            "next": {"type": ["string", "null"]},
                                        },
                                    }
                                }
                            },
                        },
                        **errors(400, 401, 403),
                    },
                }
            },
            "/api/v1/inspections/{id}": {
                "get": {
                    "summary": "One inspection; scope read (its image_url too)",
                    "parameters": [
                        {
                            "name": "id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "integer"},
                        }
                    ],
                    "responses": {
                        "200": {
                            "description": "the inspection",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/Inspection"}
                                }
                            },
                        },
                        **errors(401, 403, 404),
                    },
                }
            },
            "/api/v1/inspections/{id}/review": {
                "post": {
                    "summary": "Review an inspection; scope review",
                    "parameters": [
                        {
                            "name": "id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "integer"},
                        }
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["action"],
                                    "properties": {
                                        "action": {
                                            "enum": ["confirm", "false_alarm", "relabel", "comment"]
                                        },
                                        "label": {"type": "string", "description": "for relabel"},
                                        "comment": {"type": "string"},
                                        "reviewer": {
                                            "type": "string",
                                            "description": (
                                                "the person the review is for; recorded as "
                                                "'api:<token name> for <reviewer>': the token "
                                                "signs the review"
                                            ),
                                        },
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "the reviewed inspection",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/Inspection"}
                                }
                            },
                        },
                        **errors(400, 401, 403, 404),
                    },
                }
            },
            "/api/v1/jobs": {
                "post": {
                    "summary": "Submit an image for inspection (as the producers do); scope submit",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "multipart/form-data": {
                                "schema": {
                                    "type": "object",
                                    "required": ["image", "camera"],
                                    "properties": {
                                        "image": {"type": "string", "format": "binary"},
                                        "camera": {"type": "string"},
                                        "captured_at": {"type": "string", "format": "date-time"},
                                        "job_id": {"type": "string", "format": "uuid"},
                                    },
                                }
                            },
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["image_b64", "camera"],
                                    "properties": {
                                        "image_b64": {
                                            "type": "string",
                                            "contentEncoding": "base64",
                                        },
                                        "camera": {"type": "string"},
                                        "captured_at": {"type": "string", "format": "date-time"},
                                        "job_id": {"type": "string", "format": "uuid"},
                                        "meta": {"type": "object"},
                                    },
                                }
                            },
                        },
                    },
                    "responses": {
                        "202": {
                            "description": "queued",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "properties": {
                                            "job_id": {"type": "string"},
                                            "status": {"const": "queued"},
                                        },
                                    }
                                }
                            },
                        },
                        **errors(400, 401, 403, 413, 503),
                    },
                }
            },
            "/api/v1/openapi.json": {
                "get": {
                    "summary": "This description; any token",
                    "responses": {"200": {"description": "OpenAPI 3.1"}, **errors(401)},
                }
            },
        },
    }
