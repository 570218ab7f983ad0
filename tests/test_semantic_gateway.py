"""The semantic cache through the gateway: a reworded question is answered from the cache,
never across tenants, models or system prompts, and not when a number or a negation
changes the question; the rows survive a restart."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import Gateway, MockUpstream, gateway_config, start_gateway, stop

pytest.importorskip("sentence_transformers", reason="the embeddings extra is not installed")


@pytest.fixture(scope="module")
def semantic(
    tmp_path_factory: pytest.TempPathFactory, mock_upstream: MockUpstream
) -> Iterator[tuple[Gateway, Path, dict[str, Any]]]:
    tmp_path: Path = tmp_path_factory.mktemp("semantic")
    config = gateway_config(tmp_path / "ledger.db", mock_upstream)
    config["cache"] = {"enabled": True, "semantic": {"enabled": True}}
    gateway = start_gateway(tmp_path, config)
    yield gateway, tmp_path, config
    stop(gateway.process)


def ask(
    gateway: Gateway, key: str, question: str, system: str | None = None, **body: Any
) -> httpx.Response:
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": question})
    payload = {"model": "gpt-4o-mini", "messages": messages, "max_tokens": 8, "temperature": 0}
    payload.update(body)
    return gateway.chat(key, payload)


def cache_of(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    return response.headers["x-tokenomy-cache"]


def test_a_reworded_question_hits_and_books_savings(
    semantic: tuple[Gateway, Path, dict[str, Any]],
) -> None:
    gateway, _, _ = semantic
    key = gateway.create_key(team="reworded")
    first = ask(gateway, key, "How do I reset my password?")
    assert cache_of(first) == "miss"
    again = ask(gateway, key, "How can I reset my password?")
    assert cache_of(again) == "hit-semantic"
    assert again.json() == first.json()
    event = next(e for e in gateway.events() if e["id"] == again.headers["x-request-id"])
    assert event["cost_pico"] == 0 and event["cache_hit"] == 1
    assert event["route_reason"].startswith("cache:semantic(")
    paid = next(e for e in gateway.events() if e["id"] == first.headers["x-request-id"])
    assert event["saved_pico"] == paid["cost_pico"] > 0


def test_changed_numbers_and_negations_do_not_hit(
    semantic: tuple[Gateway, Path, dict[str, Any]],
) -> None:
    gateway, _, _ = semantic
    key = gateway.create_key(team="guards")
    assert cache_of(ask(gateway, key, "Is 7919 a prime number?")) == "miss"
    assert cache_of(ask(gateway, key, "Is 7917 a prime number?")) == "miss"
    assert cache_of(ask(gateway, key, "Can I take ibuprofen with coffee?")) == "miss"
    assert cache_of(ask(gateway, key, "Can I not take ibuprofen with coffee?")) == "miss"


def test_no_semantic_hit_across_tenants_models_or_system_prompts(
    semantic: tuple[Gateway, Path, dict[str, Any]],
) -> None:
    gateway, _, _ = semantic
    acme = gateway.create_key(team="x", tenant="sem-acme")
    globex = gateway.create_key(team="x", tenant="sem-globex")
    question, reworded = "What is our refund policy?", "What's our refund policy?"
    assert cache_of(ask(gateway, acme, question, system="You are Acme's agent.")) == "miss"
    assert cache_of(ask(gateway, globex, reworded, system="You are Acme's agent.")) == "miss"
    other_prompt = ask(gateway, acme, reworded, system="You are Globex's agent.")
    assert cache_of(other_prompt) == "miss"
    other_model = ask(gateway, acme, reworded, system="You are Acme's agent.", model="llama-70b")
    assert cache_of(other_model) == "miss"
    same = ask(gateway, acme, reworded, system="You are Acme's agent.")
    assert cache_of(same) == "hit-semantic"


def test_semantic_entries_survive_a_restart(
    semantic: tuple[Gateway, Path, dict[str, Any]],
) -> None:
    gateway, tmp_path, config = semantic
    key = gateway.create_key(team="restart")
    assert cache_of(ask(gateway, key, "Where is the nearest train station?")) == "miss"
    stop(gateway.process)
    restarted = start_gateway(tmp_path, config)
    try:
        hit = ask(restarted, key, "Where's the nearest train station?")
        assert cache_of(hit) == "hit-semantic"
    finally:
        gateway.process = restarted.process  # the fixture stops whichever runs


def test_replicas_sharing_a_database_share_their_semantic_entries(
    tmp_path: Path, mock_upstream: MockUpstream
) -> None:
    config = gateway_config(tmp_path / "ledger.db", mock_upstream)
    config["cache"] = {"enabled": True, "semantic": {"enabled": True, "sync_s": 0.2}}
    replicas = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        replicas.append(start_gateway(tmp_path / name, config))
    first, second = replicas

    def semantic_entries(gateway: Gateway) -> int:
        return int(gateway.admin("GET", "/admin/cache").json()["semantic_entries"])

    def wait_for(gateway: Gateway, count: int) -> None:
        deadline = time.monotonic() + 10
        while semantic_entries(gateway) != count and time.monotonic() < deadline:
            time.sleep(0.1)
        assert semantic_entries(gateway) == count

    try:
        key = first.create_key(team="shared")
        assert cache_of(ask(first, key, "How do I export my invoices?")) == "miss"
        wait_for(second, 1)  # the other replica takes the entry in within sync_s
        assert cache_of(ask(second, key, "How can I export my invoices?")) == "hit-semantic"
        # A purge on one replica empties the other's index too.
        purged = first.admin("DELETE", "/admin/cache", params={"tenant": "default"})
        assert purged.status_code == 200 and purged.json()["removed"] >= 1, purged.text
        wait_for(second, 0)
    finally:
        for gateway in replicas:
            stop(gateway.process)
