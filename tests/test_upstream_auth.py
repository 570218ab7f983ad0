"""Upstream credentials and URLs as providers expect them (OpenAI Bearer, Azure api-key +
api-version, Anthropic x-api-key), checked by a recording upstream on loopback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import openai

from conftest import ADMIN_KEY, JsonServer, MockUpstream, gateway_config, start_gateway, stop

COMPLETION = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "gpt-4o-mini",
    "choices": [
        {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "ok"}}
    ],
    "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12},
}


class RecordingUpstream(JsonServer):
    """Answers every completion and remembers what it was sent."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

        def answer(path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
            self.seen.append({"path": path, "headers": headers, "body": json.loads(body)})
            return 200, COMPLETION

        super().__init__(answer)
        self.base_url = self.url + "/openai/v1"


def test_azure_style_and_bearer_credentials_reach_the_upstream(
    tmp_path: Path, mock_upstream: MockUpstream, monkeypatch: Any
) -> None:
    upstream = RecordingUpstream()
    monkeypatch.setenv("AZURE_TEST_KEY", "azure-secret-123")
    config = gateway_config(tmp_path / "ledger.db", mock_upstream)
    config["upstreams"]["azure"] = {
        "base_url": upstream.base_url,
        "api_key_env": "AZURE_TEST_KEY",
        "auth_header": "api-key",
        "query": {"api-version": "2024-10-21"},
    }
    config["upstreams"]["plain"] = {"base_url": upstream.base_url, "api_key": "${AZURE_TEST_KEY}"}
    config["models"] += [
        {
            "name": "azure-mini",
            "upstream": "azure",
            "upstream_model": "my-deployment",
            "price_model": "gpt-4o-mini",
            "price_provider": "openai",
        },
        {"name": "plain-mini", "upstream": "plain", "upstream_model": "gpt-4o-mini"},
    ]
    gateway = start_gateway(tmp_path, config)
    try:
        key = gateway.create_key(team="azure")
        client = openai.OpenAI(base_url=gateway.base_url, api_key=key, max_retries=0)
        for model in ("azure-mini", "plain-mini"):
            answer = client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=2
            )
            assert answer.choices[0].message.content == "ok"
        azure, plain = upstream.seen
        assert azure["path"] == "/openai/v1/chat/completions?api-version=2024-10-21"
        assert azure["headers"]["api-key"] == "azure-secret-123"
        assert "authorization" not in azure["headers"]
        assert azure["body"]["model"] == "my-deployment"
        assert plain["path"] == "/openai/v1/chat/completions"
        assert plain["headers"]["authorization"] == "Bearer azure-secret-123"
        # The client's own key never travels upstream.
        assert all(key not in json.dumps(seen["headers"]) for seen in upstream.seen)
        assert ADMIN_KEY not in json.dumps(upstream.seen)
    finally:
        stop(gateway.process)
        upstream.close()
