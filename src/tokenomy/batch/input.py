"""A batch input file (JSONL, one request per line), checked before anything runs.

Each line is ``{"custom_id": ..., "method": "POST", "url": "/v1/chat/completions",
"body": {...}}`` as in OpenAI's Batch API. Every problem is reported with its line number,
at upload (the file's shape) and at batch creation (endpoint, model, each body's fields),
so a bad file is refused at once instead of failing hours later.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from tokenomy.errors import InvalidRequest
from tokenomy.gateway.endpoints import MAX_JSON_DEPTH, ROUTES, Endpoint, nesting_too_deep

MAX_CUSTOM_ID = 512
MAX_REPORTED = 5  # problems named in one error message


@dataclass(frozen=True, slots=True)
class BatchRequest:
    custom_id: str
    url: str
    body: dict[str, Any]


def parse_lines(content: bytes, max_lines: int) -> list[BatchRequest]:
    """The file's requests; raises a 400 naming the first bad lines."""
    problems: list[str] = []
    requests: list[BatchRequest] = []
    seen: set[str] = set()
    lines = content.splitlines()
    numbered = [(n, raw) for n, raw in enumerate(lines, 1) if raw.strip()]
    if not numbered:
        raise InvalidRequest("the batch input file is empty", param="file")
    if len(numbered) > max_lines:
        raise InvalidRequest(
            f"the batch input file has {len(numbered)} requests; at most {max_lines} are allowed",
            param="file",
        )
    for number, raw in numbered:
        problem = _check_line(raw, seen, requests)
        if problem:
            problems.append(f"line {number}: {problem}")
            if len(problems) >= MAX_REPORTED:
                break
    if problems:
        raise InvalidRequest("invalid batch input file: " + "; ".join(problems), param="file")
    return requests


def _check_line(raw: bytes, seen: set[str], requests: list[BatchRequest]) -> str | None:
    try:
        item = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return "not valid JSON"
    if not isinstance(item, dict):
        return "must be a JSON object"
    custom_id = item.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id or len(custom_id) > MAX_CUSTOM_ID:
        return f"custom_id must be a non-empty string of at most {MAX_CUSTOM_ID} characters"
    if custom_id in seen:
        return f"custom_id {custom_id!r} is used twice; each request needs its own"
    if item.get("method", "POST") != "POST":
        return "method must be POST"
    url = item.get("url")
    if url not in ROUTES:
        return f"url must be one of {', '.join(ROUTES)}, not {url!r}"
    body = item.get("body")
    if not isinstance(body, dict):
        return "body must be a JSON object"
    if nesting_too_deep(body):
        return f"body nests arrays and objects more than {MAX_JSON_DEPTH} levels deep"
    if body.get("stream") is True:
        return "stream is not supported in a batch"
    seen.add(custom_id)
    requests.append(BatchRequest(custom_id, url, body))
    return None


def check_for_batch(requests: list[BatchRequest], endpoint_url: str) -> tuple[Endpoint, str]:
    """Every line targets the batch's endpoint and one model, and each body is a valid
    request for it; returns the endpoint and the model."""
    endpoint = ROUTES.get(endpoint_url)
    if endpoint is None:
        raise InvalidRequest(
            f"endpoint must be one of {', '.join(ROUTES)}, not {endpoint_url!r}",
            param="endpoint",
        )
    problems: list[str] = []
    models: set[str] = set()
    for number, request in enumerate(requests, 1):
        if request.url != endpoint_url:
            problems.append(f"line {number}: url {request.url} is not the batch's {endpoint_url}")
            continue
        try:
            endpoint.validate(request.body)
        except InvalidRequest as exc:
            problems.append(f"line {number}: {exc.message}")
            continue
        models.add(str(request.body["model"]))
        if len(problems) >= MAX_REPORTED:
            break
    if problems:
        raise InvalidRequest(
            "invalid batch input file: " + "; ".join(problems), param="input_file_id"
        )
    if len(models) != 1:
        raise InvalidRequest(
            "a batch's requests must all use one model; this file uses "
            + ", ".join(sorted(models)),
            param="input_file_id",
        )
    return endpoint, models.pop()
