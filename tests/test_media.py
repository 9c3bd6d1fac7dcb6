"""Media jobs end to end: real FFmpeg on files made by FFmpeg's lavfi sources, through the
files plugin, with progress over the realtime gateway."""

from __future__ import annotations

import asyncio
import io
import os
import signal
from pathlib import Path
from typing import Any

import aiohttp
import av
import pytest

from syncstream.bus import Event

from .conftest import S3Server
from .files_support import download, tus_upload
from .support import (
    Client,
    NodeProcess,
    cluster_yaml,
    eventually,
    pg_schema,
    process_tree,
    running,
    spawn_node,
    survivors,
)

pytestmark = pytest.mark.slow


async def quick_clip(path: Path, seconds: float, size: str) -> bytes:
    """A clip encoded as fast as libx264 goes (for inputs that only need to be long)."""
    return await make_media(
        path, seconds, "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", size=size
    )


async def make_media(path: Path, seconds: float = 3, *args: str, size: str = "320x240") -> bytes:
    """A clip from lavfi sources (test pattern + tone), encoded as ``args`` say."""
    proc = await asyncio.create_subprocess_exec(
        "ffmpeg", "-v", "error", "-y",
        "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=25",
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
        "-t", str(seconds), *args, str(path),
    )  # fmt: skip
    assert await proc.wait() == 0
    return path.read_bytes()


def facts(data: bytes) -> dict[str, Any]:
    with av.open(io.BytesIO(data)) as container:
        out: dict[str, Any] = {"duration": (container.duration or 0) / av.time_base}
        for stream in container.streams:
            ctx: Any = stream.codec_context
            if stream.type == "video":
                out["video"] = (ctx.name, ctx.width, ctx.height)
                out["fps"] = float(stream.average_rate or 0)
            elif stream.type == "audio":
                out["audio"] = ctx.codec.canonical_name
        return out


async def wait_job(c: Client, token: str, job_id: str, timeout: float = 120) -> dict[str, Any]:
    """The job once it finished (done, failed or canceled)."""

    async def finished() -> dict[str, Any] | None:
        status, job, _ = await c.call("GET", f"/api/media/jobs/{job_id}", token)
        assert status == 200, job
        return dict(job) if job["status"] in ("done", "failed", "canceled") else None

    what = f"job {job_id} to finish"
    job: dict[str, Any] = await eventually(finished, what, timeout=timeout, every=0.1)
    return job


async def submit(c: Client, token: str, file_id: str, **body: Any) -> dict[str, Any]:
    status, job, _ = await c.call(
        "POST", "/api/media/jobs", token, json={"file_id": file_id, **body}
    )
    assert status == 201, job
    return dict(job)


async def run_job(c: Client, token: str, file_id: str, **body: Any) -> dict[str, Any]:
    job = await submit(c, token, file_id, **body)
    done = await wait_job(c, token, job["id"])
    assert done["status"] == "done", done
    return done


async def output(c: Client, token: str, job: dict[str, Any], index: int = 0) -> bytes:
    status, data, _ = await download(
        c, token, f"/api/files/{job['result']['files'][index]['id']}/content"
    )
    assert status == 200
    return data


async def test_convert_mov_to_mp4_with_progress_events(tmp_path: Path) -> None:
    async with running(tmp_path, **{"plugins.media.progress_seconds": 0.05}) as c:
        events: list[Event] = []
        assert c.server is not None and c.server.core is not None
        c.server.core.bus.listen("media.job.*", events.append)
        token = await c.register("alice")
        _, folder, _ = await c.call("POST", "/api/files/folders", token, json={"name": "Clips"})
        data = await make_media(tmp_path / "in.mov", 6, "-c:v", "mpeg4", "-c:a", "pcm_s16le")
        file_id = await tus_upload(c, token, data, "holiday.mov", parent_id=folder["id"])
        sock = await c.ws(token)
        reply = await sock.request("subscribe", f"media:{sock.hello['user']['id']}")
        assert reply["op"] == "reply"
        job = await run_job(c, token, file_id, preset="web-mp4", operation={"speed": "ultrafast"})
        assert job["progress"] == 100 and job["operation"]["container"] == "mp4"
        (made,) = job["result"]["files"]
        assert made["name"] == "holiday.mp4" and made["parent_id"] == folder["id"]
        result = facts(await output(c, token, job))
        assert result["video"] == ("h264", 320, 240) and result["audio"] == "aac"
        assert abs(result["duration"] - 6) < 0.2
        mp4 = await output(c, token, job)
        assert mp4.index(b"moov") < mp4.index(b"mdat"), "faststart"
        seen: list[dict[str, Any]] = []
        while not any(f["data"].get("type") == "done" for f in seen):
            frame = await sock.recv(10)
            if frame["op"] == "event":
                seen.append(frame)
        kinds = [f["data"]["type"] for f in seen]
        assert kinds[0] == "started" and kinds[-1] == "done" and "progress" in kinds
        percents = [f["data"]["progress"] for f in seen if f["data"]["type"] == "progress"]
        assert percents == sorted(percents) and percents[-1] == 100
        assert {"media.job.queued", "media.job.started", "media.job.done"} <= {
            e.type for e in events
        }
        await sock.ws.close()


async def test_extract_audio_copy_and_encode(tmp_path: Path) -> None:
    async with running(tmp_path) as c:
        token = await c.register("alice")
        data = await make_media(tmp_path / "in.mp4", 3, "-c:v", "libx264", "-c:a", "aac")
        file_id = await tus_upload(c, token, data, "talk.mp4")
        job = await run_job(c, token, file_id, operation={"op": "extract_audio"})
        assert job["result"]["files"][0]["name"] == "talk.m4a"
        found = facts(await output(c, token, job))
        assert found["audio"] == "aac" and "video" not in found
        job = await run_job(c, token, file_id, preset="podcast")
        assert job["result"]["files"][0]["name"] == "talk.mp3"
        assert facts(await output(c, token, job))["audio"] == "mp3"


async def test_reencode_webm_scaled_two_pass_and_fps(tmp_path: Path) -> None:
    async with running(tmp_path) as c:
        token = await c.register("alice")
        data = await make_media(tmp_path / "in.mkv", 2, "-c:v", "libx264", "-c:a", "aac")
        file_id = await tus_upload(c, token, data, "big.mkv")
        job = await run_job(
            c,
            token,
            file_id,
            operation={
                "op": "convert", "container": "webm", "height": 120, "fps": 10,
                "video_kbps": 300, "two_pass": True, "speed": "ultrafast",
            },
        )  # fmt: skip
        found = facts(await output(c, token, job))
        assert found["video"] == ("vp9", 160, 120) and found["audio"] == "opus"
        assert abs(found["fps"] - 10) < 0.5


async def test_trim_snapshot_contact_sheet_faststart_and_probe(tmp_path: Path) -> None:
    async with running(tmp_path) as c:
        token = await c.register("alice")
        data = await make_media(
            tmp_path / "in.mp4", 8, "-c:v", "libx264", "-g", "25", "-c:a", "aac"
        )
        file_id = await tus_upload(c, token, data, "match.mp4")
        job = await run_job(c, token, file_id, operation={"op": "trim", "start": 2, "end": 5})
        assert abs(facts(await output(c, token, job))["duration"] - 3) < 0.3
        assert job["result"]["files"][0]["name"] == "match (clip 00.00.02-00.00.05).mp4"
        job = await run_job(
            c,
            token,
            file_id,
            operation={"op": "trim", "start": 1.5, "duration": 2, "accurate": True},
        )
        assert abs(facts(await output(c, token, job))["duration"] - 2) < 0.15

        from PIL import Image

        job = await run_job(c, token, file_id, operation={"op": "snapshot", "at": 4, "width": 160})
        assert Image.open(io.BytesIO(await output(c, token, job))).size == (160, 120)
        job = await run_job(c, token, file_id, preset="contact-sheet", operation={"width": 640})
        sheet = Image.open(io.BytesIO(await output(c, token, job)))
        assert sheet.size == (640, 480), "4 x 4 tiles of 160 x 120"

        job = await run_job(c, token, file_id, operation={"op": "faststart"})
        fast = await output(c, token, job)
        assert fast.index(b"moov") < fast.index(b"mdat")
        job = await run_job(c, token, file_id, operation={"op": "probe"})
        info = job["result"]["info"]
        assert abs(info["duration"] - 8) < 0.1 and info["format"].startswith("mov")
        kinds = {s["type"]: s for s in info["streams"]}
        assert kinds["video"]["codec"] == "h264" and kinds["video"]["width"] == 320
        assert kinds["audio"]["codec"] == "aac" and kinds["audio"]["sample_rate"] == 44100


async def test_hls_vod_package_is_served(tmp_path: Path) -> None:
    async with running(tmp_path) as c:
        token = await c.register("alice")
        data = await make_media(
            tmp_path / "in.mp4", 6, "-c:v", "libx264", "-c:a", "aac", size="640x360"
        )
        file_id = await tus_upload(c, token, data, "film.mp4")
        ladder = [
            {"height": 360, "video_kbps": 600},
            {"height": 180, "video_kbps": 200},
            {"height": 720, "video_kbps": 2000},
        ]
        job = await run_job(
            c, token, file_id, operation={"op": "hls", "renditions": ladder, "segment_seconds": 2}
        )
        package = job["result"]["package"]
        assert package["renditions"] == ["180p", "360p"], "no upscaling to 720p"
        base = package["url"].rsplit("/", 1)[0]
        status, master, resp = await c.call("GET", package["url"])
        assert status == 200 and resp.content_type == "application/vnd.apple.mpegurl"
        assert master.count("#EXT-X-STREAM-INF") == 2 and "RESOLUTION=640x360" in master
        status, variant, _ = await c.call("GET", f"{base}/360p/index.m3u8")
        assert "#EXT-X-PLAYLIST-TYPE:VOD" in variant and "#EXT-X-ENDLIST" in variant
        init_name = variant.split('#EXT-X-MAP:URI="', 1)[1].split('"', 1)[0]
        segments = [line for line in variant.splitlines() if line.endswith(".m4s")]
        assert len(segments) == 3
        async with c.session.get(c.url(f"{base}/360p/{init_name}")) as resp:
            init = await resp.read()
        async with c.session.get(c.url(f"{base}/360p/{segments[0]}")) as resp:
            assert resp.status == 200
            segment = await resp.read()
        found = facts(init + segment)
        assert found["video"] == ("h264", 640, 360)
        status, _, _ = await c.call("GET", package["url"].replace(package["token"], "x" * 24))
        assert status == 404
        status, _, _ = await c.call("GET", f"{base}/../../{job['id']}/master.m3u8")
        assert status == 404
        status, _, _ = await c.call("DELETE", f"/api/media/jobs/{job['id']}", token)
        assert status == 204
        status, _, _ = await c.call("GET", package["url"])
        assert status == 404, "the package went with its job"
        status, _, _ = await c.call("GET", f"/api/media/jobs/{job['id']}", token)
        assert status == 404


async def test_cancel_kills_ffmpeg_and_stores_nothing(tmp_path: Path) -> None:
    async with running(tmp_path) as c:
        token = await c.register("alice")
        data = await quick_clip(tmp_path / "in.mp4", 40, "1280x720")
        file_id = await tus_upload(c, token, data, "long.mp4")
        job = await submit(
            c, token, file_id, operation={"op": "convert", "container": "webm", "speed": "veryslow"}
        )

        async def encoding() -> bool:
            _, found, _ = await c.call("GET", f"/api/media/jobs/{job['id']}", token)
            return bool(found["status"] == "running" and found["progress"] > 0)

        await eventually(encoding, "the job to be encoding", timeout=60)
        # This server's own encoder (it runs in this process), never another test's.
        encoders = {
            pid: who for pid, who in process_tree(os.getpid()).items() if "libvpx-vp9" in who
        }
        assert len(encoders) == 1, encoders
        status, job, _ = await c.call("POST", f"/api/media/jobs/{job['id']}/cancel", token)
        assert status == 200 and job["status"] == "canceled"
        job = await wait_job(c, token, job["id"])
        assert job["status"] == "canceled" and job["error"]["code"] == "canceled"
        await eventually(lambda: not survivors(encoders), "the encoder to be killed", timeout=30)
        _, page, _ = await c.call("GET", "/api/files", token)
        assert [i["name"] for i in page["items"]] == ["long.mp4"], "no half-written output"
        status, body, _ = await c.call("POST", f"/api/media/jobs/{job['id']}/cancel", token)
        assert status == 409 and body["code"] == "job_finished"
        status, job, _ = await c.call("POST", f"/api/media/jobs/{job['id']}/retry", token, json={})
        assert status == 200 and job["status"] in ("queued", "running")
        await c.call("POST", f"/api/media/jobs/{job['id']}/cancel", token)


async def test_bad_inputs_fail_with_reasons(tmp_path: Path) -> None:
    overrides = {
        "plugins.media.max_pixels": 640 * 480,
        "plugins.media.min_timeout_seconds": 2,
        "plugins.media.timeout_factor": 0.1,
    }
    async with running(tmp_path, **overrides) as c:
        token = await c.register("alice")
        bob = await c.register("bob")
        good = await make_media(tmp_path / "ok.mp4", 2, "-c:v", "libx264", "-c:a", "aac")
        good_id = await tus_upload(c, token, good, "ok.mp4")
        cases = {
            "empty.mp4": (b"", "empty_input"),
            "notes.txt": (b"just some words, not media\n" * 20, "not_media"),
            "half.mp4": (good[: len(good) // 3], None),
            "list.m3u8": (b"#EXTM3U\n#EXTINF:1,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n", None),
        }
        for name, (data, code) in cases.items():
            file_id = await tus_upload(c, token, data, name)
            job = await wait_job(
                c, token, (await submit(c, token, file_id, preset="web-mp4"))["id"]
            )
            assert job["status"] == "failed", (name, job)
            assert job["error"]["detail"] and str(tmp_path) not in job["error"]["detail"]
            if code:
                assert job["error"]["code"] == code, (name, job["error"])
        huge = await make_media(
            tmp_path / "huge.mp4", 1, "-c:v", "libx264", "-preset", "ultrafast", size="1920x1080"
        )
        job = await wait_job(
            c,
            token,
            (
                await submit(
                    c, token, await tus_upload(c, token, huge, "huge.mp4"), preset="web-mp4"
                )
            )["id"],
        )
        assert job["error"]["code"] == "media_too_large"
        # The probe sees the first picture size; FFmpeg's decoders refuse the later, larger one.
        small = await make_media(
            tmp_path / "small.ts", 2, "-c:v", "libx264", "-preset", "ultrafast", size="320x240"
        )
        large = await make_media(
            tmp_path / "large.ts", 2, "-c:v", "libx264", "-preset", "ultrafast", size="1280x960"
        )
        grows = await tus_upload(c, token, small + large, "grows.ts")
        job = await wait_job(c, token, (await submit(c, token, grows, preset="web-mp4"))["id"])
        assert job["status"] == "failed" and job["error"]["code"] == "media_too_large", job
        slow = await make_media(
            tmp_path / "slow.mp4", 20, "-c:v", "libx264", "-preset", "ultrafast", size="640x480"
        )
        slow_id = await tus_upload(c, token, slow, "slow.mp4")
        job = await wait_job(
            c,
            token,
            (
                await submit(
                    c,
                    token,
                    slow_id,
                    operation={"op": "convert", "container": "webm", "speed": "veryslow"},
                )
            )["id"],
        )
        assert job["error"]["code"] == "timeout", job

        for body, code in (
            ({"preset": "nope"}, "unknown_preset"),
            ({}, "operation_required"),
            (
                {"operation": {"op": "convert", "container": "webm", "video_codec": "h264"}},
                "validation_failed",
            ),
            (
                {"operation": {"op": "convert", "container": "mp4", "two_pass": True}},
                "validation_failed",
            ),
            (
                {"operation": {"op": "convert", "container": "mp4", "video_codec": "-vf"}},
                "validation_failed",
            ),
            ({"operation": {"op": "rm -rf"}}, "validation_failed"),
            ({"operation": {"op": "trim", "start": 5}}, "validation_failed"),
        ):
            status, problem, _ = await c.call(
                "POST", "/api/media/jobs", token, json={"file_id": good_id, **body}
            )
            assert status == 422 and problem["code"] == code, (body, problem)
        status, problem, _ = await c.call(
            "POST", "/api/media/jobs", bob, json={"file_id": good_id, "preset": "web-mp4"}
        )
        assert status == 404, "others' files are not inputs"
        _, mine, _ = await c.call("GET", "/api/media/jobs", token)
        status, _, _ = await c.call("GET", f"/api/media/jobs/{mine['jobs'][0]['id']}", bob)
        assert status == 404


async def test_idempotency_keys_belong_to_their_user(tmp_path: Path) -> None:
    """Two users sending the same Idempotency-Key get a job each; a replay by the same user
    answers the original job and queues nothing."""
    async with running(tmp_path) as c:
        alice, bob = await c.register("alice"), await c.register("bob")
        data = await make_media(tmp_path / "in.mp4", 1, "-c:v", "libx264", "-c:a", "aac")
        files = {t: await tus_upload(c, t, data, "in.mp4") for t in (alice, bob)}

        async def post(token: str, key: str, **body: Any) -> tuple[int, Any]:
            status, job, _ = await c.call(
                "POST",
                "/api/media/jobs",
                token,
                json={"file_id": files[token], "operation": {"op": "probe"}, **body},
                headers={"Idempotency-Key": key},
            )
            return status, job

        status, first = await post(alice, "job-1")
        assert status == 201
        status, replay = await post(alice, "job-1")
        assert status == 201 and replay["id"] == first["id"]
        status, theirs = await post(bob, "job-1")
        assert status == 201 and theirs["id"] != first["id"]
        assert (await wait_job(c, bob, theirs["id"]))["status"] == "done"
        status, body = await post(alice, "job-1", priority=3)
        assert status == 422 and body["code"] == "idempotency_key_reused"
        status, body = await post(alice, "bad key")
        assert status == 422 and body["code"] == "invalid_idempotency_key"
        at_once = await asyncio.gather(*(post(bob, "at-once") for _ in range(4)))
        assert len({job["id"] for _, job in at_once}) == 1, at_once
        await wait_job(c, bob, at_once[0][1]["id"])
        _, mine, _ = await c.call("GET", "/api/media/jobs", alice)
        assert [j["id"] for j in mine["jobs"]] == [first["id"]], "the replay queued nothing"
        status, _, _ = await c.call("GET", f"/api/media/jobs/{first['id']}", bob)
        assert status == 404


async def test_priorities_and_per_user_limits(tmp_path: Path) -> None:
    overrides = {"plugins.media.concurrency": 1, "plugins.media.per_user_queued": 4}
    async with running(tmp_path, **overrides) as c:
        token = await c.register("alice")
        data = await make_media(tmp_path / "in.mp4", 2, "-c:v", "libx264", "-c:a", "aac")
        file_id = await tus_upload(c, token, data, "a.mp4")
        slow = await quick_clip(tmp_path / "slow.mp4", 20, "640x480")
        slow_id = await tus_upload(c, token, slow, "slow.mp4")
        first = await submit(
            c,
            token,
            slow_id,
            operation={"op": "convert", "container": "mp4", "speed": "medium", "height": 240},
        )
        low = await submit(c, token, file_id, operation={"op": "probe"}, priority=-5)
        high = await submit(c, token, file_id, operation={"op": "probe"}, priority=5)
        await submit(c, token, file_id, operation={"op": "probe"})
        status, problem, _ = await c.call(
            "POST", "/api/media/jobs", token, json={"file_id": file_id, "preset": "podcast"}
        )
        assert status == 429 and problem["code"] == "too_many_jobs"
        jobs = [await wait_job(c, token, j["id"], 120) for j in (first, low, high)]
        assert all(j["status"] == "done" for j in jobs)
        assert jobs[2]["started_at"] < jobs[1]["started_at"], "higher priority ran first"
        assert jobs[0]["finished_at"] <= jobs[2]["started_at"], "one at a time"


async def test_encoders_and_presets_are_listed(tmp_path: Path) -> None:
    async with running(tmp_path) as c:
        token = await c.register("alice")
        _, enc, _ = await c.call("GET", "/api/media/encoders", token)
        assert enc["video"]["h264"] in ("libx264", "h264_nvenc", "h264_vaapi", "h264_qsv")
        assert set(enc["tried"]) <= {"nvenc", "vaapi", "qsv"}
        if enc["hardware"] == "software":
            assert all(reason != "works" for reason in enc["tried"].values())
        _, presets, _ = await c.call("GET", "/api/media/presets", token)
        assert presets["presets"]["hls-abr"] == {"op": "hls"}


async def test_kill_9_takes_the_nodes_children_and_a_restart_retries_cleanly(
    tmp_path: Path,
) -> None:
    """kill -9 of a node running a job: its FFmpeg and its worker processes die with it;
    the restarted node clears the stale scratch space and runs the job again."""
    data_dir = tmp_path / "data"
    config = tmp_path / "node.yaml"
    config.write_text(
        f"data_dir: {data_dir}\nrtmp: {{enabled: false}}\n"
        "logging: {level: warning, access_log: false}\n"
    )
    work = data_dir / "plugins" / "media" / "work"
    scratch = data_dir / "plugins" / "files" / "scratch"
    stale_job = "0" * 32
    data = await quick_clip(tmp_path / "in.mp4", 15, "640x480")
    children: dict[int, str] = {}
    node = spawn_node(config)
    try:
        await node.wait_ready()
        async with aiohttp.ClientSession() as session:
            c = Client(node.base, session)
            token = await c.register("alice")
            file_id = await tus_upload(c, token, data, "in.mp4")
            job = await submit(
                c,
                token,
                file_id,
                operation={"op": "convert", "container": "mp4", "speed": "slow", "height": 360},
            )

            async def encoding() -> bool:
                _, found, _ = await c.call("GET", f"/api/media/jobs/{job['id']}", token)
                return bool(found["status"] == "running" and found["progress"] > 0)

            await eventually(encoding, "the job to be encoding", timeout=60)
            (scratch / "stale-thumbs").mkdir(parents=True)
            (work / stale_job).mkdir(parents=True)
            children = process_tree(node.proc.pid)
            kinds = " ".join(children.values())
            assert "ffmpeg" in kinds and "multiprocessing" in kinds, children
            os.kill(node.proc.pid, signal.SIGKILL)
            node.proc.wait()
        await eventually(
            lambda: not survivors(children),
            f"the children to die: {survivors(children)}",
            timeout=30,
        )
        assert (work / job["id"]).exists(), "the killed job left its scratch behind"
        node = spawn_node(config, port=node.port)
        await node.wait_ready()
        assert not (scratch / "stale-thumbs").exists() and not (work / stale_job).exists()
        async with aiohttp.ClientSession() as session:
            c = Client(node.base, session)
            job = await wait_job(c, await c.login("alice"), job["id"], 120)
            assert job["status"] == "done" and job["attempts"] == 2, job
            assert facts(await output(c, await c.login("alice"), job))["video"][2] == 360
    finally:
        node.stop()
        for pid in survivors(children):  # only if the test failed: never leave them running
            os.kill(pid, signal.SIGKILL)


@pytest.mark.postgres
@pytest.mark.redis
async def test_cluster_nodes_share_the_queue_through_s3_storage(
    tmp_path: Path, s3_server: S3Server
) -> None:
    """Two nodes with their own disks, sharing PostgreSQL, Redis and an S3 bucket: jobs
    queued on one node run on both, inputs and outputs travel through the bucket."""
    async with pg_schema() as schema:
        config = tmp_path / "cluster.yaml"
        config.write_text(
            cluster_yaml(
                schema,
                "plugins:\n"
                f"  files: {{storage: s3, s3: {{endpoint: '{s3_server.endpoint}', bucket: files,"
                f" access_key: {s3_server.access_key}, secret_key: {s3_server.secret_key}}}}}\n"
                "  media: {concurrency: 1, per_user_running: 4}\n",
            )
        )
        nodes: list[NodeProcess] = []
        try:
            for name in ("node-a", "node-b"):
                env = {
                    "SYNCSTREAM_CLUSTER__NODE_ID": name,
                    "SYNCSTREAM_DATA_DIR": str(tmp_path / name),
                }
                nodes.append(spawn_node(config, env))
            for node in nodes:
                await node.wait_ready()
            async with aiohttp.ClientSession() as session:
                a, b = (Client(node.base, session) for node in nodes)
                token = await a.register("alice")
                data = await make_media(tmp_path / "in.mp4", 4, "-c:v", "libx264", "-c:a", "aac")
                file_id = await tus_upload(a, token, data, "in.mp4")
                op = {"op": "convert", "container": "webm", "speed": "fast", "height": 120}
                jobs = [await submit(a, token, file_id, operation=op) for _ in range(2)]
                done = [await wait_job(b, token, job["id"], 120) for job in jobs]
                assert [j["status"] for j in done] == ["done", "done"], done
                assert {j["node"] for j in done} == {"node-a", "node-b"}, "both nodes worked"
                for job in done:
                    status, made, _ = await download(
                        a, token, f"/api/files/{job['result']['files'][0]['id']}/content"
                    )
                    assert status == 200 and facts(made)["video"][0] == "vp9"
        finally:
            for node in nodes:
                node.stop()
