"""Users, roles and per-user tokens of the annotation store.

Roles are ``annotator`` and ``lead``. ``add_user`` returns the new user's token once; the store keeps
only its sha256. The first user of a store must be a lead and needs no token (bootstrap); after that
only a lead adds users. ``authenticate(session, name, token)`` returns the ``User`` or raises
``AccessError``; ``require_lead`` re-reads the role from the database. A token comes from ``--token``
or ``$REFINERY_TOKEN`` (``token_from``) and is never logged or stored in clear; it never starts
with '-' (so ``--token TOKEN`` always parses).
With PostgreSQL the same store-level tokens apply (one shared database role for the team's clients).
"""
from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from annotate.db import User

ROLES = ("annotator", "lead")
TOKEN_ENV = "REFINERY_TOKEN"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class AccessError(ValueError):
    """Unknown user, wrong token, or an action the user's role does not allow."""


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def token_from(flag: str | None) -> str | None:
    """The token given with --token, else $REFINERY_TOKEN, else None."""
    return flag or os.environ.get(TOKEN_ENV) or None


def has_lead(session: Session) -> bool:
    return session.scalar(select(User.id).where(User.role == "lead").limit(1)) is not None


def add_user(session: Session, name: str, role: str, by: User | None) -> str:
    """Add a user and return their token (shown once). ``by`` is the lead adding them (None to bootstrap)."""
    if role not in ROLES:
        raise AccessError(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
    if not _NAME.match(name):
        raise AccessError(f"user name {name!r} must be 1-64 letters, digits, '.', '_' or '-'")
    if has_lead(session):
        require_lead(session, by, "adding a user")
    elif role != "lead":
        raise AccessError("the first user of a store must be a lead: add one with --role lead")
    if session.scalar(select(User.id).where(User.name == name)) is not None:
        raise AccessError(f"user {name!r} exists already")
    token = "-"
    while token.startswith("-"):  # argparse would read `--token -…` as a flag
        token = secrets.token_urlsafe(24)
    session.add(User(name=name, role=role, token_sha256=token_sha256(token)))
    session.flush()
    return token


def authenticate(session: Session, name: str, token: str | None) -> User:
    user = session.scalar(select(User).where(User.name == name))
    if user is None or not token or not hmac.compare_digest(user.token_sha256, token_sha256(token)):
        raise AccessError(f"unknown user or wrong token for {name!r} (pass --token or set {TOKEN_ENV})")
    return user


def require_lead(session: Session, user: User | None, action: str) -> User:
    """The lead ``user`` as stored now; AccessError when it is not a lead (or None)."""
    stored = session.get(User, user.id) if user is not None else None
    if stored is None or stored.role != "lead":
        who = f"{user.name} is an annotator" if stored is not None else "no lead is signed in"
        raise AccessError(f"{action} needs the lead role ({who})")
    return stored
