"""Calls: signaling latency through the server.

``--calls`` direct calls are set up over HTTP (invite, accept). In each, the two peers
bounce an ICE-candidate-sized signal back and forth over their WebSockets: a publish on
``call:<id>`` is checked by the server and forwarded to the peer's ``user:<id>`` topic. The
figure is the time from one peer's publish to the other's receipt (the client's clock on
both ends), p50/p99/max, and signals/s. (SFU capacity comes with the SFU.)

    python -m benchmarks.calls --calls 50 --seconds 10 --pin
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

import aiohttp

from .harness import (
    CpuWindow,
    add_common_args,
    cpus,
    create_admin,
    login,
    percentile,
    pin_self,
    register,
    save,
    start_node,
    stop,
    table,
    temp_dir,
    write_config,
)

CANDIDATE = {
    "candidate": "candidate:1 1 UDP 2130706431 192.0.2.10 54321 typ host generation 0",
    "sdpMid": "0",
    "sdpMLineIndex": 0,
}


class Peer:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse, user_id: str, call_id: str) -> None:
        self.ws, self.user_id, self.call_id = ws, user_id, call_id
        self.other = ""
        self.latencies: list[float] = []

    async def send(self, sequence: int) -> None:
        signal = {"type": "candidate", "candidate": {**CANDIDATE, "usernameFragment":
                  f"{time.perf_counter()!r}:{sequence}"}}  # fmt: skip
        data = {"to": self.other, "signal": signal}
        frame = {"op": "publish", "id": sequence, "topic": f"call:{self.call_id}", "data": data}
        await self.ws.send_str(json.dumps(frame))

    async def run(self, deadline: float, warmup_until: float, starts: bool) -> None:
        if starts:
            await self.send(1)
        async for msg in self.ws:
            frame = json.loads(msg.data)
            data = frame.get("data")
            if (
                frame.get("op") == "event"
                and isinstance(data, dict)
                and data.get("type") == ("call.signal")
            ):
                sent, sequence = data["signal"]["candidate"]["usernameFragment"].split(":")
                if float(sent) >= warmup_until:
                    self.latencies.append((time.perf_counter() - float(sent)) * 1000)
                if time.perf_counter() >= deadline:
                    return
                await self.send(int(sequence) + 1)  # bounce it back
            elif frame.get("op") == "error":
                raise RuntimeError(f"signal refused: {frame}")


async def set_up(session: aiohttp.ClientSession, url: str, count: int) -> list[tuple[Peer, Peer]]:
    pairs = []
    for n in range(count):
        (caller_token, caller_id), (callee_token, callee_id) = [
            await register(session, url, f"{side}{n}") for side in ("caller", "callee")
        ]
        as_caller = {"Authorization": f"Bearer {caller_token}"}
        as_callee = {"Authorization": f"Bearer {callee_token}"}
        invite = {"usernames": [f"callee{n}"]}
        async with session.post(url + "/api/calls", json=invite, headers=as_caller) as resp:
            call_id = (await resp.json())["id"]
        async with session.post(url + f"/api/calls/{call_id}/accept", headers=as_callee) as resp:
            assert resp.status == 200, await resp.text()
        peers = []
        for token, user_id in ((caller_token, caller_id), (callee_token, callee_id)):
            ws = await session.ws_connect(f"{url.replace('http', 'ws')}/ws?token={token}")
            await ws.receive()  # hello
            for topic in (f"user:{user_id}", f"call:{call_id}"):
                await ws.send_str(json.dumps({"op": "subscribe", "id": 0, "topic": topic}))
                await ws.receive()
            peers.append(Peer(ws, user_id, call_id))
        peers[0].other, peers[1].other = callee_id, caller_id
        pairs.append((peers[0], peers[1]))
    return pairs


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with temp_dir() as tmp:
        config = write_config(tmp)
        create_admin(config)
        node = start_node(config, cpus=cpus(args, "server"))
        try:
            await login(node.url)
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
                pairs = await set_up(session, node.url, args.calls)
                start = time.perf_counter()
                deadline = start + args.warmup + args.seconds
                runs = [p.run(deadline, start + args.warmup, i == 0)
                        for pair in pairs for i, p in enumerate(pair)]  # fmt: skip
                with CpuWindow([node.proc.pid]) as cpu:
                    await asyncio.wait([asyncio.ensure_future(r) for r in runs],
                                       timeout=args.warmup + args.seconds + 2)  # fmt: skip
            latencies = sorted(x for pair in pairs for p in pair for x in p.latencies)
        finally:
            stop(node.proc)
    return {
        "calls": args.calls, "signals": len(latencies),
        "signals_per_s": len(latencies) / args.seconds,
        "p50_ms": percentile(latencies, 50), "p99_ms": percentile(latencies, 99),
        "max_ms": latencies[-1] if latencies else None,
        "signals_per_cpu_s": len(latencies) / max(cpu.server_cpu_s, 1e-9),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    add_common_args(parser)
    args = parser.parse_args()
    pin_self(args)
    r = asyncio.run(run(args))
    print(table([
        ["measure", "value"],
        ["calls (two peers each)", r["calls"]],
        ["signals relayed", r["signals"]],
        ["signals/s", round(r["signals_per_s"])],
        ["publish -> peer p50 / p99 / max (ms)",
         f"{r['p50_ms']:.2f} / {r['p99_ms']:.2f} / {r['max_ms']:.2f}"],
        ["signals per server CPU second", round(r["signals_per_cpu_s"])],
    ]))  # fmt: skip
    save("calls", {"args": vars(args), **r})


if __name__ == "__main__":
    main()
