"""Pooled HTTP connections to one upstream, with its credentials and timeouts.

aiohttp was measured against httpx for this job (see benchmarks/); it keeps connections
alive per upstream and its streaming reads are cheap.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import aiohttp
import orjson

from tokenomy.config import UpstreamConfig
from tokenomy.errors import UpstreamError, UpstreamTimeout
from tokenomy.upstream.breaker import CircuitBreaker

ANTHROPIC_VERSION = "2023-06-01"


class UpstreamClient:
    def __init__(self, name: str, config: UpstreamConfig) -> None:
        self.name = name
        self.config = config
        self.kind = config.resolved_kind
        self.base_url = config.base_url.rstrip("/")
        self._query = "?" + urlencode(config.query) if config.query else ""
        self._session: aiohttp.ClientSession | None = None
        self._headers = self._auth_headers()
        self.breaker = CircuitBreaker(config.breaker_threshold, config.breaker_open_s)

    def _auth_headers(self) -> dict[str, str]:
        headers = {"content-type": "application/json", **self.config.headers}
        key = self.config.resolved_api_key()
        if self.kind == "anthropic":
            headers["anthropic-version"] = ANTHROPIC_VERSION
            if key:
                headers["x-api-key"] = key
        elif key:
            name = self.config.auth_header.lower()
            headers[name] = f"Bearer {key}" if name == "authorization" else key
        return headers

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=self.config.max_connections, keepalive_timeout=60, ttl_dns_cache=300
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            # A silence limit, not a total: a long stream that keeps sending is healthy.
            timeout=aiohttp.ClientTimeout(
                total=None,
                sock_connect=self.config.connect_timeout_s,
                sock_read=self.config.timeout_s,
            ),
            skip_auto_headers=("User-Agent",),
            auto_decompress=True,
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def post(self, path: str, body: bytes) -> aiohttp.ClientResponse:
        """Send a request; the caller reads and releases the response."""
        assert self._session is not None, "upstream client not started"
        try:
            return await self._session.post(
                self.base_url + path + self._query, data=body, headers=self._headers
            )
        except TimeoutError as exc:
            raise UpstreamTimeout(
                f"upstream {self.name!r} did not answer within {self.config.timeout_s:g} s"
            ) from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"upstream {self.name!r} is unreachable: {_describe(exc)}") from exc

    async def upload(self, path: str, filename: str, content: bytes, purpose: str) -> Any:
        """A multipart file upload (the Files API); the JSON answer."""
        assert self._session is not None, "upstream client not started"
        form = aiohttp.FormData()
        form.add_field("purpose", purpose)
        form.add_field("file", content, filename=filename, content_type="application/jsonl")
        headers = {k: v for k, v in self._headers.items() if k != "content-type"}
        return await self._call("POST", path, data=form, headers=headers)

    async def call_json(self, method: str, path: str, body: bytes | None = None) -> Any:
        return await self._call(method, path, data=body, headers=self._headers)

    async def read(self, path: str) -> bytes:
        raw: bytes = await self._call("GET", path, headers=self._headers, raw=True)
        return raw

    async def _call(
        self,
        method: str,
        path: str,
        *,
        data: Any = None,
        headers: dict[str, str],
        raw: bool = False,
    ) -> Any:
        """A short API call that must succeed: its answer, or an UpstreamError naming why."""
        assert self._session is not None, "upstream client not started"
        url = self.base_url + path + self._query
        try:
            async with self._session.request(method, url, data=data, headers=headers) as answer:
                body = await answer.read()
                if answer.status >= 400:
                    raise UpstreamError(
                        f"upstream {self.name!r} answered {method} {path} with HTTP "
                        f"{answer.status}: {body[:200].decode('utf-8', 'replace')}",
                        code=f"upstream_{answer.status}",
                    )
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise UpstreamError(f"upstream {self.name!r} is unreachable: {_describe(exc)}") from exc
        return body if raw else orjson.loads(body)

    async def get(self, path: str) -> Any:
        assert self._session is not None
        url = self.base_url + path + self._query
        async with self._session.get(url, headers=self._headers) as response:
            return await response.json()


def _describe(exc: BaseException) -> str:
    # Never echo request headers (they carry the provider key); the class and reason suffice.
    text = str(exc) or type(exc).__name__
    return text.replace("\n", " ")[:200]


async def read_body(response: aiohttp.ClientResponse, upstream: str) -> bytes:
    try:
        return await response.read()
    except TimeoutError as exc:
        raise UpstreamTimeout(f"upstream {upstream!r} timed out sending its answer") from exc
    except aiohttp.ClientError as exc:
        raise UpstreamError(
            f"upstream {upstream!r} broke off its answer: {_describe(exc)}"
        ) from exc
    finally:
        response.release()
