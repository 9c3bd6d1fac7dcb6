"""Files: upload and download throughput, peak memory, many small uploads, search on 100k files.

For each size (default 1 MB, 100 MB, 2 GB) one file is uploaded with tus (one PATCH, as
curl streams it: ``curl -T``) and downloaded (``curl -o /dev/null``), against the limits of
this machine measured in the same run: nginx receiving the same file (WebDAV PUT to disk,
no fsync) and serving it (sendfile) are the limits; ``dd`` writing it with fdatasync shows
what the disk itself sustains (SyncStream fsyncs before it acknowledges an upload).
Memory: the server's peak RSS during each transfer (VmHWM, reset before it). Then 100
concurrent small uploads (creation-with-upload, one request each) and name searches over
100,000 files.
Needs curl and nginx (Debian: apt-get install curl nginx); it installs nothing itself.

    python -m benchmarks.files --sizes 1M,100M,2G
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import re
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp

from .harness import (
    create_admin,
    free_port,
    login,
    percentile,
    random_name,
    require,
    save,
    start_node,
    stop,
    table,
    temp_dir,
    wait_port,
    write_config,
)

NGINX_CONF = """
daemon off;
master_process off;
worker_processes 1;
error_log {tmp}/error.log warn;
pid {tmp}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    client_body_temp_path {tmp}/body;
    server {{
        listen 127.0.0.1:{port};
        root {tmp}/www;
        client_max_body_size 0;
        location /up/ {{ dav_methods PUT; create_full_put_path on; }}
    }}
}}
"""
UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def parse_size(text: str) -> int:
    match = re.fullmatch(r"(\d+)([KMG]?)", text.strip().upper())
    if not match:
        raise argparse.ArgumentTypeError(f"not a size: {text}")
    return int(match[1]) * UNITS.get(match[2], 1)


def human(size: int) -> str:
    for unit in ("G", "M", "K"):
        if size >= UNITS[unit] and size % UNITS[unit] == 0:
            return f"{size // UNITS[unit]} {unit}B"
    return f"{size} B"


def make_file(path: Path, size: int) -> None:
    """Random bytes (incompressible), written in 16 MB blocks."""
    block = os.urandom(min(size, 16 << 20))
    with open(path, "wb") as fh:
        left = size
        while left:
            fh.write(block[: min(left, len(block))])
            left -= min(left, len(block))


def reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def peak_rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+)", status)[1]) / 1024  # type: ignore[index]


def curl(*args: str) -> float:
    """Run curl; seconds the transfer took (curl's own clock)."""
    out = subprocess.run(
        ["curl", "-sS", "--fail", "-o", "/dev/null", "-w", "%{time_total}", *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout)


def dd_write(path: Path, size: int) -> float:
    start = time.perf_counter()
    subprocess.run(
        [
            "dd",
            "if=/dev/zero",
            f"of={path}",
            "bs=1M",
            f"count={max(1, size >> 20)}",
            "conv=fdatasync",
            "status=none",
        ],
        check=True,
    )
    elapsed = time.perf_counter() - start
    path.unlink()
    return elapsed


def nginx_transfer(tmp: Path, source: Path) -> tuple[float, float]:
    """(upload s, download s) of ``source`` through nginx on this machine."""
    (tmp / "www" / "up").mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = tmp / "nginx.conf"
    conf.write_text(NGINX_CONF.format(tmp=tmp, port=port))
    proc = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(tmp)])
    try:
        wait_port(port, proc)
        url = f"http://127.0.0.1:{port}/up/{source.name}"
        up = curl("-T", str(source), url)
        down = curl(url)
        (tmp / "www" / "up" / source.name).unlink()
        return up, down
    finally:
        stop(proc)


def metadata(name: str) -> str:
    return "filename " + base64.b64encode(name.encode()).decode()


def tus_upload(url: str, token: str, source: Path) -> tuple[str, float]:
    """POST (create) + one PATCH streaming the whole file; (file id, PATCH seconds)."""
    out = subprocess.run(
        [
            "curl",
            "-sS",
            "--fail",
            "-X",
            "POST",
            "-D",
            "-",
            "-o",
            "/dev/null",
            "-H",
            f"Authorization: Bearer {token}",
            "-H",
            "Tus-Resumable: 1.0.0",
            "-H",
            f"Upload-Length: {source.stat().st_size}",
            "-H",
            f"Upload-Metadata: {metadata(source.name)}",
            url + "/api/files/tus",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    location = re.search(r"(?im)^location:\s*(\S+)", out)[1]  # type: ignore[index]
    seconds = curl(
        "-X",
        "PATCH",
        "-T",
        str(source),
        "-H",
        f"Authorization: Bearer {token}",
        "-H",
        "Tus-Resumable: 1.0.0",
        "-H",
        "Upload-Offset: 0",
        "-H",
        "Content-Type: application/offset+octet-stream",
        url + location,
    )
    return location.rsplit("/", 1)[1], seconds


async def small_uploads(url: str, token: str, count: int, size: int) -> dict[str, Any]:
    """``count`` concurrent uploads of ``size`` bytes, each one creation-with-upload request."""
    body = os.urandom(size)
    run = random_name("")
    headers = {
        "Authorization": f"Bearer {token}",
        "Tus-Resumable": "1.0.0",
        "Upload-Length": str(size),
        "Content-Type": "application/offset+octet-stream",
    }
    latencies: list[float] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=count)) as session:

        async def one(i: int) -> None:
            start = time.perf_counter()
            async with session.post(
                url + "/api/files/tus",
                data=body,
                headers={**headers, "Upload-Metadata": metadata(f"small-{run}-{i}.bin")},
            ) as resp:
                if resp.status != 201:
                    raise RuntimeError(f"upload {i}: {resp.status} {await resp.text()}")
            latencies.append(time.perf_counter() - start)

        start = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(count)))
        wall = time.perf_counter() - start
    return {
        "uploads": count,
        "bytes_each": size,
        "seconds": wall,
        "uploads_per_s": count / wall,
        "p50_ms": 1000 * (percentile(latencies, 50) or 0),
        "p99_ms": 1000 * (percentile(latencies, 99) or 0),
    }


WORDS = [
    "holiday",
    "report",
    "invoice",
    "photo",
    "video",
    "budget",
    "draft",
    "final",
    "scan",
    "notes",
    "meeting",
    "contract",
    "design",
    "backup",
    "music",
    "lecture",
]


def seed_files(db: Path, owner_id: str, count: int) -> None:
    """``count`` file rows for one user, inserted straight into the database (FTS triggers fire)."""
    conn = sqlite3.connect(db)
    now = time.time()
    rows = []
    for i in range(count):
        name = f"{WORDS[i % 16]}_{WORDS[(i // 16) % 16]} {i}.{('pdf', 'jpg', 'mp4', 'txt')[i % 4]}"
        mime = ("application/pdf", "image/jpeg", "video/mp4", "text/plain")[i % 4]
        node_id = f"{0xB0000000 + i:08x}" + "0" * 24
        rows.append(
            (
                node_id,
                owner_id,
                "",
                "file",
                name,
                name.casefold(),
                1000 + i,
                mime,
                "",
                "{}",
                "none",
                owner_id,
                now - i,
                now - i,
            )
        )
    with conn:
        conn.executemany(
            "INSERT INTO files_nodes (id, owner_id, parent_id, kind, name, name_key, size, mime,"
            " sha256, meta, thumbs, created_by, created_at, modified_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    conn.close()


async def search_latency(url: str, token: str, queries: list[str], rounds: int) -> dict[str, Any]:
    timings: dict[str, list[float]] = {q: [] for q in queries}
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession() as session:
        for _ in range(rounds):
            for q in queries:
                start = time.perf_counter()
                async with session.get(url + "/api/files/search?" + q, headers=headers) as resp:
                    body = await resp.json()
                    if resp.status != 200:
                        raise RuntimeError(f"search {q}: {body}")
                timings[q].append(1000 * (time.perf_counter() - start))
    return {
        q: {"p50_ms": percentile(t, 50), "p99_ms": percentile(t, 99)} for q, t in timings.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes", type=lambda s: [parse_size(x) for x in s.split(",")], default="1M,100M,2G"
    )
    parser.add_argument("--small", type=int, default=100, help="concurrent small uploads")
    parser.add_argument("--search-files", type=int, default=100_000)
    args = parser.parse_args()
    if isinstance(args.sizes, str):
        args.sizes = [parse_size(x) for x in args.sizes.split(",")]
    require("curl", "apt-get install curl")
    require("nginx", "apt-get install nginx")
    with temp_dir() as tmp:
        config = write_config(
            tmp, "plugins: {files: {quota_bytes: 0, max_file_bytes: 8589934592}}\n"
        )
        create_admin(config)
        node = start_node(config)
        results: dict[str, Any] = {"transfers": []}
        try:
            token = asyncio.run(login(node.url))
            rows: list[list[Any]] = [
                [
                    "size",
                    "up MB/s",
                    "nginx up",
                    "dd write",
                    "up/nginx",
                    "down MB/s",
                    "nginx down",
                    "down/nginx",
                    "peak RSS MB up/down",
                ]
            ]
            for size in args.sizes:
                source = tmp / f"payload-{size}.bin"
                make_file(source, size)
                mb = size / 1e6
                dd = mb / dd_write(tmp / "dd.bin", size)
                ng_up, ng_down = nginx_transfer(tmp, source)
                reset_peak(node.proc.pid)
                file_id, up_s = tus_upload(node.url, token, source)
                rss_up = peak_rss_mb(node.proc.pid)
                reset_peak(node.proc.pid)
                down_s = curl(
                    "-H",
                    f"Authorization: Bearer {token}",
                    f"{node.url}/api/files/{file_id}/content",
                )
                rss_down = peak_rss_mb(node.proc.pid)
                source.unlink()
                entry = {
                    "size": size,
                    "upload_mb_s": mb / up_s,
                    "nginx_upload_mb_s": mb / ng_up,
                    "dd_write_mb_s": dd,
                    "download_mb_s": mb / down_s,
                    "nginx_download_mb_s": mb / ng_down,
                    "peak_rss_upload_mb": rss_up,
                    "peak_rss_download_mb": rss_down,
                }
                entry["upload_vs_limit"] = entry["upload_mb_s"] / entry["nginx_upload_mb_s"]
                entry["download_vs_limit"] = entry["download_mb_s"] / entry["nginx_download_mb_s"]
                results["transfers"].append(entry)
                rows.append(
                    [
                        human(size),
                        round(entry["upload_mb_s"]),
                        round(mb / ng_up),
                        round(dd),
                        f"{entry['upload_vs_limit']:.2f}",
                        round(entry["download_mb_s"]),
                        round(mb / ng_down),
                        f"{entry['download_vs_limit']:.2f}",
                        f"{rss_up:.0f} / {rss_down:.0f}",
                    ]
                )
                print(table(rows[:1] + rows[-1:]), flush=True)
            small = asyncio.run(small_uploads(node.url, token, args.small, 64 << 10))
            results["small_uploads"] = small
            print()
            print(table(rows))
            print(
                f"\n{small['uploads']} concurrent uploads of 64 KB: {small['uploads_per_s']:.0f}"
                f" uploads/s, p50 {small['p50_ms']:.0f} ms, p99 {small['p99_ms']:.0f} ms",
                flush=True,
            )
        finally:
            stop(node.proc)
        # Search: seed rows into the stopped node's database, then time queries.
        db = tmp / "data" / "syncstream.db"
        owner = (
            sqlite3.connect(db)
            .execute("SELECT id FROM users WHERE username = 'bench'")
            .fetchone()[0]
        )
        start = time.perf_counter()
        seed_files(db, owner, args.search_files)
        seeded = time.perf_counter() - start
        node = start_node(config)
        try:
            token = asyncio.run(login(node.url))
            queries = [
                "q=holiday",
                "q=holiday+rep",
                "q=invoice+final+12",
                "type=video&min_size=50000",
                "q=photo&sort=name&order=asc",
                "after=2020-01-01T00:00:00Z&limit=100",
            ]
            found = asyncio.run(search_latency(node.url, token, queries, 20))
        finally:
            stop(node.proc)
        results["search"] = {"files": args.search_files, "seed_seconds": seeded, "queries": found}
        print(f"\nsearch over {args.search_files} files (50 per page):")
        print(
            table(
                [["query", "p50 ms", "p99 ms"]]
                + [[q, round(v["p50_ms"], 1), round(v["p99_ms"], 1)] for q, v in found.items()]
            )
        )
    save("files", {"args": {k: v for k, v in vars(args).items()}, **results})


if __name__ == "__main__":
    main()
