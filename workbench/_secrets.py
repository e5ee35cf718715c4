"""Keeping secrets out of what we save, print and log.

Where secrets come from: ``--api-key``/``--token`` values on a command line, credentials in a URL
(``https://user:key@host``, ``redis://:password@host``), API-key environment variables, Authorization-like
headers. `Backend` strips URL credentials at construction (they travel as an Authorization header), so most
code never holds them; these helpers are the second line for what is saved as given: the command line
recorded with a run, URLs typed by a user, and any ``config`` / ``meta`` dict written to a sidecar (`scrub`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

__all__ = ["REDACTED", "SECRET_FLAGS", "redact_argv", "redact_url", "scrub", "split_userinfo"]

REDACTED = "***"

# Command-line options whose value is a secret (the value is the next argument, or after "=").
SECRET_FLAGS: frozenset[str] = frozenset({"--api-key", "--token", "--password", "--secret", "--auth"})

# A dict key naming a secret (the whole key, or its last _/- part): api_key, apiKey, x-api-key, token,
# lab_token, password, secret, authorization. Not max_tokens or tokens_source: those are figures.
_SECRET_KEY = re.compile(
    r"(^|[_-])(api[_-]?key|token|passw(or)?d|secret|authori[sz]ation|credentials?)$", re.IGNORECASE
)
# scheme://userinfo@ anywhere in a string (userinfo: no '/', '@' or whitespace).
_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/@\s]+)@")


def split_userinfo(url: str) -> tuple[str, str | None, str | None]:
    """(url without credentials, username, password). Username/password are None when absent."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None, None
    hostport = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=hostport)), parts.username, parts.password


def redact_url(text: str) -> str:
    """`text` with every ``scheme://user:secret@`` turned into ``scheme://***@``."""
    return _USERINFO.sub(lambda m: f"{m.group('scheme')}{REDACTED}@", text)


def redact_argv(argv: Sequence[str]) -> list[str]:
    """A command line with the values of `SECRET_FLAGS` and URL credentials replaced by ``***``."""
    out: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            out.append(REDACTED)
            hide_next = False
            continue
        flag, eq, _ = arg.partition("=")
        if flag in SECRET_FLAGS:
            if eq:
                out.append(f"{flag}={REDACTED}")
            else:
                out.append(arg)
                hide_next = True
            continue
        out.append(redact_url(arg))
    return out


def scrub(value: Any) -> Any:
    """A copy of a JSON-like value safe to save: secret-named keys hidden, URL credentials and secret
    command-line values redacted, at any depth."""
    if isinstance(value, str):
        return redact_url(value)
    if isinstance(value, Mapping):
        out: dict[Any, Any] = {}
        for k, v in value.items():
            if isinstance(k, str) and _SECRET_KEY.search(k) and isinstance(v, str) and v:
                out[k] = REDACTED
            else:
                out[k] = scrub(v)
        return out
    if isinstance(value, list | tuple):
        items = [scrub(v) for v in value]
        if any(isinstance(v, str) and v.partition("=")[0] in SECRET_FLAGS for v in items):
            items = redact_argv([str(v) for v in items])
        return items
    return value
