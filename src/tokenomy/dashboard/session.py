"""Dashboard sessions: an HttpOnly cookie that proves the admin key was given.

The cookie holds ``<expiry ms>.<HMAC-SHA256(admin key, expiry)>``: stateless (survives
restarts and works on every replica), never the key itself, invalid as soon as the admin
key changes or the expiry passes.
"""

from __future__ import annotations

import hashlib
import hmac
import time

from tokenomy.principals.keys import same_secret

COOKIE = "tokenomy_ui"
LIFETIME_S = 12 * 3600
_CONTEXT = b"tokenomy-ui-session:"


def _mac(admin_key: str, expiry_ms: int) -> str:
    message = _CONTEXT + str(expiry_ms).encode()
    return hmac.new(admin_key.encode(), message, hashlib.sha256).hexdigest()


def issue(admin_key: str, now_ms: int | None = None) -> str:
    now = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    expiry = now + LIFETIME_S * 1000
    return f"{expiry}.{_mac(admin_key, expiry)}"


def valid(token: str, admin_key: str, now_ms: int | None = None) -> bool:
    expiry_text, _, mac = token.partition(".")
    if not expiry_text.isdigit() or not mac:
        return False
    expiry = int(expiry_text)
    now = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    return now < expiry and same_secret(mac, _mac(admin_key, expiry))
