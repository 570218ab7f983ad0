"""Route aliases: clients ask for a virtual model; `fixed` and `cheapest-capable` choose the
model that serves, never one that cannot serve the request."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from conftest import Gateway, MockUpstream, gateway_config, start_gateway, stop

TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
IMAGE = [
    {"type": "text", "text": "what is this?"},
    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
]


@pytest.fixture(scope="module")
def routed(
    tmp_path_factory: pytest.TempPathFactory, mock_upstream: MockUpstream
) -> Iterator[Gateway]:
    tmp_path: Path = tmp_path_factory.mktemp("routed")
    config = gateway_config(tmp_path / "ledger.db", mock_upstream)
    for model in config["models"]:
        if model["name"] == "gpt-4o-mini":
            model["capabilities"] = ["json_mode"]
        elif model["name"] == "llama-70b":
            model.update(capabilities=["tools", "json_mode"], max_output_tokens=100)
    config["routes"] = {
        "auto": {
            "strategy": "cheapest-capable",
            "models": ["premium-model", "llama-70b", "gpt-4o-mini"],
        },
        "small-only": {"strategy": "cheapest-capable", "models": ["gpt-4o-mini"]},
        "fast": {"strategy": "fixed", "model": "gpt-4o-mini"},
    }
    gateway = start_gateway(tmp_path, config)
    yield gateway
    stop(gateway.process)


def ask(gateway: Gateway, key: str, model: str, **body: Any) -> httpx.Response:
    payload = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
    payload.update(body)
    return httpx.post(
        gateway.base_url + "/chat/completions",
        json=payload,
        timeout=30,
        headers={"authorization": f"Bearer {key}"},
    )


@pytest.mark.parametrize(
    ("body", "served"),
    [
        ({}, "gpt-4o-mini"),  # the cheapest candidate
        ({"tools": TOOLS}, "llama-70b"),  # the cheapest with tools
        ({"tools": TOOLS, "max_tokens": 500}, "premium-model"),  # llama's output limit is 100
        ({"messages": [{"role": "user", "content": IMAGE}]}, "premium-model"),  # vision
        ({"response_format": {"type": "json_object"}}, "gpt-4o-mini"),
    ],
)
def test_cheapest_capable_serves_from_the_cheapest_model_that_can(
    routed: Gateway, body: dict[str, Any], served: str
) -> None:
    response = ask(routed, routed.create_key(team="routing"), "auto", **body)
    assert response.status_code == 200, response.text
    assert response.headers["x-tokenomy-model"] == served
    assert response.headers["x-tokenomy-route-reason"] == "route:auto/cheapest-capable"
    event = next(e for e in routed.events() if e["id"] == response.headers["x-request-id"])
    assert (event["requested_model"], event["model"]) == ("auto", served)
    assert event["route_reason"] == "route:auto/cheapest-capable"


def test_a_route_with_no_capable_model_says_what_is_missing(routed: Gateway) -> None:
    response = ask(routed, routed.create_key(team="routing"), "small-only", tools=TOOLS)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "model" and "tools" in error["message"]
    assert "small-only" in error["message"]


def test_fixed_routes_and_the_models_list(routed: Gateway) -> None:
    key = routed.create_key(team="routing")
    response = ask(routed, key, "fast")
    assert response.headers["x-tokenomy-model"] == "gpt-4o-mini"
    assert response.headers["x-tokenomy-route-reason"] == "route:fast/fixed"
    listed = {m.id for m in openai.OpenAI(base_url=routed.base_url, api_key=key).models.list()}
    assert {"auto", "fast", "small-only", "gpt-4o-mini"} <= listed


def test_keys_limited_to_models_only_route_among_them(routed: Gateway) -> None:
    key = routed.create_key(team="routing", allowed_models=["auto", "premium-model"])
    response = ask(routed, key, "auto")
    assert response.headers["x-tokenomy-model"] == "premium-model"
    denied = ask(routed, key, "fast")
    assert denied.status_code == 404 and denied.json()["error"]["code"] == "model_not_found"
