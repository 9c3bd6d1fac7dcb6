// The call page: /call#token=<bearer token>&call=<call id> (the fragment never reaches the
// server). It joins a call it was invited to and answered. Peer-to-peer calls: an
// RTCPeerConnection per peer, signals relayed by the server. Calls through the SFU: one
// connection publishes this page's tracks (it offers, naming each section's label), another
// receives everyone else's (the server offers; "tracks" says which feed each section
// carries); tiles light up for the active speaker; the host can mute everyone and record.
"use strict";
(async () => {
  const params = new URLSearchParams(location.hash.slice(1));
  const token = params.get("token");
  const callId = params.get("call");
  const topic = `call:${callId}`;
  const $ = (id) => document.getElementById(id);
  const show = (text) => { $("state").textContent = text; };
  const api = (path, options = {}) => fetch(path, {
    ...options, headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
  }).then((r) => r.json());

  const me = await api("/api/auth/me");
  const call = await api(`/api/calls/${callId}`);
  const { ice_servers: iceServers } = await api("/api/calls/ice");
  const media = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
  $("local").srcObject = media;

  const ws = new WebSocket(`${location.origin.replace(/^http/, "ws")}/ws?token=${token}`);
  let nextId = 0;
  const send = (op, to, data) => ws.send(JSON.stringify({ op, id: ++nextId, topic: to, data }));
  const signal = (to, body) => send("publish", topic, { to, signal: body });

  // -- peer to peer ----------------------------------------------------------------------
  const peers = new Map(); // user id -> RTCPeerConnection
  function peer(userId) {
    if (peers.has(userId)) return peers.get(userId);
    const pc = new RTCPeerConnection({ iceServers });
    media.getTracks().forEach((track) => pc.addTrack(track, media));
    pc.onicecandidate = ({ candidate }) => {
      if (candidate) signal(userId, { type: "candidate", candidate: candidate.toJSON() });
    };
    pc.ontrack = ({ streams, track }) => { $("remote").srcObject = streams[0] || new MediaStream([track]); };
    pc.onconnectionstatechange = () => show(pc.connectionState);
    peers.set(userId, pc);
    return pc;
  }
  async function fromPeer(from, body) {
    const pc = peer(from);
    if (body.type === "offer") {
      await pc.setRemoteDescription(body);
      await pc.setLocalDescription(await pc.createAnswer());
      signal(from, { type: "answer", sdp: pc.localDescription.sdp });
    } else if (body.type === "answer") {
      await pc.setRemoteDescription(body);
    } else if (body.type === "candidate") {
      await pc.addIceCandidate(body.candidate);
    } else if (body.type === "bye") {
      pc.close();
      peers.delete(from);
    }
  }

  // -- through the SFU -------------------------------------------------------------------
  const sfu = { publisher: null, subscriber: null, labels: new Map(), tiles: new Map() };
  function connection(pcName) {
    const pc = new RTCPeerConnection({ iceServers });
    pc.onicecandidate = ({ candidate }) => {
      if (candidate) signal("sfu", { type: "candidate", pc: pcName, candidate: candidate.toJSON() });
    };
    pc.onconnectionstatechange = () => show(pc.connectionState);
    return pc;
  }
  async function publish() {
    const pc = sfu.publisher;
    await pc.setLocalDescription(await pc.createOffer());
    const tracks = {};
    pc.getTransceivers().forEach((t) => {
      const label = t.sender.track && sfu.labels.get(t.sender.track);
      if (t.mid !== null && label) tracks[t.mid] = label;
    });
    signal("sfu", { type: "offer", pc: "publish", sdp: pc.localDescription.sdp, tracks });
  }
  function startSfu() {
    $("remote").hidden = true;
    $("grid").hidden = false;
    $("screen").hidden = false;
    sfu.publisher = connection("publish");
    sfu.subscriber = connection("subscribe");
    media.getTracks().forEach((track) => {
      sfu.labels.set(track, track.kind === "audio" ? "microphone" : "camera");
      sfu.publisher.addTransceiver(track, { direction: "sendonly", streams: [media] });
    });
    publish();
  }
  function tile(mid, feed, track) {
    let tileEl = sfu.tiles.get(mid);
    if (!tileEl) {
      tileEl = document.createElement("figure");
      const video = document.createElement("video");
      video.autoplay = true;
      video.playsInline = true;
      tileEl.append(video, document.createElement("figcaption"));
      sfu.tiles.set(mid, tileEl);
    }
    const video = tileEl.querySelector("video");
    if (video.srcObject?.getTracks()[0] !== track) video.srcObject = new MediaStream([track]);
    tileEl.dataset.user = feed.user_id;
    tileEl.dataset.kind = feed.kind;
    tileEl.querySelector("figcaption").textContent = `${feed.username} · ${feed.label}`;
    tileEl.hidden = feed.kind === "audio"; // audio plays from a hidden tile
    if (!tileEl.isConnected) $("grid").append(tileEl);
  }
  async function fromSfu(body) {
    if (body.type === "answer") {
      await sfu.publisher.setRemoteDescription(body);
    } else if (body.type === "offer") {
      const pc = sfu.subscriber;
      await pc.setRemoteDescription({ type: "offer", sdp: body.sdp });
      await pc.setLocalDescription(await pc.createAnswer());
      signal("sfu", { type: "answer", pc: "subscribe", sdp: pc.localDescription.sdp });
      pc.getTransceivers().forEach((t) => {
        const feed = body.tracks[t.mid];
        if (feed) tile(t.mid, feed, t.receiver.track);
        else sfu.tiles.get(t.mid)?.remove();
      });
    }
  }
  async function shareScreen(button) {
    if (sfu.screen) {
      sfu.screen.sender.track.stop();
      sfu.screen.stop();
      sfu.screen = null;
    } else {
      const display = await navigator.mediaDevices.getDisplayMedia({ video: true });
      const [track] = display.getVideoTracks();
      sfu.labels.set(track, "screen");
      sfu.screen = sfu.publisher.addTransceiver(track, { direction: "sendonly" });
      track.onended = () => { if (sfu.screen) shareScreen(button); };
    }
    button.textContent = sfu.screen ? "Stop sharing" : "Share screen";
    send("publish", topic, { media: { screen: Boolean(sfu.screen) } });
    await publish();
  }

  // -- events ----------------------------------------------------------------------------
  function followCall(state) {
    const self = state.participants.find((p) => p.user_id === me.id);
    if (self) {
      media.getAudioTracks().forEach((t) => { t.enabled = self.media.audio; });
      $("mute").textContent = self.media.audio ? "Mute" : "Unmute";
    }
    $("recording").hidden = !state.recording;
    $("record").textContent = state.recording ? "Stop recording" : "Record";
  }
  function stop(text) {
    peers.forEach((pc) => pc.close());
    sfu.publisher?.close();
    sfu.subscriber?.close();
    show(text);
  }
  ws.onmessage = async ({ data }) => {
    const frame = JSON.parse(data);
    if (frame.op === "hello") {
      send("subscribe", `user:${me.id}`);
      send("subscribe", topic);
      if (call.route === "sfu") startSfu();
      else show("waiting for the caller…");
      return;
    }
    if (frame.op === "unsubscribe" && frame.topic === topic) {
      // Removed by the host or left (elsewhere); an ended call says so in its call.state.
      if (frame.data.reason !== "call_ended") stop(`out of the call (${frame.data.reason})`);
      return;
    }
    if (frame.op === "error") {
      show(`refused: ${frame.message || frame.code}`);
      if (frame.code === "muted_by_host") {
        media.getAudioTracks().forEach((t) => { t.enabled = false; });
        $("mute").textContent = "Unmute";
      }
    }
    const event = frame.op === "event" ? frame.data : null;
    if (!event || (event.call_id ?? event.call?.id) !== callId) return;
    if (event.type === "call.signal") {
      if (event.from === "sfu") await fromSfu(event.signal);
      else await fromPeer(event.from, event.signal);
    } else if (event.type === "call.state") {
      followCall(event.call);
      if (event.call.status === "ended") stop(`ended (${event.call.end_reason})`);
    } else if (event.type === "call.speaker") {
      sfu.tiles.forEach((el) => {
        el.classList.toggle("speaking", el.dataset.user === event.user_id && el.dataset.kind === "video");
      });
    } else if (event.type === "call.recording") {
      $("recording").hidden = event.state !== "started";
    }
  };

  // -- controls --------------------------------------------------------------------------
  const toggle = (kind, button, on, off) => {
    const track = media.getTracks().find((t) => t.kind === kind);
    track.enabled = !track.enabled;
    button.textContent = track.enabled ? on : off;
    send("publish", topic, { media: { [kind]: track.enabled } });
  };
  $("mute").onclick = () => toggle("audio", $("mute"), "Mute", "Unmute");
  $("camera").onclick = () => toggle("video", $("camera"), "Camera off", "Camera on");
  $("screen").onclick = () => shareScreen($("screen")).catch((err) => show(`screen: ${err.message}`));
  if (call.host_id === me.id && call.route === "sfu") {
    $("muteall").hidden = false;
    $("record").hidden = false;
    followCall(call);
  }
  $("muteall").onclick = () => send("publish", topic, { moderate: { action: "mute", media: "audio", user: "all" } });
  $("record").onclick = async () => {
    const recording = !$("recording").hidden;
    await api(`/api/calls/${callId}/recording`, { method: recording ? "DELETE" : "POST" });
  };
  $("hangup").onclick = () => api(`/api/calls/${callId}/leave`, { method: "POST" });
})().catch((err) => { document.getElementById("state").textContent = `error: ${err}`; });
