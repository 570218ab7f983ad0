"""Who is spending: the principal behind a virtual key."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tokenomy.errors import InvalidRequest

DIMENSIONS = ("user", "team", "department", "project", "environment")
ENVIRONMENTS = ("dev", "staging", "prod", "")
MAX_FIELD = 200


@dataclass(frozen=True, slots=True)
class Principal:
    key_id: str
    tenant: str = "default"
    name: str = ""
    user: str = ""
    team: str = ""
    department: str = ""
    project: str = ""
    environment: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    allowed_models: tuple[str, ...] | None = None  # None: every model in the catalog
    rpm: int | None = None  # requests per minute, None: unlimited
    tpm: int | None = None  # tokens per minute
    allow_critical: bool = False  # may mark requests critical to skip budget downgrades
    cache_opt_out: bool = False  # never answered from (nor stored in) the response cache

    def may_use(self, model: str) -> bool:
        return self.allowed_models is None or model in self.allowed_models

    def public(self) -> dict[str, Any]:
        return {
            "id": self.key_id,
            "tenant": self.tenant,
            "name": self.name,
            "user": self.user,
            "team": self.team,
            "department": self.department,
            "project": self.project,
            "environment": self.environment,
            "tags": self.tags,
            "allowed_models": list(self.allowed_models)
            if self.allowed_models is not None
            else None,
            "rpm": self.rpm,
            "tpm": self.tpm,
            "allow_critical": self.allow_critical,
            "cache_opt_out": self.cache_opt_out,
        }


def parse_tags(value: Any, param: str = "tags") -> dict[str, str]:
    """Tags as a mapping, a list of ``key=value`` / bare ``key`` strings, or a comma list."""
    if value is None:
        return {}
    if isinstance(value, str):
        value = [part for part in value.split(",") if part.strip()]
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, list):
        items = []
        for entry in value:
            if not isinstance(entry, str):
                raise InvalidRequest(f"{param}: each tag must be a string", param=param)
            key, _, tag_value = entry.partition("=")
            items.append((key, tag_value))
    else:
        raise InvalidRequest(f"{param}: give a mapping or a list of strings", param=param)
    tags: dict[str, str] = {}
    for key, tag_value in items:
        if not isinstance(key, str) or not key.strip():
            raise InvalidRequest(f"{param}: tag names must be non-empty strings", param=param)
        if not isinstance(tag_value, str | int):
            raise InvalidRequest(f"{param}: tag {key!r} must have a string value", param=param)
        tags[key.strip()[:MAX_FIELD]] = str(tag_value).strip()[:MAX_FIELD]
    return tags
