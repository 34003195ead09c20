"""API tokens: made by admins, stored as SHA-256 hashes, sent as ``Bearer`` headers."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.tables import ApiToken, utcnow


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_api_token(db: Session, name: str, created_by: str) -> str:
    """Create a token; returns it in clear (shown once, stored only as a hash)."""
    name = name.strip()
    if not name:
        raise ValueError("name the token after the system that will use it")
    token = "si_" + secrets.token_urlsafe(32)
    db.add(
        ApiToken(
            name=name[:80], token_hash=hash_token(token), prefix=token[:10], created_by=created_by
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
