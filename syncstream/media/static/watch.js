// The watch page: plays /live/<name>/index.m3u8 with hls.js in low-latency mode (or natively
// where the browser plays HLS itself) and shows the stream's details from the live API.
"use strict";

const name = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop() || "");
const video = document.getElementById("video");
const $ = (id) => document.getElementById(id);
const source = `/live/${encodeURIComponent(name)}/index.m3u8`;
let hls = null;
let whep = null; // { pc, location } while watching over WebRTC

function show(state, message) {
  const badge = $("state");
  badge.textContent = state;
  badge.className = `badge ${state}`;
  $("message").textContent = message || "";
}

// Staying at the live edge. hls.js aims at the playlist's PART-HOLD-BACK (3 parts) but keeps
// whatever latency it had at join: its own catch-up (maxLiveSyncPlaybackRate) only runs with
// more than 1 s of buffer ahead, which never holds that close to the edge. So the page steers:
// far behind the target it jumps to hls.js's live sync position, a little behind it plays
// faster (pitch is preserved) while enough is buffered, and a stall raises the target by
// 0.2 s, a default part (hls.js's liveSyncOnStallIncrease), rather than by a whole second.
const SEEK_DRIFT = 0.5; // s behind the target: jump
const CATCH_UP_DRIFT = 0.05; // s behind the target: speed up
const MAX_RATE = 1.25;
const MIN_AHEAD = 0.3; // s buffered ahead, at least, while speeding up

function bufferedAhead() {
  const b = video.buffered;
  for (let i = 0; i < b.length; i++) {
    if (b.start(i) <= video.currentTime + 0.1 && video.currentTime < b.end(i)) return b.end(i) - video.currentTime;
  }
  return 0;
}

function keepLive() {
  if (!hls || video.paused || video.seeking) return;
  const latency = hls.latency, target = hls.targetLatency, sync = hls.liveSyncPosition;
  if (!latency || target === null) return;
  const drift = latency - target;
  const ahead = bufferedAhead();
  if (drift > SEEK_DRIFT && sync !== null && sync > video.currentTime && sync < video.currentTime + ahead) {
    video.currentTime = sync;
    video.playbackRate = 1;
  } else if (drift > CATCH_UP_DRIFT && ahead > MIN_AHEAD) {
    video.playbackRate = Math.min(MAX_RATE, 1 + drift);
  } else if (video.playbackRate !== 1) {
    video.playbackRate = 1;
  }
}

function start() {
  if (window.Hls && window.Hls.isSupported()) {
    hls = new window.Hls({ lowLatencyMode: true, backBufferLength: 30, liveSyncOnStallIncrease: 0.2 });
    hls.on(window.Hls.Events.ERROR, (_event, data) => {
      if (!data.fatal) return;
      show("offline", `Playback error (${data.details}); retrying…`);
      hls.destroy();
      setTimeout(start, 3000);
    });
    hls.loadSource(source);
    hls.attachMedia(video);
  } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
    video.src = source;
  } else {
    show("offline", "This browser cannot play HLS.");
    return;
  }
  video.play().catch(() => show($("state").textContent, "Press play to start."));
}

function stopHls() {
  if (hls) { hls.destroy(); hls = null; }
  video.removeAttribute("src");
  video.playbackRate = 1;
}

async function startWhep() {
  stopHls();
  const pc = new RTCPeerConnection();
  pc.addTransceiver("video", { direction: "recvonly" });
  pc.addTransceiver("audio", { direction: "recvonly" });
  const media = new MediaStream();
  pc.ontrack = (event) => {
    media.addTrack(event.track);
    video.srcObject = media;
    video.play().catch(() => {});
  };
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((resolve) => {  // gather ICE candidates first (WHEP without trickle)
    if (pc.iceGatheringState === "complete") return resolve();
    pc.onicegatheringstatechange = () => pc.iceGatheringState === "complete" && resolve();
    setTimeout(resolve, 2000);
  });
  const response = await fetch(`/live/${encodeURIComponent(name)}/whep`, {
    method: "POST", headers: { "Content-Type": "application/sdp" }, body: pc.localDescription.sdp,
  });
  if (response.status !== 201) {
    pc.close();
    const problem = await response.json().catch(() => ({}));
    throw new Error(problem.detail || `WHEP answered ${response.status}`);
  }
  const location = response.headers.get("Location");
  await pc.setRemoteDescription({ type: "answer", sdp: await response.text() });
  whep = { pc, location };
  $("mode").textContent = "Watch with HLS";
}

async function stopWhep() {
  if (!whep) return;
  const { pc, location } = whep;
  whep = null;
  pc.close();
  video.srcObject = null;
  if (location) await fetch(location, { method: "DELETE" }).catch(() => {});
  $("mode").textContent = "Watch with WebRTC";
}

// A closed tab hangs up at once (the request outlives the page), instead of the server
// noticing the dead peer connection ~30 s later and counting a viewer meanwhile.
addEventListener("pagehide", () => {
  if (whep && whep.location) fetch(whep.location, { method: "DELETE", keepalive: true });
});

$("mode").addEventListener("click", async () => {
  try {
    if (whep) { await stopWhep(); start(); } else { await startWhep(); }
  } catch (error) {
    show($("state").textContent, `WebRTC: ${error.message}`);
    start();
  }
});

function format(seconds) {
  const s = Math.floor(seconds);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
  return `${h ? h + "h " : ""}${m}m ${s % 60}s`;
}

async function refresh() {
  try {
    const response = await fetch(`/api/live/streams/${encodeURIComponent(name)}`);
    if (response.status === 404) {
      show("offline", "This stream is not live right now.");
      return;
    }
    const stream = await response.json();
    $("title").textContent = `${stream.name} — ${stream.owner.username}`;
    show(stream.state, stream.state === "reconnecting" ? "The broadcaster is reconnecting…" : "");
    const v = stream.video, a = stream.audio;
    $("resolution").textContent = v && v.width ? `${v.width}×${v.height}` : "–";
    $("codecs").textContent = [v && v.codec, a && a.codec].filter(Boolean).join(" + ") || "–";
    $("bitrate").textContent = stream.bitrate_kbps ? `${Math.round(stream.bitrate_kbps)} kbit/s` : "–";
    $("uptime").textContent = format(stream.uptime_seconds);
    // hls.js reports a latency only once it has synced to the playlist's program dates; before
    // that the figure can be negative: show none rather than a wrong one.
    if (hls) $("latency").textContent = hls.latency > 0 ? `${hls.latency.toFixed(1)} s` : "–";
    if (whep) $("latency").textContent = "WebRTC (sub-second)";
  } catch (error) {
    show("offline", "The server cannot be reached.");
  }
}

video.addEventListener("timeupdate", keepLive);
document.title = `${name} — SyncStream`;
$("title").textContent = name;
start();
refresh();
setInterval(refresh, 2000);
