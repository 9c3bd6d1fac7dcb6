"""Shared pieces of the benchmarks: servers as subprocesses, CPU time, scraping, tables.

Everything here talks to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

HERE = Path(__file__).resolve().parent
PEERS = HERE / "peers" / "socketio"
RESULTS = HERE / "results"
PASSWORD = "benchmark-password"
PG_URL = os.environ.get("SYNCSTREAM_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("SYNCSTREAM_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_cpu_seconds() -> float:
    """CPU seconds that processes (user, nice, system) and the hypervisor (steal) took from
    all cores since boot, from /proc/stat; interrupt time (loopback TCP) is left out."""
    user, nice, system, _idle, _iowait, _irq, _softirq, steal = (
        int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
    )
    return (user + nice + system + steal) / CLK_TCK


class CpuWindow:
    """CPU seconds used during a ``with`` block by given server pids, by this process's
    children that were reaped within it (the load client), and by everything else on the
    machine: ``others_cpu_s`` shows how noisy the run was."""

    def __init__(self, pids: Sequence[int]) -> None:
        self.pids = pids
        self.server_cpu_s = self.client_cpu_s = self.others_cpu_s = 0.0

    @staticmethod
    def _rusage(who: int) -> float:
        usage = resource.getrusage(who)
        return usage.ru_utime + usage.ru_stime

    def __enter__(self) -> CpuWindow:
        self._start = (
            machine_cpu_seconds(),
            sum(cpu_seconds(pid) for pid in self.pids),
            self._rusage(resource.RUSAGE_CHILDREN),
            self._rusage(resource.RUSAGE_SELF),
        )
        return self

    def __exit__(self, *exc: object) -> None:
        machine0, server0, children0, self0 = self._start
        self.server_cpu_s = sum(cpu_seconds(pid) for pid in self.pids) - server0
        self.client_cpu_s = self._rusage(resource.RUSAGE_CHILDREN) - children0
        own = self._rusage(resource.RUSAGE_SELF) - self0
        machine = machine_cpu_seconds() - machine0
        self.others_cpu_s = max(0.0, machine - self.server_cpu_s - self.client_cpu_s - own)


def busy_cores(seconds: float = 1.0) -> float:
    """How many cores' worth of CPU the whole machine used over ``seconds``."""
    cpu0, wall0 = machine_cpu_seconds(), time.monotonic()
    time.sleep(seconds)
    return (machine_cpu_seconds() - cpu0) / (time.monotonic() - wall0)


def check_idle(wait: float = 0.0, limit: float = 0.15) -> float:
    """Wait up to ``wait`` s for the machine to be idle; warn if it is not (figures skew)."""
    deadline = time.monotonic() + wait
    busy = busy_cores()
    while busy > limit and time.monotonic() < deadline:
        busy = busy_cores(2.0)
    if busy > limit:
        print(
            f"warning: {busy:.2f} of {os.cpu_count()} cores are busy before the run; "
            "figures will be skewed (see `top`)",
            file=sys.stderr,
            flush=True,
        )
    return busy


def pin_to(cpus: set[int] | None) -> Callable[[], None] | None:
    """A ``preexec_fn`` that pins a child (and every thread it starts) to ``cpus``."""
    if not cpus:
        return None
    return lambda: os.sched_setaffinity(0, cpus)


SERVER_CPUS, CLIENT_CPUS = {0}, {1}


def pin_self(args: argparse.Namespace) -> None:
    """With --pin, this process (a Python load client) runs on the client's CPU."""
    client_cpus = cpus(args, "client")
    if client_cpus:
        os.sched_setaffinity(0, client_cpus)


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """Options every benchmark has: --pin, --retries and --wait-idle."""
    parser.add_argument(
        "--pin",
        action="store_true",
        help="pin the server to CPU 0 and the load generator to CPU 1 (one core each)",
    )
    parser.add_argument(
        "--retries",
        type=int,
        default=2,
        choices=range(6),
        metavar="N",
        help="measure a run again up to N times while other processes disturb it (default 2)",
    )
    parser.add_argument(
        "--wait-idle",
        type=float,
        default=0.0,
        metavar="S",
        help="before each run, wait up to S seconds for the machine to be idle",
    )


NOISY_CPU_S = 0.5  # other processes' CPU during a run above which it is measured again


async def quiet_run(
    run: Callable[[], Awaitable[dict[str, Any]]], args: argparse.Namespace
) -> dict[str, Any]:
    """``run()`` again (up to --retries times) while other processes took more than
    NOISY_CPU_S of CPU during it; returns the quietest attempt, marked ``noisy`` if still so."""
    best: dict[str, Any] | None = None
    for attempt in range(1 + args.retries):
        result = await run()
        result["attempt"] = attempt + 1
        if best is None or result["others_cpu_s"] < best["others_cpu_s"]:
            best = result
        if result["others_cpu_s"] <= NOISY_CPU_S:
            break
        print(
            f"    (other processes took {result['others_cpu_s']:.1f} CPU s during that run"
            + ("; again)" if attempt < args.retries else ")"),
            flush=True,
        )
    assert best is not None
    best["noisy"] = best["others_cpu_s"] > NOISY_CPU_S
    return best


def cpus(args: argparse.Namespace, role: str) -> set[int] | None:
    """The CPUs a ``role`` ("server" or "client") is pinned to, None without --pin."""
    if not args.pin:
        return None
    return SERVER_CPUS if role == "server" else CLIENT_CPUS


def percentile(values: Sequence[float], pct: float) -> float | None:
    """Nearest-rank percentile (``pct`` in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * pct // 100))  # ceil
    return ordered[int(rank) - 1]


def require(tool: str, install: str) -> None:
    """Exit with how to install ``tool`` if it is not on PATH (benchmarks install nothing)."""
    if shutil.which(tool) is None:
        raise SystemExit(f"{tool} is needed: {install}")


def wait_port(port: int, proc: subprocess.Popen[Any], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


def wait_healthy(url: str, proc: subprocess.Popen[Any], timeout: float = 30.0) -> None:
    """Poll ``url`` + /healthz until it answers 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url}/healthz never answered 200")


@dataclass
class Node:
    """A `syncstream serve` process."""

    proc: subprocess.Popen[Any]
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def write_config(directory: Path, extra: str = "") -> Path:
    """A benchmark config in ``directory``: no RTMP, quiet logs, client rate limits lifted."""
    config = directory / "bench.yaml"
    config.write_text(
        f"data_dir: {directory / 'data'}\n"
        "server: {host: 127.0.0.1}\n"
        "rtmp: {enabled: false}\n"
        "logging: {level: warning, access_log: false}\n"
        "auth: {login_per_ip_per_minute: 100000}\n"
        "realtime: {rate_per_second: 1000000, rate_burst: 1000000, send_buffer_bytes: 16777216}\n"
        + extra
    )
    return config


def cluster_config(schema: str, prefix: str) -> str:
    """Config lines for a node sharing PostgreSQL (its own schema) and Redis (its own prefix)."""
    return (
        f"store: {{url: '{PG_URL}', schema: {schema}}}\n"
        f"cluster: {{redis_url: '{REDIS_URL}', prefix: {prefix}}}\n"
    )


def start_node(
    config: Path, name: str = "", env: dict[str, str] | None = None, cpus: set[int] | None = None
) -> Node:
    """``syncstream serve`` on a free port (set through the environment), once /healthz is 200.

    ``env`` adds settings as ``SYNCSTREAM_SECTION__KEY`` variables; ``cpus`` pins the process.
    """
    port = free_port()
    full_env = {**os.environ, **(env or {}), "SYNCSTREAM_SERVER__PORT": str(port)}
    if name:
        full_env["SYNCSTREAM_CLUSTER__NODE_ID"] = name
    proc = subprocess.Popen(
        [sys.executable, "-m", "syncstream", "serve", "--config", str(config)],
        env=full_env,
        stdout=subprocess.DEVNULL,
        preexec_fn=pin_to(cpus),
    )
    try:
        wait_port(port, proc)
        node = Node(proc, port)
        wait_healthy(node.url, proc)
    except BaseException:
        stop(proc)
        raise
    return node


def stop(proc: subprocess.Popen[Any]) -> None:
    """SIGTERM, then SIGKILL after 15 s."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def create_admin(config: Path, name: str = "bench") -> None:
    """``syncstream user create NAME --admin --password-stdin`` with :data:`PASSWORD`."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "syncstream",
            "user",
            "create",
            name,
            "--admin",
            "--password-stdin",
            "--config",
            str(config),
        ],
        input=PASSWORD + "\n",
        text=True,
        capture_output=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"creating the admin failed: {(done.stderr or done.stdout)[-2000:]}")


async def login(url: str, name: str = "bench") -> str:
    """``POST /api/auth/login``; returns the bearer token."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            url + "/api/auth/login", json={"username": name, "password": PASSWORD}
        ) as resp,
    ):
        body = await resp.json()
        if resp.status != 200:
            raise RuntimeError(f"login failed: {body}")
        return str(body["token"])


LAG_METRICS = ("syncstream_event_loop_lag_max_seconds", "syncstream_event_loop_lag_seconds")


async def register(session: aiohttp.ClientSession, url: str, name: str) -> tuple[str, str]:
    """A new account on the node: (token, user id)."""
    async with session.post(
        url + "/api/auth/register", json={"username": name, "password": "benchmark-password"}
    ) as resp:
        body = await resp.json()
    return str(body["token"]), str(body["user"]["id"])


def read_lag(metrics_text: str) -> float | None:
    """The worst lag a /metrics page shows: the max-since-last-scrape gauge, else the latest."""
    values = {}
    for line in metrics_text.splitlines():
        name, _, value = line.partition(" ")
        if name in LAG_METRICS:
            values[name] = float(value)
    return next((values[name] for name in LAG_METRICS if name in values), None)


def gc_pauses(metrics_text: str) -> dict[str, dict[str, float]]:
    """Per generation, from ``syncstream_gc_pause_seconds``: collections, ms in all, and
    collections longer than 2 and 5 ms."""
    out: dict[str, dict[str, float]] = {}
    for line in metrics_text.splitlines():
        name, _, value = line.rpartition(" ")
        if not name.startswith("syncstream_gc_pause_seconds_"):
            continue
        generation = name.split('generation="')[1].split('"')[0]
        row = out.setdefault(generation, {"count": 0.0, "sum": 0.0, "le_2ms": 0.0, "le_5ms": 0.0})
        if "_count{" in name:
            row["count"] = float(value)
        elif "_sum{" in name:
            row["sum"] = float(value)
        elif 'le="0.002"' in name:
            row["le_2ms"] = float(value)
        elif 'le="0.005"' in name:
            row["le_5ms"] = float(value)
    return {
        gen: {"count": r["count"], "ms": r["sum"] * 1000, "over_2ms": r["count"] - r["le_2ms"],
              "over_5ms": r["count"] - r["le_5ms"]}
        for gen, r in out.items()
    }  # fmt: skip


class LagSampler:
    """Scrapes the event-loop lag gauges from nodes' /metrics while a run goes on."""

    def __init__(self, urls: Sequence[str], interval: float = 0.5) -> None:
        self.urls = urls
        self.interval = interval
        self.samples: list[float] = []
        self.scrape_errors = 0
        self._task: asyncio.Task[None] | None = None

    @property
    def max_lag(self) -> float:
        return max(self.samples, default=0.0)

    def summary_ms(self) -> dict[str, float | None]:
        """Worst and p50 lag in ms (None when nothing was scraped)."""
        if not self.samples:
            return {"max_loop_lag_ms": None, "p50_loop_lag_ms": None}
        p50 = percentile(self.samples, 50)
        return {
            "max_loop_lag_ms": self.max_lag * 1000,
            "p50_loop_lag_ms": p50 * 1000 if p50 is not None else None,
        }

    async def _run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=5)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                for url in self.urls:
                    try:
                        async with session.get(url + "/metrics") as resp:
                            lag = read_lag(await resp.text())
                        if lag is not None:
                            self.samples.append(lag)
                    except (TimeoutError, aiohttp.ClientError):
                        self.scrape_errors += 1
                await asyncio.sleep(self.interval)

    def __enter__(self) -> LagSampler:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()


def ensure_node_modules() -> None:
    """``npm ci`` in peers/socketio/ (from the committed lockfile) the first time."""
    require("node", "Node 20 + npm (Debian: apt-get install nodejs npm)")
    if not (PEERS / "node_modules").is_dir():
        require("npm", "Node 20 + npm (Debian: apt-get install nodejs npm)")
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=PEERS, check=True)


@contextmanager
def temp_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="syncstream-bench-") as name:
        yield Path(name)


def random_name(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(4)}"


def table(rows: Sequence[Sequence[Any]]) -> str:
    """Right-aligned columns; the first row is the header."""
    cells = [[f"{c:.3g}" if isinstance(c, float) else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(cells[0]))]
    return "\n".join("  ".join(c.rjust(widths[i]) for i, c in enumerate(r)) for r in cells)


def save(name: str, result: Any) -> Path:
    """Write ``result`` to benchmarks/results/<name>-<timestamp>.json (git-ignored)."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2))
    return path
