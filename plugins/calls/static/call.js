// The call page: /call#token=<bearer token>[&call=<call id>] (the fragment never reaches the
// server). Without a call id it is a lobby: call someone, or accept or decline who is
// calling you. In a call: peer-to-peer calls have an RTCPeerConnection per peer, signals
// relayed by the server; of two peers the one whose user id sorts first offers, once the
// other's page said "ready" (each attempt has its own session id, so signals of an attempt
// given up are ignored). Calls through the SFU: one connection publishes this page's tracks
// (it offers, naming each section's label), another receives everyone else's (the server
// offers; "tracks" says which feed each section carries); tiles light up for the active
// speaker; the host can mute everyone and record.
"use strict";
(async () => {
  const params = new URLSearchParams(location.hash.slice(1));
  const token = params.get("token");
  const $ = (id) => document.getElementById(id);
  const show = (text) => { $("state").textContent = text; };
  async function api(path, options = {}) {
    const response = await fetch(path, {
      ...options, headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
    });
    const body = response.status === 204 ? {} : await response.json();
    if (!response.ok) throw new Error(body.detail || body.title || `HTTP ${response.status}`);
    return body;
  }
  const randomId = () => Array.from(crypto.getRandomValues(new Uint8Array(12)),
    (b) => b.toString(16).padStart(2, "0")).join("");

  const me = await api("/api/auth/me");
  const { ice_servers: iceServers } = await api("/api/calls/ice");
  const ws = new WebSocket(`${location.origin.replace(/^http/, "ws")}/ws?token=${encodeURIComponent(token)}`);
  let nextId = 0;
  const send = (op, to, data) => ws.send(JSON.stringify({ op, id: ++nextId, topic: to, data }));

  let callId = null; // the call this page is in
  let topic = null;
  let media = null; // this page's camera and microphone
  const signal = (to, body) => send("publish", topic, { to, signal: body });

  // -- the lobby: call someone, answer who calls ------------------------------------------
  const ringing = new Map(); // call id -> list item
  function ring(id, from) {
    if (ringing.has(id) || id === callId) return;
    const item = document.createElement("li");
    const who = document.createElement("span");
    who.textContent = `${from} is calling`;
    const accept = document.createElement("button");
    accept.type = "button";
    accept.className = "accept";
    accept.textContent = "Accept";
    const decline = document.createElement("button");
    decline.type = "button";
    decline.className = "decline";
    decline.textContent = "Decline";
    item.dataset.call = id;
    item.append(who, accept, decline);
    accept.onclick = () => answer(id, "accept").then(() => enter(id));
    decline.onclick = () => answer(id, "decline");
    ringing.set(id, item);
    $("incoming").append(item);
    $("no-incoming").hidden = true;
  }
  function stopRinging(id) {
    ringing.get(id)?.remove();
    ringing.delete(id);
    $("no-incoming").hidden = ringing.size > 0;
  }
  async function answer(id, how) {
    stopRinging(id);
    await api(`/api/calls/${id}/${how}`, { method: "POST" }).catch((err) => show(`${how}: ${err.message}`));
  }
  async function lobby() {
    $("lobby").hidden = false;
    show(`signed in as ${me.username}`);
    const { calls } = await api("/api/calls?limit=20");
    calls.filter((c) => c.status === "ringing" && c.my_state === "ringing").forEach((c) => {
      ring(c.id, c.participants.find((p) => p.user_id === c.host_id)?.username ?? "someone");
    });
  }
  $("dial").onsubmit = async (event) => {
    event.preventDefault();
    const usernames = $("callee").value.split(",").map((name) => name.trim()).filter(Boolean);
    const body = { usernames, kind: usernames.length > 1 ? "group" : "direct" };
    if ($("via-sfu").checked) body.route = "sfu";
    try {
      const view = await api("/api/calls", { method: "POST", body: JSON.stringify(body) });
      await enter(view.id);
    } catch (err) {
      show(`call: ${err.message}`);
    }
  };

  // -- peer to peer ----------------------------------------------------------------------
  const peers = new Map(); // user id -> { pc, session }
  const offersTo = (userId) => me.id < userId;
  function connect(userId, session) {
    peers.get(userId)?.pc.close();
    const pc = new RTCPeerConnection({ iceServers });
    const link = { pc, session };
    media.getTracks().forEach((track) => pc.addTrack(track, media));
    pc.onicecandidate = ({ candidate }) => {
      if (candidate) signal(userId, { type: "candidate", session, candidate: candidate.toJSON() });
    };
    pc.ontrack = ({ streams, track }) => { $("remote").srcObject = streams[0] || new MediaStream([track]); };
    pc.onconnectionstatechange = () => { if (peers.get(userId) === link) show(pc.connectionState); };
    peers.set(userId, link);
    return link;
  }
  function drop(userId) {
    peers.get(userId)?.pc.close();
    peers.delete(userId);
  }
  async function offer(userId) {
    const { pc, session } = connect(userId, randomId());
    await pc.setLocalDescription(await pc.createOffer());
    signal(userId, { type: "offer", session, sdp: pc.localDescription.sdp });
  }
  async function fromPeer(from, body) {
    const link = peers.get(from);
    if (body.type === "ready") { // the peer's page listens (again): start over
      if (offersTo(from)) {
        await offer(from);
      } else {
        drop(from);
        signal(from, { type: "ready" }); // the peer may have been there first
      }
    } else if (body.type === "offer") {
      const { pc, session } = connect(from, body.session);
      await pc.setRemoteDescription({ type: "offer", sdp: body.sdp });
      await pc.setLocalDescription(await pc.createAnswer());
      signal(from, { type: "answer", session, sdp: pc.localDescription.sdp });
    } else if (!link || link.session !== body.session) {
      // a signal of an attempt given up since
    } else if (body.type === "answer") {
      await link.pc.setRemoteDescription({ type: "answer", sdp: body.sdp });
    } else if (body.type === "candidate") {
      await link.pc.addIceCandidate(body.candidate);
    } else if (body.type === "bye") {
      drop(from);
    }
  }
  function startPeerToPeer(view) {
    $("remote").hidden = false;
    show("waiting for the other side…");
    view.participants
      .filter((p) => p.user_id !== me.id && p.state === "joined")
      .forEach((p) => signal(p.user_id, { type: "ready" }));
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
    return publish();
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

  // -- the call --------------------------------------------------------------------------
  async function enter(id) {
    callId = id;
    topic = `call:${id}`;
    stopRinging(id);
    const view = await api(`/api/calls/${id}`);
    media = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
    $("local").srcObject = media;
    $("lobby").hidden = true;
    $("stage").hidden = false;
    $("controls").hidden = false;
    send("subscribe", topic);
    if (view.host_id === me.id && view.route === "sfu") {
      $("muteall").hidden = false;
      $("record").hidden = false;
    }
    followCall(view);
    if (view.route === "sfu") await startSfu();
    else startPeerToPeer(view);
  }
  let over = false; // this page is out of its call
  function hangUp(reason) {
    over = true;
    peers.forEach((_, userId) => drop(userId));
    sfu.publisher?.close();
    sfu.subscriber?.close();
    media?.getTracks().forEach((t) => t.stop());
    show(reason);
  }
  function followCall(view) {
    const self = view.participants.find((p) => p.user_id === me.id);
    if (self) {
      media.getAudioTracks().forEach((t) => { t.enabled = self.media.audio; });
      $("mute").textContent = self.media.audio ? "Mute" : "Unmute";
    }
    view.participants.filter((p) => p.state === "left").forEach((p) => drop(p.user_id));
    $("recording").hidden = !view.recording;
    $("record").textContent = view.recording ? "Stop recording" : "Record";
  }
  async function onEvent(event) {
    const eventCall = event.call_id ?? event.call?.id;
    if (event.type === "call.invite") {
      ring(event.call.id, event.from.username);
    } else if (eventCall !== callId) {
      const mine = event.call?.participants?.find((p) => p.user_id === me.id);
      if (event.type === "call.state" && mine?.state !== "ringing") stopRinging(eventCall);
    } else if (event.type === "call.signal") {
      if (event.from === "sfu") await fromSfu(event.signal);
      else await fromPeer(event.from, event.signal);
    } else if (event.type === "call.state") {
      followCall(event.call);
      if (event.call.status === "ended") hangUp(`ended (${event.call.end_reason})`);
    } else if (event.type === "call.speaker") {
      sfu.tiles.forEach((el) => {
        el.classList.toggle("speaking", el.dataset.user === event.user_id && el.dataset.kind === "video");
      });
    } else if (event.type === "call.recording") {
      $("recording").hidden = event.state !== "started";
    }
  }
  let handled = Promise.resolve(); // events are handled one at a time, in order
  ws.onmessage = ({ data }) => {
    const frame = JSON.parse(data);
    if (frame.op === "hello") {
      send("subscribe", `user:${me.id}`);
      const wanted = params.get("call");
      handled = handled.then(() => (wanted ? enter(wanted) : lobby()));
      return;
    }
    if (frame.op === "unsubscribe" && frame.topic === topic) {
      // Removed by the host or left from elsewhere; an ended call says so in its call.state.
      if (!over && frame.data?.reason !== "call_ended") hangUp(`out of the call (${frame.data?.reason})`);
      return;
    }
    if (frame.op === "error" && frame.code !== "peer_not_joined") {
      show(`refused: ${frame.message || frame.code}`);
      if (frame.code === "muted_by_host" && media) {
        media.getAudioTracks().forEach((t) => { t.enabled = false; });
        $("mute").textContent = "Unmute";
      }
    }
    if (frame.op !== "event") return;
    handled = handled.then(() => onEvent(frame.data)).catch((err) => show(`error: ${err.message}`));
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
  $("muteall").onclick = () => send("publish", topic, { moderate: { action: "mute", media: "audio", user: "all" } });
  $("record").onclick = async () => {
    const recording = !$("recording").hidden;
    await api(`/api/calls/${callId}/recording`, { method: recording ? "DELETE" : "POST" });
  };
  $("hangup").onclick = async () => {
    await api(`/api/calls/${callId}/leave`, { method: "POST" }).catch(() => {});
    hangUp("you left the call");
  };
})().catch((err) => { document.getElementById("state").textContent = `error: ${err}`; });
