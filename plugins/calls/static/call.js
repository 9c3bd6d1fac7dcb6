// The minimal call page: /call#token=<bearer token>&call=<call id>
// (the fragment never reaches the server). It joins a call it was invited to and answered:
// signaling over /ws (offers, answers and trickled ICE candidates relayed by the server),
// the camera and microphone from getUserMedia, the first peer's video in #remote.
"use strict";
(async () => {
  const params = new URLSearchParams(location.hash.slice(1));
  const token = params.get("token");
  const callId = params.get("call");
  const stateEl = document.getElementById("state");
  const show = (text) => { stateEl.textContent = text; };
  const api = (path, options = {}) => fetch(path, {
    ...options, headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
  }).then((r) => r.json());

  const me = await api("/api/auth/me");
  const { ice_servers: iceServers } = await api("/api/calls/ice");
  const media = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
  document.getElementById("local").srcObject = media;

  const ws = new WebSocket(`${location.origin.replace(/^http/, "ws")}/ws?token=${token}`);
  let nextId = 0;
  const send = (op, topic, data) => ws.send(JSON.stringify({ op, id: ++nextId, topic, data }));
  const peers = new Map(); // user id -> RTCPeerConnection

  function peer(userId) {
    if (peers.has(userId)) return peers.get(userId);
    const pc = new RTCPeerConnection({ iceServers });
    media.getTracks().forEach((track) => pc.addTrack(track, media));
    pc.onicecandidate = ({ candidate }) => {
      if (candidate) send("publish", `call:${callId}`, { to: userId, signal: { type: "candidate", candidate: candidate.toJSON() } });
    };
    pc.ontrack = ({ streams, track }) => {
      const remote = document.getElementById("remote");
      remote.srcObject = streams[0] || new MediaStream([track]);
    };
    pc.onconnectionstatechange = () => show(pc.connectionState);
    peers.set(userId, pc);
    return pc;
  }

  ws.onmessage = async ({ data }) => {
    const frame = JSON.parse(data);
    if (frame.op === "hello") {
      send("subscribe", `user:${me.id}`);
      send("subscribe", `call:${callId}`);
      show("waiting for the caller…");
      return;
    }
    const event = frame.op === "event" ? frame.data : null;
    if (!event) return;
    if (event.type === "call.signal" && event.call_id === callId) {
      const pc = peer(event.from);
      const signal = event.signal;
      if (signal.type === "offer") {
        await pc.setRemoteDescription(signal);
        await pc.setLocalDescription(await pc.createAnswer());
        send("publish", `call:${callId}`, { to: event.from, signal: { type: "answer", sdp: pc.localDescription.sdp } });
      } else if (signal.type === "answer") {
        await pc.setRemoteDescription(signal);
      } else if (signal.type === "candidate") {
        await pc.addIceCandidate(signal.candidate);
      } else if (signal.type === "bye") {
        pc.close();
        peers.delete(event.from);
      }
    } else if (event.type === "call.state" && event.call.id === callId && event.call.status === "ended") {
      peers.forEach((pc) => pc.close());
      show(`ended (${event.call.end_reason})`);
    }
  };

  const toggle = (kind, button, on, off) => {
    const track = media.getTracks().find((t) => t.kind === kind);
    track.enabled = !track.enabled;
    button.textContent = track.enabled ? on : off;
    send("publish", `call:${callId}`, { media: { [kind]: track.enabled } });
  };
  const mute = document.getElementById("mute");
  mute.onclick = () => toggle("audio", mute, "Mute", "Unmute");
  const camera = document.getElementById("camera");
  camera.onclick = () => toggle("video", camera, "Camera off", "Camera on");
  document.getElementById("hangup").onclick = () => api(`/api/calls/${callId}/leave`, { method: "POST" });
})().catch((err) => { document.getElementById("state").textContent = `error: ${err}`; });
