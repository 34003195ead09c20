"""API tokens: made by admins, stored as SHA-256 hashes, sent as ``Bearer`` headers.

Each token has scopes (``TOKEN_SCOPES``): a camera's token that may only submit
jobs cannot read or review inspections, nor read metrics.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable

from flask import g
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.tables import TOKEN_SCOPES, ApiToken, check_name, utcnow

#: what each scope lets a token do, as the refusal says it
SCOPE_ACTIONS = {
    "submit": "submit jobs",
    "read": "read inspections and their images",
    "review": "review inspections",
    "metrics": "read metrics",
}


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_api_token(db: Session, name: str, created_by: str, scopes: Iterable[str]) -> str:
    """Create a token that may do ``scopes``; returns it in clear (shown once, stored
    only as a hash)."""
    name = check_name(name, "the token's name (the system that will use it)")
    asked = set(scopes)
    if unknown := sorted(asked - set(TOKEN_SCOPES)):
        raise ValueError(f"unknown scope {unknown[0]!r}; choose from {', '.join(TOKEN_SCOPES)}")
    chosen = [scope for scope in TOKEN_SCOPES if scope in asked]
    if not chosen:
        raise ValueError(f"choose what the token may do: {', '.join(TOKEN_SCOPES)}")
    token = "si_" + secrets.token_urlsafe(32)
    db.add(
        ApiToken(
            name=name,
            token_hash=hash_token(token),
            prefix=token[:10],
            created_by=created_by,
            scopes=" ".join(chosen),
        )
    )
    return token


def token_from_header(db: Session, header: str) -> ApiToken | None:
    """The active token an ``Authorization: Bearer ...`` header names, marked as used."""
    if not header.startswith("Bearer "):
        return None
    token = db.scalar(
        select(ApiToken).where(
            ApiToken.token_hash == hash_token(header[7:].strip()), ApiToken.active.is_(True)
        )
    )
    if token is not None:
        token.last_used_at = utcnow()
        db.commit()
    return token


def refuse_token(db: Session, header: str, scope: str | None) -> tuple[int, str] | None:
    """None when ``header`` carries an active token with ``scope`` (None: any); else
    the status (401, 403) and what to tell the caller. Sets ``g.api_client``."""
    token = token_from_header(db, header)
    if token is None:
        if header.startswith("Bearer "):
            return 401, "the API token is wrong or revoked"
        return 401, "send an API token: Authorization: Bearer <token>"
    if scope is not None and scope not in token.scope_set:
        action = SCOPE_ACTIONS.get(scope, "use this endpoint")
        return 403, (
            f"the token {token.name!r} may not {action}; an admin can make a token "
            f"with the scope {scope!r}"
        )
    g.api_client = f"api:{token.name}"
    return None
