"""Load generator for any OpenAI-compatible chat endpoint: streams every request and times
each content chunk.

Definitions follow vLLM's ``benchmark_serving`` (and guidellm): TTFT is the time from
sending the request to the first chunk that carries content; ITL are the gaps between
content chunks; TPOT is ``(e2e - ttft) / (output_tokens - 1)`` per request; output tokens
are the usage the server reports (``stream_options.include_usage``), else the chunks seen.
Load is either a fixed concurrency (closed loop: each worker sends its next request when
the previous one ends) or a Poisson arrival rate (open loop).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp
import orjson

WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel")


@dataclass(frozen=True, slots=True)
class Shape:
    input_tokens: int
    output_tokens: int


@dataclass(slots=True)
class Sample:
    ok: bool
    start: float
    ttft_s: float = 0.0
    e2e_s: float = 0.0
    itl_s: list[float] = field(default_factory=list)
    input_tokens: int = 0
    output_tokens: int = 0
    error: str = ""

    @property
    def tpot_s(self) -> float | None:
        if self.output_tokens < 2:
            return None
        return (self.e2e_s - self.ttft_s) / (self.output_tokens - 1)


@dataclass(frozen=True, slots=True)
class Target:
    url: str  # base URL ending in /v1
    model: str
    api_key: str = "none"
    headers: tuple[tuple[str, str], ...] = ()
    timeout_s: float = 600.0


def synthetic_prompt(tokens: int, rng: random.Random) -> str:
    """About ``tokens`` tokens of text (one common English word is one token)."""
    return " ".join(rng.choice(WORDS) for _ in range(max(1, tokens)))


async def _one(client: aiohttp.ClientSession, target: Target, shape: Shape, prompt: str) -> Sample:
    body = {
        "model": target.model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": shape.output_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
        "ignore_eos": True,  # vLLM: generate exactly max_tokens, as its benchmark does
    }
    start = time.perf_counter()
    sample = Sample(ok=False, start=start, input_tokens=shape.input_tokens)
    last = start
    chunks = 0
    try:
        url = target.url.rstrip("/") + "/chat/completions"
        async with client.post(url, json=body) as response:
            if response.status != 200:
                await response.read()
                sample.error = f"HTTP {response.status}"
                return sample
            async for raw in response.content:
                line = raw.decode().strip()
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                now = time.perf_counter()
                event = orjson.loads(data)
                usage = event.get("usage")
                if usage:
                    sample.output_tokens = int(usage.get("completion_tokens") or 0)
                    sample.input_tokens = int(usage.get("prompt_tokens") or shape.input_tokens)
                for choice in event.get("choices") or []:
                    delta = choice.get("delta") or {}
                    if delta.get("content") or delta.get("reasoning_content"):
                        if chunks == 0:
                            sample.ttft_s = now - start
                        else:
                            sample.itl_s.append(now - last)
                        chunks += 1
                        last = now
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        sample.error = type(exc).__name__
        return sample
    sample.e2e_s = time.perf_counter() - start
    sample.output_tokens = sample.output_tokens or chunks
    sample.ok = chunks > 0
    if not sample.ok:
        sample.error = "no content"
    return sample


async def run_load(
    target: Target,
    shapes: list[Shape],
    *,
    concurrency: int | None = None,
    rate: float | None = None,
    seed: int = 0,
    on_done: Callable[[], None] | None = None,
) -> tuple[list[Sample], float]:
    """Send one request per shape; returns the samples and the wall time of the run."""
    rng = random.Random(seed)
    prompts = [synthetic_prompt(s.input_tokens, rng) for s in shapes]
    workers = concurrency or len(shapes)
    headers = {"authorization": f"Bearer {target.api_key}", **dict(target.headers)}
    samples: list[Sample] = []
    connector = aiohttp.TCPConnector(limit=workers)
    timeout = aiohttp.ClientTimeout(total=target.timeout_s)
    async with aiohttp.ClientSession(
        headers=headers, connector=connector, timeout=timeout
    ) as client:
        start = time.perf_counter()

        async def fire(index: int) -> None:
            samples.append(await _one(client, target, shapes[index], prompts[index]))
            if on_done is not None:
                on_done()

        if rate is not None:
            tasks = []
            for index in range(len(shapes)):
                tasks.append(asyncio.create_task(fire(index)))
                await asyncio.sleep(rng.expovariate(rate))
            await asyncio.gather(*tasks)
        else:
            queue = iter(range(len(shapes)))

            async def worker() -> None:
                for index in queue:
                    await fire(index)

            await asyncio.gather(*(worker() for _ in range(workers)))
        duration = time.perf_counter() - start
    return samples, duration
