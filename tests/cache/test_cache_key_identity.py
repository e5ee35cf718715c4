"""Cache isolation by backend identity: the normalised URL (never a display name) and, when asked, a hash of
the credential, so two servers never share answers and a revoked key is never served from the cache."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import Any

import pytest

from workbench._exceptions import StatusError
from workbench._types import Backend, Request
from workbench.cache import ResponseCache, backend_identity
from workbench.cache.key import credential_fingerprint
from workbench.client import AsyncClient, Client
from workbench.simulator import Profile, Simulator

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class KeyGate:
    """ASGI middleware in front of the simulator: a request without an accepted bearer key gets 401 with
    OpenAI's error body, as a real API answers a revoked key."""

    def __init__(self, app: Any, accepted: set[str]) -> None:
        self.app = app
        self.accepted = accepted

    def __getattr__(self, name: str) -> Any:  # the simulator's own controls (shutdown) pass through
        return getattr(self.app, name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            auth = dict(scope["headers"]).get(b"authorization", b"").decode()
            if auth.removeprefix("Bearer ") not in self.accepted:
                body = b'{"error":{"message":"Incorrect API key provided","type":"invalid_request_error"}}'
                await send(
                    {
                        "type": "http.response.start",
                        "status": 401,
                        "headers": [(b"content-type", b"application/json")],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


@pytest.fixture
def gated() -> Iterator[tuple[Simulator, set[str]]]:
    accepted = {"sk-alice", "sk-bob"}
    sim = Simulator(Profile.instant(seed=2))
    sim._app = KeyGate(sim._app, accepted)  # type: ignore[assignment]
    with sim:
        yield sim, accepted


def req() -> Request:
    return Request.chat("sim-small", "what did the server say?", temperature=0, max_tokens=8)


def test_identity_is_the_normalised_url_never_the_name() -> None:
    same = [
        "http://127.0.0.1:8080",
        "HTTP://127.0.0.1:8080/",
        "http://127.0.0.1:8080/v1",
        "http://127.0.0.1:8080/v1/",
        "http://user:pw@127.0.0.1:8080",
    ]
    assert {backend_identity(u) for u in same} == {"http://127.0.0.1:8080"}
    assert backend_identity("https://API.example.com:443/openai") == "https://api.example.com/openai"
    assert backend_identity("http://[::1]:80/") == "http://[::1]"
    assert backend_identity(Backend("http://h:1", name="prod")) == backend_identity(Backend("http://h:1"))
    assert backend_identity(Backend("http://h:1", name="prod")) != backend_identity(
        Backend("http://h:2", name="prod")
    )
    assert backend_identity("http://h:1/a") != backend_identity("http://h:1/b")


def test_credential_hash_only_when_asked_and_never_the_secret() -> None:
    a = Backend("http://h:1", api_key="sk-alice-0123456789")
    b = Backend("http://h:1", api_key="sk-bob-0123456789")
    assert backend_identity(a) == backend_identity(b) == "http://h:1"
    ia, ib = backend_identity(a, credential=True), backend_identity(b, credential=True)
    assert ia != ib and ia.startswith("http://h:1#credential=") and "sk-alice" not in ia
    assert (
        backend_identity(Backend("http://h:1"), credential=True) == "http://h:1"
    )  # no credential: no suffix
    # URL credentials and credential-carrying headers count; other headers do not
    assert credential_fingerprint(Backend("http://u:one@h:1")) != credential_fingerprint(
        Backend("http://u:two@h:1")
    )
    plain = Backend("http://h:1")
    h1 = credential_fingerprint(plain, {"Authorization": "Bearer x"})
    assert h1 and h1 != credential_fingerprint(plain, {"authorization": "Bearer y"})
    assert credential_fingerprint(plain, {"X-Trace": "1"}) == ""
    assert credential_fingerprint(plain, {"api-key": "azure"}) != ""


def test_two_servers_with_the_same_name_never_share_entries() -> None:
    cache = ResponseCache()
    with Simulator(Profile.instant(seed=1)) as a, Simulator(Profile.instant(seed=1)) as b:
        with Client(Backend(a.url, protocol="openai", name="prod"), cache=cache) as ca:
            assert ca.run(req()).cache == "miss"
            assert ca.run(req()).cache == "exact"
        before = b.stats().requests
        with Client(Backend(b.url, protocol="openai", name="prod"), cache=cache) as cb:
            r = cb.run(req())
        assert r.cache == "miss" and b.stats().requests == before + 1
        assert r.backend == "prod"  # results still show the display name
        # renaming a server keeps its entries: the name was never part of the key
        with Client(Backend(a.url + "/v1", protocol="openai", name="renamed"), cache=cache) as ca2:
            assert ca2.run(req()).cache == "exact"


def test_a_revoked_key_is_never_served_from_the_cache(gated: tuple[Simulator, set[str]]) -> None:
    """The reported leak: alice's cached answer was served to a client whose key the server rejects."""
    sim, accepted = gated
    cache = ResponseCache(key_by_credential=True)
    with Client(Backend(sim.url, protocol="openai", api_key="sk-alice"), cache=cache) as alice:
        assert alice.run(req()).cache == "miss"
        assert alice.run(req()).cache == "exact"
    with Client(Backend(sim.url, protocol="openai", api_key="sk-bob"), cache=cache) as bob:
        assert bob.run(req()).cache == "miss"  # another key: its own entry, fetched from the server
    accepted.discard("sk-bob")  # bob's key is revoked
    for key in ("sk-carol", "sk-revoked-long-ago"):  # keys the server rejects, holding nothing cached
        with Client(Backend(sim.url, protocol="openai", api_key=key), cache=cache) as other:
            with pytest.raises(StatusError) as err:
                other.run(req())
        assert err.value.status_code == 401
    # headers given to the client count as the credential too
    with Client(Backend(sim.url, protocol="openai"), cache=cache, headers={"Authorization": "Bearer x"}) as c:
        with pytest.raises(StatusError):
            c.run(req())
    with Client(
        Backend(sim.url, protocol="openai"), cache=cache, headers={"Authorization": "Bearer sk-alice"}
    ) as c:
        assert c.run(req()).cache == "exact"  # the same credential, however it is given


async def test_async_client_keys_by_credential_too(gated: tuple[Simulator, set[str]]) -> None:
    sim, _ = gated
    cache = ResponseCache(key_by_credential=True)
    async with AsyncClient(Backend(sim.url, protocol="openai", api_key="sk-bob"), cache=cache) as bob:
        assert (await bob.run(req())).cache == "miss"
        assert (await bob.run(req())).cache == "exact"
    async with AsyncClient(Backend(sim.url, protocol="openai", api_key="sk-carol"), cache=cache) as carol:
        with pytest.raises(StatusError):
            await carol.run(req())


def test_without_the_option_one_answer_serves_every_key(gated: tuple[Simulator, set[str]]) -> None:
    """The default keys by server only (a shared team cache); this is what key_by_credential=True changes."""
    sim, accepted = gated
    cache = ResponseCache()
    with Client(Backend(sim.url, protocol="openai", api_key="sk-alice"), cache=cache) as alice:
        assert alice.run(req()).cache == "miss"
    accepted.clear()
    with Client(Backend(sim.url, protocol="openai", api_key="sk-revoked"), cache=cache) as other:
        assert other.run(req()).cache == "exact"
