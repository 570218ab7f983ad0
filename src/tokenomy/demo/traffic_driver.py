"""Drives the demo's traffic through the gateway and renders the live spend table."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from typing import Any

import aiohttp

from tokenomy.demo.scenario import Team
from tokenomy.demo.traffic import TrafficModel, prompt_of_tokens

MAX_PROMPT_TOKENS = 6000
MAX_IN_FLIGHT = 64


class TrafficDriver:
    def __init__(
        self, base_url: str, admin_key: str, teams: tuple[Team, ...], seed: int, rate: float | None
    ) -> None:
        self.base_url = base_url
        self.admin_key = admin_key
        self.teams = teams
        self.rng = random.Random(seed)
        # The trace's busy periods (~9 requests/s); its minute-long idle gaps would look
        # like a stalled demo.
        self.model = TrafficModel(idle_gaps=False)
        self.rate = rate if rate is not None else self.model.mean_rate_per_s
        self.keys: dict[tuple[str, str], str] = {}
        self.outcomes: Counter[str] = Counter()
        self.started = time.monotonic()
        self.last_report: dict[str, Any] = {"rows": [], "total_cost_usd": "0", "total_requests": 0}

    async def run(self, duration: float | None, live: bool) -> None:
        timeout = aiohttp.ClientTimeout(total=120)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            await self._create_keys(session)
            self.started = time.monotonic()
            traffic = asyncio.create_task(self._traffic(session))
            try:
                if live:
                    await self._live(session, duration)
                else:
                    await asyncio.sleep(duration if duration is not None else 3600 * 24 * 365)
            finally:
                traffic.cancel()
                await asyncio.gather(traffic, return_exceptions=True)
                await self._refresh(session)

    async def _create_keys(self, session: aiohttp.ClientSession) -> None:
        for team in self.teams:
            for user in team.users:
                async with session.post(
                    f"{self.base_url}/admin/keys",
                    json={
                        "user": user,
                        "team": team.team,
                        "department": team.department,
                        "project": "demo",
                        "environment": team.environment,
                    },
                    headers={"authorization": f"Bearer {self.admin_key}"},
                ) as response:
                    response.raise_for_status()
                    self.keys[(team.team, user)] = (await response.json())["key"]

    async def _traffic(self, session: aiohttp.ClientSession) -> None:
        in_flight: set[asyncio.Task[None]] = set()
        scale = self.rate / self.model.mean_rate_per_s
        try:
            while True:
                await asyncio.sleep(self.model.interarrival_s(self.rng, rate_scale=scale))
                if len(in_flight) >= MAX_IN_FLIGHT:
                    self.outcomes["skipped (too many in flight)"] += 1
                    continue
                task = asyncio.create_task(self._one(session))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
        finally:  # let the requests already sent finish, so none is cut off by the exit
            if in_flight:
                await asyncio.wait(in_flight, timeout=30)

    async def _one(self, session: aiohttp.ClientSession) -> None:
        rng = self.rng
        team = rng.choices(self.teams, weights=[t.share for t in self.teams])[0]
        user = rng.choice(team.users)
        models, weights = zip(*team.model_mix, strict=True)
        model = rng.choices(models, weights=weights)[0]
        shape = self.model.sample(rng)
        body: dict[str, Any] = {
            "model": model,
            "messages": [
                {"role": "system", "content": f"You help the {team.team} team."},
                {
                    "role": "user",
                    "content": prompt_of_tokens(min(shape.context_tokens, MAX_PROMPT_TOKENS), rng),
                },
            ],
            "max_tokens": max(1, shape.generated_tokens),
        }
        stream = rng.random() < 0.3
        if stream:
            body["stream"] = True
        headers = {
            "authorization": f"Bearer {self.keys[(team.team, user)]}",
            "x-tokenomy-workflow": rng.choice(team.workflows),
        }
        try:
            async with session.post(
                f"{self.base_url}/v1/chat/completions", json=body, headers=headers
            ) as response:
                await response.read()
                self.outcomes["ok" if response.status == 200 else f"HTTP {response.status}"] += 1
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.outcomes[type(exc).__name__] += 1

    async def _refresh(self, session: aiohttp.ClientSession) -> None:
        try:
            async with session.get(
                f"{self.base_url}/admin/spend",
                params={"group_by": "department,team,model"},
                headers={"authorization": f"Bearer {self.admin_key}"},
            ) as response:
                if response.status == 200:
                    self.last_report = await response.json()
        except (aiohttp.ClientError, TimeoutError):
            pass

    async def _live(self, session: aiohttp.ClientSession, duration: float | None) -> None:
        from rich.live import Live

        with Live(self.table(), refresh_per_second=2, screen=False) as live:
            while duration is None or time.monotonic() - self.started < duration:
                await asyncio.sleep(1.0)
                await self._refresh(session)
                live.update(self.table())

    def table(self) -> Any:
        from rich.table import Table

        elapsed = max(time.monotonic() - self.started, 1e-9)
        report = self.last_report
        title = (
            f"tokenomy demo: live spend ({report['total_requests']} requests, "
            f"{report['total_requests'] / elapsed:.1f}/s, target {self.rate:.1f}/s)"
        )
        table = Table(title=title, caption=_CAPTION, show_footer=True)
        table.add_column("department", footer="total")
        table.add_column("team")
        table.add_column("model")
        table.add_column("requests", justify="right", footer=str(report["total_requests"]))
        table.add_column("input tok", justify="right")
        table.add_column("output tok", justify="right")
        table.add_column(
            "cost USD", justify="right", footer=f"${float(report['total_cost_usd']):,.6f}"
        )
        table.add_column("per request", justify="right")
        for row in report["rows"]:
            table.add_row(
                row["department"],
                row["team"],
                row["model"],
                str(row["requests"]),
                f"{row['input_tokens']:,}",
                f"{row['output_tokens']:,}",
                f"${float(row['cost_usd']):,.6f}",
                f"${float(row['cost_per_request_usd']):.6f}",
            )
        return table

    def summary(self) -> str:
        report = self.last_report
        lines = [f"{'department':<12} {'team':<12} {'model':<16} {'requests':>8} {'cost USD':>14}"]
        for row in report["rows"]:
            lines.append(
                f"{row['department']:<12} {row['team']:<12} {row['model']:<16} "
                f"{row['requests']:>8} {row['cost_usd']:>14}"
            )
        lines.append(f"total: ${report['total_cost_usd']} over {report['total_requests']} requests")
        lines.append("outcomes: " + ", ".join(f"{k}={v}" for k, v in sorted(self.outcomes.items())))
        lines.append(_CAPTION)
        return "\n".join(lines)


_CAPTION = (
    "Request sizes and arrivals fitted to the Azure LLM inference trace 2023 (code), "
    "Azure Public Dataset, Patel et al., Splitwise, ISCA 2024 (CC-BY 4.0)."
)
