"""One ledger event per request."""

from __future__ import annotations

from dataclasses import dataclass, field

from tokenomy.usage import Usage

# Principal dimensions that rollups keep; free tags live only on events.
ROLLUP_DIMENSIONS = (
    "tenant",
    "key_id",
    "user",
    "team",
    "department",
    "project",
    "environment",
    "workflow",
    "model",
    "tier",
    "upstream",
)


@dataclass(slots=True)
class UsageEvent:
    id: str
    ts_ms: int
    tenant: str
    key_id: str
    user: str
    team: str
    department: str
    project: str
    environment: str
    workflow: str
    tags: dict[str, str]
    endpoint: str
    requested_model: str
    model: str
    tier: str
    upstream: str
    route_reason: str
    usage: Usage
    cost_pico: int
    latency_ms: float
    status: int
    ttft_ms: float | None = None
    error: str | None = None
    stream: bool = False
    cache_hit: bool = False
    estimated: bool = False
    prompt: str | None = None
    completion: str | None = None
    extra: dict[str, str] = field(default_factory=dict)
    # Savings: how the model was chosen, the model it is compared with, and that model's
    # cost for the same usage minus cost_pico (0 when nothing was routed).
    strategy: str = "requested"
    baseline_model: str | None = None
    saved_pico: int = 0

    def rollup_key(self, bucket_seconds: int) -> tuple[object, ...]:
        """The rollup row this event adds to: its time bucket start (epoch seconds) and
        its dimensions."""
        return (
            self.ts_ms // (bucket_seconds * 1000) * bucket_seconds,
            self.tenant,
            self.key_id,
            self.user,
            self.team,
            self.department,
            self.project,
            self.environment,
            self.workflow,
            self.model,
            self.tier,
            self.upstream,
        )
