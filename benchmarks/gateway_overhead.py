"""Gateway overhead: the same load straight to the mock upstream and through the gateway.

    python benchmarks/gateway_overhead.py [--duration 5] [--concurrency 1,4,16,64]
        [--servers granian,uvicorn] [--stream | --no-stream] [--json PATH]
        [--profile SECONDS [--profile-connections 1,16]]

Layout (Linux, needs ``wrk`` and ``taskset``): the mock upstream and ``wrk`` share CPU 0;
each gateway (one process, metering and the SQLite ledger on) is pinned to CPU 1. For every
mode (plain, stream) and concurrency the script measures, back to back, the mock directly
and then each gateway (the other gateway idles meanwhile; its CPU use is in the JSON), so
every ratio compares runs taken seconds apart on a machine whose load may drift. At the
end it checks that each gateway's ledger holds at least as many events as wrk completed
requests through it: the figures are for a gateway that metered and recorded every call.

Besides requests/s and latency, each row shows the gateway's CPU use (from /proc): its
share of the core and CPU µs per request. 1e6 / (µs per request) is what the gateway would
serve if it had the core to itself, which noisy neighbours do not change much.

``--profile SECONDS`` additionally samples each gateway's serving process with py-spy
(``pip install py-spy``) under plain load and prints where the time goes: CPU per thread,
then the Python stacks of the thread holding the GIL, grouped by owner.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

MODEL = "gpt-4o-mini"
PROMPT = "Say hello in one short sentence."
PATH = "/v1/chat/completions"
ADMIN_KEY = "bench-admin"
MODES = ("plain", "stream")
SERVERS = ("granian", "uvicorn")
CLK_TCK = os.sysconf("SC_CLK_TCK")
PROFILE_RATE = 200  # py-spy samples per second


def request_body(stream: bool) -> bytes:
    body: dict[str, Any] = {
        "model": MODEL,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": 16,
    }
    if stream:
        body["stream"] = True
    return json.dumps(body, separators=(",", ":")).encode()


# --------------------------------------------------------------------------- wrk


@dataclass
class WrkResult:
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p75_ms: float
    p90_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _duration_ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if match is None:
        raise ValueError(f"unexpected wrk duration {text!r}")
    return float(match.group(1)) * _UNITS_MS[match.group(2)]


def parse_wrk(output: str) -> WrkResult:
    def find(pattern: str) -> re.Match[str]:
        match = re.search(pattern, output)
        if match is None:
            raise ValueError(f"wrk output lacks {pattern!r}:\n{output}")
        return match

    percentiles = {
        int(p): _duration_ms(value)
        for p, value in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", output, re.MULTILINE)
    }
    if set(percentiles) != {50, 75, 90, 99}:
        raise ValueError(f"wrk output lacks the latency distribution:\n{output}")
    done = find(r"(\d+) requests in ([\d.]+)(us|ms|s|m)")
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return WrkResult(
        requests=int(done.group(1)),
        seconds=_duration_ms(done.group(2) + done.group(3)) / 1000,
        rps=float(find(r"Requests/sec:\s+([\d.]+)").group(1)),
        p50_ms=percentiles[50],
        p75_ms=percentiles[75],
        p90_ms=percentiles[90],
        p99_ms=percentiles[99],
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(n) for n in errors.groups()) if errors else 0,
    )


def lua_script(directory: Path, name: str, body: bytes, key: str) -> Path:
    path = directory / f"{name}.lua"
    path.write_text(
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Bearer {key}"\n'
        f"wrk.body = [[{body.decode()}]]\n"
    )
    return path


def run_wrk(
    cpu: str, url: str, script: Path, connections: int, seconds: int
) -> tuple[WrkResult, str]:
    command = ["taskset", "-c", cpu, "wrk", "-t1", f"-c{connections}", f"-d{seconds}s"]
    command += ["--latency", "--timeout", "10s", "-s", str(script), url]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return parse_wrk(output), output


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def descendants(root: int) -> list[int]:
    """``root`` and every process below it (from /proc, no psutil)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process (all its threads), 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def affinities(pid: int) -> set[str]:
    """The CPU lists every thread of a process may run on."""
    found = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        with suppress(OSError):
            for line in (task / "status").read_text().splitlines():
                if line.startswith("Cpus_allowed_list:"):
                    found.add(line.split(":", 1)[1].strip())
    return found


class Service:
    """A server process group started by this script (stopped by its own process id)."""

    def __init__(self, name: str, command: list[str], log: Path, cwd: Path) -> None:
        self.name = name
        self.log = log
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=cwd
            )

    def wait_ready(self, url: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"{self.name} exited:\n{self.log.read_text()[-3000:]}")
            with suppress(httpx.TransportError):
                if httpx.get(url, timeout=2).status_code == 200:
                    return
            time.sleep(0.1)
        raise SystemExit(f"{self.name} did not answer {url} within {timeout:g} s")

    def pids(self) -> list[int]:
        return descendants(self.process.pid)

    def cpu_seconds(self) -> float:
        return sum(cpu_seconds(pid) for pid in self.pids())

    def busiest_pid(self) -> int:
        """The process that serves requests (granian's worker; uvicorn's only process)."""
        return max(self.pids(), key=cpu_seconds)

    def stop(self) -> None:
        if self.process.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


@dataclass
class Gateway:
    server: str
    service: Service
    url: str
    database: Path
    key: str = ""
    sent: int = 0  # requests wrk (and the sanity checks) completed through this gateway
    pinning: dict[int, str] = field(default_factory=dict)


def start_gateway(
    server: str, mock_url: str, cpu: str, workdir: Path, venv_bin: Path, extra_config: str = ""
) -> Gateway:
    directory = workdir / f"gateway-{server}"
    directory.mkdir()
    database = directory / "ledger.db"
    config = directory / "tokenomy.yaml"
    config.write_text(
        f"database: sqlite:///{database}\n"
        f"admin_key: {ADMIN_KEY}\n"
        "upstreams:\n"
        f'  mock: {{base_url: "{mock_url}/v1", api_key: none}}\n'
        "models:\n"
        f"  - {{name: {MODEL}, upstream: mock}}\n" + extra_config
    )
    port = free_port()
    command = ["taskset", "-c", cpu, str(venv_bin / "tokenomy"), "serve", "--config", str(config)]
    command += ["--port", str(port), "--server", server, "--log-level", "warning"]
    url = f"http://127.0.0.1:{port}"
    service = Service(f"gateway ({server})", command, directory / "server.log", directory)
    gateway = Gateway(server, service, url, database)
    service.wait_ready(url + "/healthz")
    time.sleep(0.5)  # let granian finish spawning its worker before checking the pinning
    gateway.pinning = {pid: ",".join(sorted(affinities(pid))) for pid in service.pids()}
    wrong = {pid: cpus for pid, cpus in gateway.pinning.items() if cpus != cpu}
    if wrong:
        raise SystemExit(f"gateway ({server}) processes not pinned to CPU {cpu}: {wrong}")
    created = httpx.post(
        url + "/admin/keys",
        json={"team": "bench"},
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        timeout=10,
    )
    created.raise_for_status()
    gateway.key = created.json()["key"]
    return gateway


def sanity_check(gateway: Gateway, modes: Sequence[str]) -> None:
    """One request per mode through the gateway: answered, priced, and (streams) complete."""
    headers = {"Authorization": f"Bearer {gateway.key}", "Content-Type": "application/json"}
    for mode in modes:
        response = httpx.post(
            gateway.url + PATH, content=request_body(mode == "stream"), headers=headers, timeout=10
        )
        gateway.sent += 1
        if response.status_code != 200 or "x-tokenomy-cost-usd" not in response.headers:
            raise SystemExit(
                f"gateway ({gateway.server}) {mode}: HTTP {response.status_code} "
                f"{response.text[:300]}"
            )
        if mode == "stream" and not response.text.rstrip().endswith("data: [DONE]"):
            raise SystemExit(f"gateway ({gateway.server}): the stream did not end with [DONE]")


def ledger_events(database: Path) -> int:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as conn:
        count: int = conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]
    return count


# --------------------------------------------------------------------------- profile

_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("ledger", ("tokenomy/ledger/", "sqlite3")),
    ("auth", ("tokenomy/principals/", "proxy.py:authenticate", "hashlib", "hmac")),
    ("pricing", ("tokenomy/pricing/", "tokenomy/money.py", "tokenomy/usage.py", "decimal")),
    ("JSON", ("orjson", "json/", ":parse_json_object")),
    ("HTTP client", ("aiohttp/", "yarl/", "multidict/", "aiohappyeyeballs/", "propcache/")),
    # Our ASGI helpers await the server's receive/send; under granian those are Rust
    # callables that py-spy cannot see into, so their time lands on these two frames.
    ("server", ("granian/", "uvicorn/", "httptools/", "h11/", "asgi.py:read_body")),
    ("server", ("asgi.py:send_bytes",)),
    ("event loop", ("asyncio/", "uvloop/", "selectors.py")),
    ("our code", ("tokenomy/",)),
)


def frame_group(frame: str) -> str:
    """A py-spy frame ``function (path/to/file.py:line)`` → a coarse owner."""
    match = re.fullmatch(r"(.*) \((.*?)(?::(\d+))?\)", frame)
    function, path = (match.group(1), match.group(2)) if match else (frame, "")
    key = f"{path}:{function}"
    for group, needles in _GROUPS:
        if any(needle in key for needle in needles):
            return group
    return "other"


def sample_owner(frames: Sequence[str]) -> str:
    """Who a sample's time belongs to: the library our innermost frame called into (so
    ``asyncio.create_task`` called by aiohttp for the proxy counts as HTTP client), else
    the group of that innermost frame of ours, else the innermost frame with a known
    owner (event-loop callbacks, protocol ``data_received`` ...)."""
    ours = [
        i
        for i, frame in enumerate(frames)
        if "tokenomy/" in frame and "tokenomy/cli/" not in frame  # cli/: process start-up
    ]
    if ours:
        deepest = ours[-1]
        for frame in frames[deepest + 1 :]:
            group = frame_group(frame)
            if group != "other":
                return group
        return frame_group(frames[deepest])
    for frame in reversed(frames):
        group = frame_group(frame)
        if group != "other":
            return group
    return "other"


def short_frame(frame: str) -> str:
    match = re.fullmatch(r"(.*) \((.*?)(?::(\d+))?\)", frame)
    if match is None:
        return frame
    path = match.group(2)
    for marker in ("site-packages/", "/lib/python3", "/src/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{match.group(1)} ({path})"


@dataclass
class ThreadCpu:
    tid: int
    name: str
    cpu_percent: float  # of one core, over the sampled window
    us_per_request: float
    kernel_percent: float  # of this thread's CPU time, spent in the kernel (syscalls)


def thread_cpu(pid: int) -> dict[int, tuple[float, float]]:
    """CPU seconds per thread of one process: thread id → (user, system)."""
    found = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        with suppress(OSError):
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            found[int(task.name)] = (int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK)
    return found


def thread_names(pid: int) -> dict[int, str]:
    names = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        with suppress(OSError):
            names[int(task.name)] = (task / "comm").read_text().strip()
    return names


def summarize_profile(raw: Path, top: int = 15) -> dict[str, Any]:
    """Own and total sample counts per function and per group, from py-spy's raw format
    (one line per distinct stack: ``thread (tid): name;frame;...;frame count``, root first).

    Frames every sample of a thread passes through (process start-up, the server's run
    loop) are left out of the totals: they say nothing about where the time goes."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    per_thread_total: dict[str, Counter[str]] = {}
    groups: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if f]
        thread = next((f for f in frames if f.startswith("thread ")), "thread ?")
        frames = [f for f in frames if not f.startswith(("thread ", "process "))]
        if not frames:
            continue
        samples += count
        threads[thread] += count
        own[short_frame(frames[-1])] += count
        seen = per_thread_total.setdefault(thread, Counter())
        for name in {short_frame(f) for f in frames}:
            seen[name] += count
        groups[sample_owner(frames)] += count
    for thread, counts in per_thread_total.items():
        for name, count in counts.items():
            if count < threads[thread]:
                total[name] += count

    def share(counter: Counter[str], n: int) -> list[tuple[str, int, float]]:
        return [(name, c, 100 * c / max(samples, 1)) for name, c in counter.most_common(n)]

    return {
        "samples": samples,
        "threads": share(threads, 10),
        "groups": share(groups, 20),
        "own": share(own, top),
        "total": share(total, top),
    }


def print_profile(profile: dict[str, Any]) -> None:
    print(
        f"\nprofile: gateway ({profile['server']}) pid {profile['pid']}, "
        f"{profile['connections']} connection(s) plain, {profile['rps']:.0f} req/s while sampled"
    )
    print("  CPU per thread (from /proc, whole sampled window):")
    for entry in profile["thread_cpu"]:
        if entry["cpu_percent"] < 1 and entry["tid"] != 0:
            continue  # idle helper threads (libuv's pool, granian's spare runtime threads)
        print(
            f"    {entry['cpu_percent']:5.1f}% of a core  {entry['us_per_request']:6.0f} µs/req  "
            f"({entry['kernel_percent']:3.0f}% in kernel)  "
            f"{entry['name']} ({entry['tid']})"
        )
    print(
        f"  py-spy --gil: {profile['samples']} samples of the thread holding the GIL "
        f"(Python time only; GIL-free time in Rust, libuv or SQLite is in the line above)"
    )
    for title, rows in (
        ("by owner (the library our innermost frame called)", profile["groups"]),
        ("top functions by own time", profile["own"]),
        ("top functions by total time", profile["total"]),
    ):
        print(f"  {title}:")
        for name, _count, percent in rows:
            print(f"    {percent:5.1f}%  {name}")
    print(f"  raw stacks: {profile['raw']}")


def profile_gateway(
    gateway: Gateway, args: argparse.Namespace, script: Path, connections: int
) -> dict[str, Any]:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(py_spy).exists():
        raise SystemExit("--profile needs py-spy: pip install py-spy")
    pid = gateway.service.busiest_pid()
    raw = args.profile_dir / f"profile-{gateway.server}-c{connections}.txt"
    result: list[WrkResult] = []

    def load() -> None:
        wrk, _ = run_wrk(args.wrk_cpu, gateway.url + PATH, script, connections, args.profile + 3)
        result.append(wrk)

    worker = threading.Thread(target=load)
    worker.start()
    time.sleep(1)
    # py-spy runs next to wrk and the mock, not on the gateway's core.
    command = ["taskset", "-c", args.wrk_cpu, py_spy, "record", "--format", "raw", "--threads"]
    command += ["--gil", "--rate", str(PROFILE_RATE), "-d", str(args.profile)]
    command += ["-o", str(raw), "-p", str(pid)]
    before, started = thread_cpu(pid), time.monotonic()
    subprocess.run(command, capture_output=True, check=True)
    after, wall = thread_cpu(pid), time.monotonic() - started
    names = thread_names(pid)
    worker.join()
    gateway.sent += result[0].requests
    rps = result[0].rps
    # py-spy names Python threads ("thread (tid): MainThread"); /proc knows the others.
    for line in raw.read_text().splitlines():
        match = re.match(r"thread \((\d+)\): ([^;]+);", line)
        if match:
            names[int(match.group(1))] = match.group(2)
    requests = max(rps * wall, 1.0)
    busy = []
    kernel_total = 0.0
    for tid, (user, system) in after.items():
        user0, system0 = before.get(tid, (0.0, 0.0))
        used, kernel = user + system - user0 - system0, system - system0
        if used > 0:
            kernel_total += kernel
            busy.append(
                ThreadCpu(
                    tid,
                    names.get(tid, "?"),
                    100 * used / wall,
                    1e6 * used / requests,
                    100 * kernel / used,
                )
            )
    busy.sort(key=lambda entry: -entry.cpu_percent)
    used_total = sum(entry.cpu_percent for entry in busy) * wall / 100
    busy.append(
        ThreadCpu(
            0,
            "all threads",
            100 * used_total / wall,
            1e6 * used_total / requests,
            100 * kernel_total / used_total if used_total else 0.0,
        )
    )
    profile = {
        "server": gateway.server,
        "connections": connections,
        "pid": pid,
        "rps": rps,
        "raw": str(raw),
        "thread_cpu": [asdict(entry) for entry in busy],
        **summarize_profile(raw),
    }
    print_profile(profile)
    return profile


# --------------------------------------------------------------------------- report


@dataclass
class Cell:
    mode: str
    server: str
    concurrency: int
    direct: WrkResult
    gateway: WrkResult
    gateway_cpu_s: float  # CPU time the gateway process tree used during the run
    gateway_wall_s: float  # how long that run took
    idle_gateways_cpu_percent: dict[str, float]  # the other gateways, meanwhile

    @property
    def added_p50_ms(self) -> float:
        return self.gateway.p50_ms - self.direct.p50_ms

    @property
    def ratio(self) -> float:
        return self.gateway.rps / self.direct.rps if self.direct.rps else 0.0

    @property
    def cpu_percent(self) -> float:
        return 100 * self.gateway_cpu_s / self.gateway_wall_s if self.gateway_wall_s else 0.0

    @property
    def cpu_us_per_request(self) -> float:
        return 1e6 * self.gateway_cpu_s / max(self.gateway.requests, 1)


def machine() -> dict[str, Any]:
    model = "?"
    with suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    repo = Path(__file__).resolve().parents[1]
    git = ["git", "-C", str(repo)]
    commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run([*git, "status", "--porcelain", "src"], capture_output=True, text=True)
    return {
        "tokenomy": commit.stdout.strip() + (" + uncommitted src/" if dirty.stdout.strip() else ""),
        "nproc": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "wrk": subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split("\n")[0],
    }


HEADER = (
    f"{'mode':6} {'server':8} {'conc':>4} │ {'direct':>7} {'gateway':>7} {'gw/dir':>6} │ "
    f"{'dir p50':>7} {'dir p99':>7} │ {'gw p50':>7} {'gw p99':>7} │ {'added':>6} │ "
    f"{'gw CPU':>6} {'gw CPU':>7}"
)
UNITS = (
    f"{'':6} {'':8} {'':>4} │ {'req/s':>7} {'req/s':>7} {'':>6} │ "
    f"{'ms':>7} {'ms':>7} │ {'ms':>7} {'ms':>7} │ {'p50 ms':>6} │ {'%':>6} {'µs/req':>7}"
)


def row(cell: Cell) -> str:
    d, g = cell.direct, cell.gateway
    return (
        f"{cell.mode:6} {cell.server:8} {cell.concurrency:>4} │ {d.rps:>7.0f} {g.rps:>7.0f} "
        f"{cell.ratio:>6.2f} │ {d.p50_ms:>7.2f} {d.p99_ms:>7.2f} │ {g.p50_ms:>7.2f} "
        f"{g.p99_ms:>7.2f} │ {cell.added_p50_ms:>6.2f} │ "
        f"{cell.cpu_percent:>6.0f} {cell.cpu_us_per_request:>7.0f}"
    )


def goals(cells: list[Cell]) -> list[str]:
    """The issue's targets, checked against this run (16 connections; added p50 at 1)."""
    lines = []
    for server in sorted({c.server for c in cells}):
        for mode, rps_goal, added_goal in (("plain", 1500.0, 1.0), ("stream", 750.0, 2.0)):
            by_c = {c.concurrency: c for c in cells if c.server == server and c.mode == mode}
            parts = []
            if 16 in by_c:
                rps = by_c[16].gateway.rps
                verdict = "met" if rps >= rps_goal else "missed"
                parts.append(f"{rps:.0f} req/s at 16 (goal >= {rps_goal:.0f}: {verdict})")
            if 1 in by_c:
                added = by_c[1].added_p50_ms
                verdict = "met" if added < added_goal else "missed"
                parts.append(f"added p50 {added:.2f} ms at 1 (goal < {added_goal:g} ms: {verdict})")
            if parts:
                lines.append(f"  {mode:6} {server:8} " + "; ".join(parts))
    return lines


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per cell (5)")
    parser.add_argument("--warmup", type=int, default=2, help="seconds per target (2)")
    parser.add_argument(
        "--concurrency", default="1,4,16,64", help="wrk connections, comma-separated"
    )
    parser.add_argument(
        "--servers", default="granian,uvicorn", help="gateway HTTP servers, comma-separated"
    )
    parser.add_argument(
        "--stream",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="only streaming (--stream) or only plain (--no-stream); default both",
    )
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="SECONDS",
        help="py-spy each gateway for this long under plain load (see --profile-connections)",
    )
    parser.add_argument(
        "--profile-connections", default="16", help="wrk connections while profiling (16)"
    )
    parser.add_argument(
        "--profile-dir", type=Path, default=Path(__file__).parent / "results", help="raw stacks"
    )
    parser.add_argument("--upstream-cpu", default="0", help="CPU of the mock and wrk (0)")
    parser.add_argument("--wrk-cpu", default=None, help="CPU of wrk (default: --upstream-cpu)")
    parser.add_argument("--gateway-cpu", default="1", help="CPU of the gateway (1)")
    parser.add_argument("--mock-server", default="granian", choices=SERVERS)
    args = parser.parse_args(argv)
    args.wrk_cpu = args.wrk_cpu or args.upstream_cpu
    args.concurrencies = [int(c) for c in args.concurrency.split(",") if c.strip()]
    args.profile_connections = [int(c) for c in args.profile_connections.split(",") if c]
    args.server_list = list(dict.fromkeys(s.strip() for s in args.servers.split(",") if s.strip()))
    unknown = set(args.server_list) - set(SERVERS)
    if unknown:
        parser.error(f"unknown server(s) {sorted(unknown)}; choose from {SERVERS}")
    if min(args.duration, args.warmup) < 1:
        parser.error("wrk runs whole seconds: --duration and --warmup must be >= 1")
    if any(c < 1 for c in args.concurrencies):
        parser.error("concurrency must be >= 1 (wrk needs at least one connection per thread)")
    args.modes = list(MODES) if args.stream is None else ["stream" if args.stream else "plain"]
    return args


@contextmanager
def services() -> Iterator[list[Service]]:
    started: list[Service] = []
    try:
        yield started
    finally:
        for service in reversed(started):
            service.stop()


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            raise SystemExit(f"needs {tool} on PATH (apt-get install {tool})")
    venv_bin = Path(sys.executable).parent
    if not (venv_bin / "tokenomy").exists():
        raise SystemExit(f"run with the project's interpreter: no {venv_bin / 'tokenomy'}")
    host = machine()
    print(
        f"machine: {host['nproc']} CPUs, {host['cpu']}, Python {host['python']}, {host['wrk']}\n"
        f"tokenomy {host['tokenomy']}\n"
        f"mock ({args.mock_server}) and wrk on CPU {args.upstream_cpu}/{args.wrk_cpu}, "
        f"gateway on CPU {args.gateway_cpu}; {args.duration:g} s per cell; "
        f"body: {request_body(False).decode()}"
    )
    cells: list[Cell] = []
    profiles: list[dict[str, Any]] = []
    ledger: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="tokenomy-bench-") as tmp, services() as running:
        workdir = Path(tmp)
        mock_port = free_port()
        mock_url = f"http://127.0.0.1:{mock_port}"
        mock_command = ["taskset", "-c", args.upstream_cpu, sys.executable, "-m", "tokenomy.mock"]
        mock_command += ["--port", str(mock_port), "--server", args.mock_server]
        mock_command += ["--log-level", "warning"]
        mock = Service("mock", mock_command, workdir / "mock.log", workdir)
        running.append(mock)
        mock.wait_ready(mock_url + "/v1/models")
        mock_pins = {pid: ",".join(sorted(affinities(pid))) for pid in mock.pids()}
        if any(cpus != args.upstream_cpu for cpus in mock_pins.values()):
            raise SystemExit(f"mock processes not pinned to CPU {args.upstream_cpu}: {mock_pins}")

        gateways: list[Gateway] = []
        for server in args.server_list:
            gateway = start_gateway(server, mock_url, args.gateway_cpu, workdir, venv_bin)
            running.append(gateway.service)
            gateways.append(gateway)
            sanity_check(gateway, args.modes)
            pins = ", ".join(f"{pid} on CPU {cpus}" for pid, cpus in gateway.pinning.items())
            print(f"gateway ({server}) on {gateway.url}: processes {pins}")

        # The same request both ways; the mock ignores the gateway key it is sent.
        direct_key = gateways[0].key if gateways else "none"
        scripts = {
            mode: lua_script(workdir, mode, request_body(mode == "stream"), direct_key)
            for mode in args.modes
        }
        gateway_scripts = {
            (mode, g.server): lua_script(
                workdir, f"{mode}-{g.server}", request_body(mode == "stream"), g.key
            )
            for mode in args.modes
            for g in gateways
        }

        print("warming up ...", flush=True)
        for mode in args.modes:
            run_wrk(args.wrk_cpu, mock_url + PATH, scripts[mode], 16, args.warmup)
            for g in gateways:
                warm, _ = run_wrk(
                    args.wrk_cpu, g.url + PATH, gateway_scripts[(mode, g.server)], 16, args.warmup
                )
                g.sent += warm.requests

        print()
        print(HEADER)
        print(UNITS, flush=True)
        cell_index = 0
        for mode in args.modes:
            for connections in args.concurrencies:
                direct, _ = run_wrk(
                    args.wrk_cpu, mock_url + PATH, scripts[mode], connections, args.duration
                )
                # Alternate which gateway runs first, so that neither always runs right
                # after the direct measurement.
                order = gateways if cell_index % 2 == 0 else gateways[::-1]
                cell_index += 1
                measured: dict[str, Cell] = {}
                for g in order:
                    before = {other.server: other.service.cpu_seconds() for other in gateways}
                    started = time.monotonic()
                    through, _ = run_wrk(
                        args.wrk_cpu,
                        g.url + PATH,
                        gateway_scripts[(mode, g.server)],
                        connections,
                        args.duration,
                    )
                    wall = time.monotonic() - started
                    after = {other.server: other.service.cpu_seconds() for other in gateways}
                    used = after[g.server] - before[g.server]
                    # The gateways not under load share the core; show that they idle.
                    idle = {
                        name: 100 * (after[name] - before[name]) / wall
                        for name in after
                        if name != g.server
                    }
                    g.sent += through.requests
                    measured[g.server] = Cell(
                        mode, g.server, connections, direct, through, used, wall, idle
                    )
                for g in gateways:
                    cell = measured[g.server]
                    cells.append(cell)
                    print(row(cell), flush=True)
                    for result, where in ((direct, "mock"), (cell.gateway, g.server)):
                        if result.non_2xx or result.socket_errors:
                            print(
                                f"  ! {where}: {result.non_2xx} non-2xx answers, "
                                f"{result.socket_errors} socket errors"
                            )

        if args.profile > 0:
            args.profile_dir.mkdir(parents=True, exist_ok=True)
            for connections in args.profile_connections:
                for g in gateways:
                    plain = gateway_scripts.get(("plain", g.server)) or lua_script(
                        workdir, f"profile-{g.server}", request_body(False), g.key
                    )
                    profiles.append(profile_gateway(g, args, plain, connections))

        for g in gateways:
            g.service.stop()  # drains the ledger queue before the count
            events = ledger_events(g.database)
            ok = events >= g.sent
            ledger.append({"server": g.server, "completed": g.sent, "events": events, "ok": ok})

    checked = goals(cells)
    if checked:
        print("\ngoals (issue): plain >= 1,500 req/s at 16 connections and added p50 < 1 ms at 1;")
        print("               stream within a factor 2 (>= 750 req/s, added p50 < 2 ms)")
        print("\n".join(checked))
    print("\nledger (metering on): events recorded vs requests wrk completed through the gateway")
    for entry in ledger:
        verdict = "ok" if entry["ok"] else "MISSING EVENTS"
        print(
            f"  {entry['server']:8} {entry['events']:>8} events >= {entry['completed']:>8} "
            f"completed: {verdict}"
        )
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        document = {
            "machine": host,
            "settings": {
                "duration_s": args.duration,
                "concurrency": args.concurrencies,
                "servers": args.server_list,
                "modes": args.modes,
                "upstream_cpu": args.upstream_cpu,
                "wrk_cpu": args.wrk_cpu,
                "gateway_cpu": args.gateway_cpu,
                "mock_server": args.mock_server,
                "body": request_body(False).decode(),
            },
            "cells": [
                {
                    "mode": c.mode,
                    "server": c.server,
                    "concurrency": c.concurrency,
                    "direct": asdict(c.direct),
                    "gateway": asdict(c.gateway),
                    "added_p50_ms": c.added_p50_ms,
                    "ratio": c.ratio,
                    "gateway_cpu_percent": c.cpu_percent,
                    "gateway_cpu_us_per_request": c.cpu_us_per_request,
                    "idle_gateways_cpu_percent": c.idle_gateways_cpu_percent,
                }
                for c in cells
            ],
            "ledger": ledger,
            "profiles": profiles,
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")
        print(f"\nwrote {args.json}")
    if not all(entry["ok"] for entry in ledger):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
