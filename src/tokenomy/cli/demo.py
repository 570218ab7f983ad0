"""``tokenomy demo``: the whole product on one machine, offline, with no API keys.

It starts the mock upstream and a gateway with four priced models (premium, mid,
commodity, self-hosted), creates keys for three departments, and drives traffic whose
sizes and arrivals follow a real LLM trace (fitted parameters only; see
:mod:`tokenomy.demo.traffic`), while a live table shows where the money goes.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click
import yaml


def _port_or_free(preferred: int) -> int:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])


def _wait_up(url: str, process: subprocess.Popen[bytes], what: str) -> None:
    import httpx

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise click.ClickException(f"the {what} exited with code {process.returncode}")
        try:
            httpx.get(url, timeout=0.5)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise click.ClickException(f"the {what} did not start within 30 s")


@click.command()
@click.option(
    "--dir",
    "workdir",
    type=click.Path(file_okay=False),
    default="./tokenomy-demo",
    show_default=True,
    help="Where the demo keeps its config and ledger.",
)
@click.option(
    "--port", type=int, default=8080, show_default=True, help="Gateway port (a free one if taken)."
)
@click.option("--mock-port", type=int, default=9001, show_default=True, help="Mock upstream port.")
@click.option(
    "--rate",
    type=float,
    default=None,
    help="Requests per second (default: the trace's own rate, scaled to this machine).",
)
@click.option(
    "--duration", type=float, default=None, help="Stop after this many seconds (default: Ctrl-C)."
)
@click.option("--seed", type=int, default=2026, show_default=True)
@click.option("--no-live", is_flag=True, help="Print a summary at the end instead of a live table.")
def demo(
    workdir: str,
    port: int,
    mock_port: int,
    rate: float | None,
    duration: float | None,
    seed: int,
    no_live: bool,
) -> None:
    """Run gateway + mock upstream + realistic traffic, and show spend live."""
    from tokenomy.demo.scenario import DEPARTMENTS, demo_config
    from tokenomy.demo.traffic_driver import TrafficDriver

    root = Path(workdir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    for leftover in root.glob("ledger.db*"):
        leftover.unlink()  # every demo starts from an empty ledger
    mock_port = _port_or_free(mock_port)
    port = _port_or_free(port)
    config = demo_config(root / "ledger.db", mock_port)
    config_path = root / "tokenomy.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    env = {**os.environ, "TOKENOMY_ADMIN_KEY": config["admin_key"]}
    quiet: dict[str, Any] = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    mock = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tokenomy.mock",
            "--port",
            str(mock_port),
            "--tokens-per-second",
            "400",
        ],
        env=env,
        **quiet,
    )
    gateway = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tokenomy",
            "serve",
            "--config",
            str(config_path),
            "--port",
            str(port),
        ],
        env=env,
        **quiet,
    )
    try:
        _wait_up(f"http://127.0.0.1:{mock_port}/v1/models", mock, "mock upstream")
        _wait_up(f"http://127.0.0.1:{port}/healthz", gateway, "gateway")
        base = f"http://127.0.0.1:{port}"
        click.echo(f"gateway      {base}/v1   (OpenAI-compatible: point base_url here)")
        click.echo(f"dashboard    {base}/ui   (sign in with the admin key below)")
        click.echo(f"admin API    {base}/admin/docs   (admin key: {config['admin_key']})")
        click.echo(f"spend        {base}/admin/spend?group_by=department,model")
        click.echo(f"mock         http://127.0.0.1:{mock_port}/v1")
        click.echo(f"config       {config_path}")
        click.echo(f"report       tokenomy report --config {config_path} --by department,model")
        driver = TrafficDriver(base, config["admin_key"], DEPARTMENTS, seed=seed, rate=rate)
        try:
            asyncio.run(driver.run(duration=duration, live=not no_live))
        except KeyboardInterrupt:
            click.echo("stopped.")
        click.echo(driver.summary())
    finally:
        for process in (gateway, mock):
            process.terminate()
        for process in (gateway, mock):
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
