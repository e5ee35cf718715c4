"""Cache keys: everything that changes the answer, canonicalised, hashed.

A key is ``blake2b-128(orjson(normalised dict, OPT_SORT_KEYS))`` as 32 hex characters. The normalised dict
holds only plain JSON values (numbers as floats or ints, tuples as lists, mappings as dicts), and orjson
sorts keys at every depth, so the bytes (and so the key) depend on the request's content only: not on dict
insertion order, not on the process, not on ``PYTHONHASHSEED``. ``KEY_VERSION`` is part of the hashed
dict so a change of layout can never alias old entries.

``partition_key`` is the same construction with the *last user turn removed* (for a completion request:
without the prompt). Two requests share a partition when they differ at most in that last user turn, so a
semantic match can only pair prompts asked of the same backend and model, with the same parameters, system
prompt, earlier turns and namespace.

The ``backend`` that goes into a key is `backend_identity`: the normalised URL of the server (never its
display name, so two servers both called "prod" never share an answer, and renaming one keeps its
entries), and, when the cache is asked to (``ResponseCache(key_by_credential=True)``), a hash of the
credential, so an answer fetched with one API key is never served to a caller holding another: a revoked
or foreign key reaches the server and is refused there. (A key revoked *after* it fetched answers still
reads those until they expire: the cache cannot know without asking; ``clear()`` withdraws them.)
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import orjson

from workbench._exceptions import ConfigError
from workbench._types import Backend, Request

__all__ = [
    "CREDENTIAL_HEADERS",
    "KEY_FIELDS",
    "KEY_VERSION",
    "TemperaturePolicy",
    "backend_identity",
    "credential_fingerprint",
    "is_sampled",
    "key_dict",
    "partition_key",
    "request_key",
]

KEY_VERSION = 1

TemperaturePolicy = Literal["bypass", "replay"]

# (field, why it is in the key). Rendered as the table in workbench.cache's docstring.
KEY_FIELDS: tuple[tuple[str, str], ...] = (
    ("v", "key layout version (KEY_VERSION)"),
    ("namespace", "tenant / experiment namespace: two namespaces never share an entry"),
    (
        "backend",
        "the server's normalised URL (+ credential hash, if asked): two servers may answer differently",
    ),
    ("endpoint", "chat or completion"),
    ("model", "model name"),
    ("messages", "every message in order: system prompt, earlier turns, last user turn"),
    ("prompt", "completion prompt"),
    ("tools", "tool definitions"),
    ("temperature, top_p, seed, max_tokens, stop", "sampling parameters"),
    ("options", "every other server option (num_ctx, penalties, ...)"),
    ("include_usage", "whether the stream carries a usage chunk"),
)


def _plain(value: Any, where: str) -> Any:
    """A JSON-plain copy: mappings -> dict with str keys, sequences -> list, ints/floats/str/bool/None."""
    # Exact-type checks first: the ABC isinstance checks below cost ~0.2 us each, and request_key runs on
    # every lookup. Subclasses and other containers fall through to the general path (same result).
    t = type(value)
    if t is str or t is int or t is bool or value is None:
        return value
    if t is float:
        if value.is_integer():
            return int(value)
        if not math.isfinite(value):
            raise ConfigError(f"{where} holds a non-finite number {value!r}", hint="use a finite value")
        return value
    if t is dict:
        return {str(k): _plain(v, f"{where}.{k}") for k, v in value.items()}
    if t is tuple or t is list:
        return [_plain(v, where) for v in value]
    if isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigError(f"{where} holds a non-finite number {value!r}", hint="use a finite value")
        # 1.0 and 1 mean the same to every server; one spelling keeps their keys equal.
        return int(value) if value.is_integer() else value
    if isinstance(value, Mapping):
        return {str(k): _plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, Sequence | set | frozenset) and not isinstance(value, bytes | bytearray):
        items = sorted(value, key=repr) if isinstance(value, set | frozenset) else value
        return [_plain(v, where) for v in items]
    raise ConfigError(
        f"{where} holds a {type(value).__name__}, which cannot be part of a cache key",
        hint="pass plain JSON values (str, numbers, bool, lists, dicts) in options and tools",
    )


def _last_user_index(request: Request) -> int | None:
    for i in range(len(request.messages) - 1, -1, -1):
        if request.messages[i].role == "user":
            return i
    return None


def key_dict(
    request: Request, *, namespace: str = "", backend: str = "", partition: bool = False
) -> dict[str, Any]:
    """The normalised dict that is hashed. `partition=True` leaves out the last user turn.

    Its keys are inserted in sorted order, so when no nested mapping can be present (no options, no tools)
    plain ``orjson.dumps`` gives the same bytes as ``OPT_SORT_KEYS`` (see `_digest`)."""
    messages = [[m.role, m.content] for m in request.messages]
    prompt = request.prompt
    if partition:
        if request.endpoint == "completion":
            prompt = None
        else:
            idx = _last_user_index(request)
            if idx is not None:
                del messages[idx]
    temperature, top_p = request.temperature, request.top_p
    return {
        "backend": backend,
        "endpoint": request.endpoint,
        "include_usage": request.include_usage,
        "max_tokens": request.max_tokens,
        "messages": messages,
        "model": request.model,
        "namespace": namespace,
        "options": _plain(request.options, "options") if request.options else {},
        "partition": partition,
        "prompt": prompt,
        "seed": request.seed,
        "stop": list(request.stop),
        "temperature": temperature if temperature is None else _plain(temperature, "temperature"),
        "tools": _plain(request.tools, "tools") if request.tools else [],
        "top_p": top_p if top_p is None else _plain(top_p, "top_p"),
        "v": KEY_VERSION,
    }


def _digest(d: dict[str, Any], nested: bool) -> str:
    # Sorting only matters inside options/tools: the top level is already in sorted order (key_dict).
    data = orjson.dumps(d, option=orjson.OPT_SORT_KEYS) if nested else orjson.dumps(d)
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def request_key(request: Request, *, namespace: str = "", backend: str = "") -> str:
    """32 hex characters identifying everything that changes the answer (see the module docstring)."""
    return _digest(
        key_dict(request, namespace=namespace, backend=backend), bool(request.options or request.tools)
    )


def partition_key(request: Request, *, namespace: str = "", backend: str = "") -> str:
    """The key without the last user turn: the semantic tier only matches within one partition."""
    return _digest(
        key_dict(request, namespace=namespace, backend=backend, partition=True),
        bool(request.options or request.tools),
    )


def is_sampled(request: Request) -> bool:
    """True when the answer is a random draw: temperature > 0 and no seed.

    With a seed the server's draw is reproducible, so replaying it is faithful. `temperature=None` (server
    default) counts as not sampled: the user did not ask for variety, and treating it as sampled would turn
    every default request into a bypass. Set `temperature` explicitly to opt out.
    """
    t = request.temperature
    return t is not None and t > 0 and request.seed is None


# Request headers that carry a credential (lower case): a client's extra headers count with its api_key.
CREDENTIAL_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "api-key", "x-api-key", "x-goog-api-key"}
)
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _normalised_url(url: str) -> str:
    """Scheme and host in lower case; the default port, credentials, fragment and a trailing ``/`` or ``/v1``
    dropped: every spelling that the client sends to the same endpoints is one identity."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    port = parts.port
    netloc = host if port is None or port == _DEFAULT_PORTS.get(scheme) else f"{host}:{port}"
    path = parts.path.rstrip("/")
    if path.endswith("/v1"):  # the client sends /v1/... below the root either way (client._shared.base_url)
        path = path[:-3].rstrip("/")
    return urlunsplit((scheme, netloc, path, parts.query, ""))


def credential_fingerprint(backend: Backend, headers: Mapping[str, str] | None = None) -> str:
    """A hash (blake2b-128, personalised) of the credential the client sends: the credential-carrying headers
    of its requests (extra headers, then the backend's api_key / URL credentials on top, as the client
    builds them), so one key hashes alike however it was given. "" when there is none. The secret itself
    is never stored."""
    sent = {k.lower(): v for k, v in (headers or {}).items()}
    sent.update({k.lower(): v for k, v in backend.auth_headers().items()})
    material = [f"{k}:{v}" for k, v in sorted(sent.items()) if k in CREDENTIAL_HEADERS]
    if not material:
        return ""
    h = hashlib.blake2b("\n".join(material).encode(), digest_size=16, person=b"wb-credential")
    return h.hexdigest()


def backend_identity(
    backend: Backend | str, *, credential: bool = False, headers: Mapping[str, str] | None = None
) -> str:
    """What a cache key calls the backend: its normalised URL (never its display name), plus
    ``#credential=<hash>`` when `credential` is set and the backend has credentials."""
    b = Backend(backend) if isinstance(backend, str) else backend
    ident = _normalised_url(b.url)
    if credential:
        fp = credential_fingerprint(b, headers)
        if fp:
            ident += f"#credential={fp}"
    return ident
