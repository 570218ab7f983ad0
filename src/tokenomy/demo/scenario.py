"""The demo's company: four priced models and three departments with teams and workflows."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEMO_ADMIN_KEY = "demo-admin-key"


@dataclass(frozen=True)
class Team:
    department: str
    team: str
    users: tuple[str, ...]
    environment: str
    workflows: tuple[str, ...]
    # Share of this team's requests per model.
    model_mix: tuple[tuple[str, float], ...]
    share: float  # share of all traffic


DEPARTMENTS: tuple[Team, ...] = (
    Team(
        "engineering",
        "platform",
        ("ada", "linus"),
        "prod",
        ("code-review", "incident-summary"),
        (("premium-model", 0.35), ("gpt-4o-mini", 0.45), ("llama-3.1-70b", 0.20)),
        0.45,
    ),
    Team(
        "engineering",
        "ml-research",
        ("grace",),
        "dev",
        ("eval-run",),
        (("premium-model", 0.6), ("llama-3.1-70b", 0.4)),
        0.10,
    ),
    Team(
        "support",
        "tier-1",
        ("sam", "kim", "lee"),
        "prod",
        ("ticket-triage", "reply-draft"),
        (("gpt-4o-mini", 0.5), ("commodity-model", 0.5)),
        0.30,
    ),
    Team(
        "marketing",
        "content",
        ("mia",),
        "prod",
        ("blog-draft", "seo-keywords"),
        (("premium-model", 0.2), ("gpt-4o-mini", 0.3), ("commodity-model", 0.5)),
        0.15,
    ),
)


def demo_config(db_path: Path, mock_port: int) -> dict[str, Any]:
    return {
        "database": f"sqlite:///{db_path}",
        "admin_key": DEMO_ADMIN_KEY,
        "upstreams": {"mock": {"base_url": f"http://127.0.0.1:{mock_port}/v1", "api_key": "none"}},
        "models": [
            {
                "name": "premium-model",
                "upstream": "mock",
                "upstream_model": "mock-large",
                "tier": "premium",
                "price": {
                    "input_per_mtok": "5.00",
                    "cached_input_per_mtok": "2.50",
                    "output_per_mtok": "15.00",
                },
            },
            {"name": "gpt-4o-mini", "upstream": "mock"},  # priced by genai-prices
            {
                "name": "commodity-model",
                "upstream": "mock",
                "upstream_model": "mock-small",
                "price": {"input_per_mtok": "0.05", "output_per_mtok": "0.08"},
            },
            {
                "name": "llama-3.1-70b",
                "upstream": "mock",
                "upstream_model": "llama-3.1-70b",
                "self_hosted": {
                    "gpu_hour_usd": "2.50",
                    "gpus": 2,
                    "output_tokens_per_second": "1800",
                    "input_tokens_per_second": "24000",
                },
            },
        ],
    }
