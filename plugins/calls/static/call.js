// The call page: /call#token=<bearer token>[&call=<call id>] (the fragment never reaches the
// server); without a valid token it asks to sign in and keeps the token in sessionStorage.
// Without a call it is a lobby: call someone, or accept or decline who is calling you; when a
// call ends the page is back in the lobby, ready for the next one. In a call: peer-to-peer
// calls have an RTCPeerConnection per peer, signals relayed by the server; of two peers the
// one whose user id sorts first offers, once the other's page said "ready" (each attempt has
// its own session id, so signals of an attempt given up are ignored). Calls through the SFU:
// one connection publishes this page's tracks (it offers, naming each section's label),
// another receives everyone else's (the server offers; "tracks" says which feed each section
// carries); tiles light up for the active speaker. The host can remove a participant, mute
// everyone (locked: only the host unlocks) and record.
"use strict";
(async () => {
  const $ = (id) => document.getElementById(id);
  const show = (text) => { $("state").textContent = text; };
  const TOKEN_KEY = "syncstream.call.token";
  const params = new URLSearchParams(location.hash.slice(1));
  let tokenInUrl = params.has("token");
  let token = params.get("token") || sessionStorage.getItem(TOKEN_KEY);

  async function api(path, options = {}) {
    const headers = { "Content-Type": "application/json" };
    if (token) headers.Authorization = `Bearer ${token}`;
    const response = await fetch(path, { ...options, headers });
    const body = response.status === 204 ? {} : await response.json();
    if (!response.ok) {
      const err = new Error(body.detail || body.title || `HTTP ${response.status}`);
      err.status = response.status;
      throw err;
    }
    return body;
  }
  const randomId = () => Array.from(crypto.getRandomValues(new Uint8Array(12)),
    (b) => b.toString(16).padStart(2, "0")).join("");
  // The fragment says which call the page is in (and holds the token if it came there).
  function setFragment(callId) {
    const fragment = new URLSearchParams();
    if (tokenInUrl) fragment.set("token", token);
    if (callId) fragment.set("call", callId);
    const text = fragment.toString();
    history.replaceState(null, "", `${location.pathname}${location.search}${text ? `#${text}` : ""}`);
  }

  // -- signing in: a token from the fragment or this tab's storage, else the form ----------
  async function signedIn() {
    if (token) {
      try {
        return await api("/api/auth/me");
      } catch (err) {
        if (err.status !== 401) throw err;
        token = null;
        tokenInUrl = false;
        sessionStorage.removeItem(TOKEN_KEY);
        setFragment(params.get("call"));
      }
    }
    $("signin").hidden = false;
    show("sign in to call");
    return new Promise((resolve) => {
      $("signin").onsubmit = async (event) => {
        event.preventDefault();
        const form = { username: $("username").value.trim(), password: $("password").value };
        try {
          ({ token } = await api("/api/auth/login", { method: "POST", body: JSON.stringify(form) }));
          sessionStorage.setItem(TOKEN_KEY, token);
          $("password").value = "";
          $("signin").hidden = true;
          resolve(await api("/api/auth/me"));
        } catch (err) {
          show(`sign-in: ${err.message}`);
        }
      };
    });
  }
  const me = await signedIn();
  const { ice_servers: iceServers } = await api("/api/calls/ice");
  const ws = new WebSocket(`${location.origin.replace(/^http/, "ws")}/ws?token=${encodeURIComponent(token)}`);
  let nextId = 0;
  const send = (op, to, data) => ws.send(JSON.stringify({ op, id: ++nextId, topic: to, data }));

  let handled = Promise.resolve(); // events and call changes run one at a time, in order
  const queue = (job) => {
    handled = handled.then(job).catch((err) => {
      console.error(err); // a failure is never silent
      show(`error: ${err.message}`);
    });
    return handled;
  };

  // The call this page is in (null: the lobby). Everything a call sets up hangs off it, so
  // leaving it tears all of it down and the next call starts afresh.
  let call = null;
  const signal = (to, body) => send("publish", call.topic, { to, signal: body });

  // -- the lobby: call someone, answer who calls ------------------------------------------
  const ringing = new Map(); // call id -> list item
  function ring(id, from) {
    if (ringing.has(id) || id === call?.id) return;
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
    accept.onclick = () => queue(async () => { if (await answer(id, "accept")) await enter(id); });
    decline.onclick = () => queue(async () => {
      if (await answer(id, "decline")) show(`you declined ${from}'s call`);
    });
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
    try {
      await api(`/api/calls/${id}/${how}`, { method: "POST" });
      return true;
    } catch (err) {
      show(`${how}: ${err.message}`);
      return false;
    }
  }
  async function lobby() {
    $("lobby").hidden = false;
    show(`signed in as ${me.username}`);
    const { calls } = await api("/api/calls?limit=20");
    calls.filter((c) => c.status === "ringing" && c.my_state === "ringing").forEach((c) => {
      ring(c.id, c.participants.find((p) => p.user_id === c.host_id)?.username ?? "someone");
    });
  }
  $("dial").onsubmit = (event) => {
    event.preventDefault();
    const usernames = $("callee").value.split(",").map((name) => name.trim()).filter(Boolean);
    const body = { usernames, kind: usernames.length > 1 ? "group" : "direct" };
    if ($("via-sfu").checked) body.route = "sfu";
    queue(async () => {
      if (call) return;
      try {
        const view = await api("/api/calls", { method: "POST", body: JSON.stringify(body) });
        await enter(view.id);
      } catch (err) {
        show(`call: ${err.message}`);
      }
    });
  };

  // -- peer to peer ----------------------------------------------------------------------
  const offersTo = (userId) => me.id < userId;
  function connect(userId, session) {
    const here = call;
    here.peers.get(userId)?.pc.close();
    const pc = new RTCPeerConnection({ iceServers });
    const link = { pc, session };
    here.media.getTracks().forEach((track) => pc.addTrack(track, here.media));
    pc.onicecandidate = ({ candidate }) => {
      if (candidate && call === here) signal(userId, { type: "candidate", session, candidate: candidate.toJSON() });
    };
    pc.ontrack = ({ streams, track }) => { $("remote").srcObject = streams[0] || new MediaStream([track]); };
    pc.onconnectionstatechange = () => { if (here.peers.get(userId) === link) show(pc.connectionState); };
    here.peers.set(userId, link);
    return link;
  }
  function drop(userId) {
    call.peers.get(userId)?.pc.close();
    call.peers.delete(userId);
  }
  async function offer(userId) {
    const { pc, session } = connect(userId, randomId());
    await pc.setLocalDescription(await pc.createOffer());
    signal(userId, { type: "offer", session, sdp: pc.localDescription.sdp });
  }
  async function fromPeer(from, body) {
    const link = call.peers.get(from);
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
  function connection(pcName) {
    const here = call;
    const pc = new RTCPeerConnection({ iceServers });
    pc.onicecandidate = ({ candidate }) => {
      if (candidate && call === here) signal("sfu", { type: "candidate", pc: pcName, candidate: candidate.toJSON() });
    };
    pc.onconnectionstatechange = () => { if (call === here) show(pc.connectionState); };
    return pc;
  }
  async function publish() {
    const { sfu } = call;
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
    const { sfu, media } = call;
    $("remote").hidden = true;
    $("grid").hidden = false;
    $("screen").hidden = false;
    // The local preview is a tile of its own, first in the grid: it covers no other tile.
    const self = document.createElement("figure");
    self.id = "self";
    const caption = document.createElement("figcaption");
    caption.textContent = `${me.username} (you)`;
    self.append($("local"), caption);
    $("grid").prepend(self);
    sfu.publisher = connection("publish");
    sfu.subscriber = connection("subscribe");
    media.getTracks().forEach((track) => {
      sfu.labels.set(track, track.kind === "audio" ? "microphone" : "camera");
      sfu.publisher.addTransceiver(track, { direction: "sendonly", streams: [media] });
    });
    return publish();
  }
  function tile(mid, feed, track) {
    const { tiles } = call.sfu;
    let tileEl = tiles.get(mid);
    if (!tileEl) {
      tileEl = document.createElement("figure");
      const video = document.createElement("video");
      video.autoplay = true;
      video.playsInline = true;
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "remove";
      remove.textContent = "Remove";
      remove.onclick = () => removeParticipant(tileEl.dataset.user);
      tileEl.append(video, document.createElement("figcaption"), remove);
      tiles.set(mid, tileEl);
    }
    const video = tileEl.querySelector("video");
    if (video.srcObject?.getTracks()[0] !== track) video.srcObject = new MediaStream([track]);
    tileEl.dataset.user = feed.user_id;
    tileEl.dataset.kind = feed.kind;
    tileEl.dataset.label = feed.label;
    tileEl.querySelector("figcaption").textContent = `${feed.username} · ${feed.label}`;
    // Only the host removes, from the participant's camera tile.
    tileEl.querySelector(".remove").hidden = !(isHost() && feed.label === "camera");
    tileEl.hidden = feed.kind === "audio"; // audio plays from a hidden tile
    if (!tileEl.isConnected) $("grid").append(tileEl);
  }
  function dropTile(mid) { // a feed gone: its tile goes (a new one is made if it comes back)
    call.sfu.tiles.get(mid)?.remove();
    call.sfu.tiles.delete(mid);
  }
  async function fromSfu(body) {
    const { sfu } = call;
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
        else dropTile(t.mid);
      });
    }
  }
  // A screen share is a transceiver kept for the whole call: stopping sets it inactive
  // without a track, sharing again puts a new track on it. Stopping the transceiver instead
  // would reject its section in the next offer while the SFU's answer still bundles it.
  async function shareScreen() {
    const { sfu } = call;
    const sharing = Boolean(sfu.screen?.sender.track);
    if (sharing) {
      const { track } = sfu.screen.sender;
      await sfu.screen.sender.replaceTrack(null);
      track.onended = null;
      track.stop();
      sfu.screen.direction = "inactive";
    } else {
      const display = await navigator.mediaDevices.getDisplayMedia({ video: true });
      const [track] = display.getVideoTracks();
      sfu.labels.set(track, "screen");
      if (sfu.screen) {
        await sfu.screen.sender.replaceTrack(track);
        sfu.screen.direction = "sendonly";
      } else {
        sfu.screen = sfu.publisher.addTransceiver(track, { direction: "sendonly" });
      }
      const here = call;
      track.onended = () => queue(() => { if (call === here && sfu.screen.sender.track === track) return shareScreen(); });
    }
    $("screen").textContent = sharing ? "Share screen" : "Stop sharing";
    send("publish", call.topic, { media: { screen: !sharing } });
    await publish();
  }

  // -- the call --------------------------------------------------------------------------
  const isHost = () => call?.view.host_id === me.id;
  async function enter(id) {
    if (call) return;
    stopRinging(id);
    const view = await api(`/api/calls/${id}`);
    const media = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
    call = {
      id, view, media, topic: `call:${id}`, peers: new Map(),
      sfu: { publisher: null, subscriber: null, screen: null, labels: new Map(), tiles: new Map() },
    };
    setFragment(id);
    $("local").srcObject = media;
    $("lobby").hidden = true;
    $("stage").hidden = false;
    $("controls").hidden = false;
    send("subscribe", call.topic);
    $("muteall").hidden = $("record").hidden = !(isHost() && view.route === "sfu");
    followCall(view);
    if (view.route === "sfu") await startSfu();
    else startPeerToPeer(view);
  }
  // Out of the call, whyever: every connection and device closed, back to the lobby.
  function leave(reason) {
    const here = call;
    if (!here) return;
    call = null;
    here.peers.forEach(({ pc }) => pc.close());
    here.sfu.publisher?.close();
    here.sfu.subscriber?.close();
    here.sfu.screen?.sender.track?.stop();
    here.media.getTracks().forEach((t) => t.stop());
    if (ws.readyState === WebSocket.OPEN) send("unsubscribe", here.topic);
    $("stage").append($("local"));
    $("local").srcObject = null;
    $("remote").srcObject = null;
    $("grid").replaceChildren();
    $("people").replaceChildren();
    for (const id of ["stage", "controls", "grid", "screen", "muteall", "unlock", "record", "recording"]) {
      $(id).hidden = true;
    }
    $("remote").hidden = false;
    $("mute").disabled = $("record").disabled = false;
    $("mute").textContent = "Mute";
    $("camera").textContent = "Camera off";
    $("screen").textContent = "Share screen";
    $("record").textContent = "Record";
    setFragment(null);
    $("lobby").hidden = false;
    show(reason);
  }
  const ENDINGS = {
    cancelled: "call cancelled", declined: "call declined", missed: "nobody answered",
    busy: "busy: they are in another call", removed: "call ended", completed: "call ended",
    ended_by_admin: "call ended by an administrator",
  };
  function followCall(view) {
    call.view = view;
    const self = view.participants.find((p) => p.user_id === me.id);
    if (view.status === "ended") {
      leave(ENDINGS[view.end_reason] ?? `call ended (${view.end_reason})`);
      return;
    }
    if (self?.state === "removed") {
      leave("the host removed you from the call");
      return;
    }
    if (self) {
      const locked = self.locked.includes("audio");
      call.media.getAudioTracks().forEach((t) => { t.enabled = self.media.audio; });
      $("mute").disabled = locked;
      $("mute").textContent = locked ? "Muted by the host" : self.media.audio ? "Mute" : "Unmute";
      if (locked && !call.locked) show("muted by the host");
      else if (!locked && call.locked) show("the host unlocked your microphone");
      call.locked = locked;
    }
    const joined = new Set(view.participants.filter((p) => p.state === "joined").map((p) => p.user_id));
    [...call.peers.keys()].filter((userId) => !joined.has(userId)).forEach(drop);
    call.sfu.tiles.forEach((el, mid) => { if (!joined.has(el.dataset.user)) dropTile(mid); });
    $("unlock").hidden = !(isHost() && view.route === "sfu"
      && view.participants.some((p) => p.locked.includes("audio")));
    $("recording").hidden = !view.recording;
    $("record").textContent = view.recording ? "Stop recording" : "Record";
    people(view, joined);
  }
  // Peer to peer there are no tiles: the host removes from a list of who is in the call.
  function people(view, joined) {
    $("people").replaceChildren();
    if (view.route === "sfu" || !isHost()) return;
    view.participants.filter((p) => p.user_id !== me.id && joined.has(p.user_id)).forEach((p) => {
      const item = document.createElement("li");
      item.dataset.user = p.user_id;
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "remove";
      remove.textContent = `Remove ${p.username}`;
      remove.onclick = () => removeParticipant(p.user_id);
      item.append(remove);
      $("people").append(item);
    });
  }
  function removeParticipant(userId) {
    if (call && isHost()) send("publish", call.topic, { moderate: { action: "remove", user: userId } });
  }
  async function onEvent(event) {
    const eventCall = event.call_id ?? event.call?.id;
    if (event.type === "call.invite") {
      ring(event.call.id, event.from.username);
    } else if (!call || eventCall !== call.id) {
      const mine = event.call?.participants?.find((p) => p.user_id === me.id);
      if (event.type === "call.state" && mine?.state !== "ringing") stopRinging(eventCall);
    } else if (event.type === "call.signal") {
      if (event.from === "sfu") await fromSfu(event.signal);
      else await fromPeer(event.from, event.signal);
    } else if (event.type === "call.state") {
      followCall(event.call);
    } else if (event.type === "call.speaker") {
      call.sfu.tiles.forEach((el) => {
        el.classList.toggle("speaking", el.dataset.user === event.user_id && el.dataset.kind === "video");
      });
    } else if (event.type === "call.recording") {
      $("recording").hidden = event.state !== "started";
    }
  }
  ws.onmessage = ({ data }) => {
    const frame = JSON.parse(data);
    if (frame.op === "hello") {
      send("subscribe", `user:${me.id}`);
      const wanted = params.get("call");
      queue(() => (wanted ? enter(wanted) : lobby()).catch(async (err) => {
        setFragment(null); // a call that is over, or not this user's: the lobby instead
        await lobby();
        show(`call: ${err.message}`);
      }));
      return;
    }
    if (frame.op === "unsubscribe") {
      // Removed by the host or left from elsewhere; an ended call says so in its call.state.
      const reason = frame.data?.reason;
      queue(() => {
        if (!call || frame.topic !== call.topic || reason === "call_ended") return;
        leave(reason === "removed" ? "the host removed you from the call" : `out of the call (${reason})`);
      });
      return;
    }
    // Harmless: a peer gone meanwhile, or the server took this page off a call's topic
    // before the page's own unsubscribe arrived.
    if (frame.op === "error" && !["peer_not_joined", "not_subscribed"].includes(frame.code)) {
      show(`refused: ${frame.message || frame.code}`);
      if (frame.code === "muted_by_host" && call) {
        call.media.getAudioTracks().forEach((t) => { t.enabled = false; });
        $("mute").textContent = "Muted by the host";
        $("mute").disabled = true;
      }
    }
    if (frame.op !== "event") return;
    queue(() => onEvent(frame.data));
  };

  // -- controls --------------------------------------------------------------------------
  const toggle = (kind, button, on, off) => {
    if (!call || button.disabled) return;
    const track = call.media.getTracks().find((t) => t.kind === kind);
    track.enabled = !track.enabled;
    button.textContent = track.enabled ? on : off;
    send("publish", call.topic, { media: { [kind]: track.enabled } });
  };
  $("mute").onclick = () => toggle("audio", $("mute"), "Mute", "Unmute");
  $("camera").onclick = () => toggle("video", $("camera"), "Camera off", "Camera on");
  $("screen").onclick = () => queue(() => call && shareScreen());
  const moderate = (action) => send("publish", call.topic, { moderate: { action, media: "audio", user: "all", lock: true } });
  $("muteall").onclick = () => moderate("mute");
  $("unlock").onclick = () => moderate("unlock");
  $("record").onclick = async () => {
    const button = $("record");
    const id = call?.id;
    if (!id || button.disabled) return;
    button.disabled = true; // one request at a time
    try {
      await api(`/api/calls/${id}/recording`, { method: $("recording").hidden ? "POST" : "DELETE" });
    } catch (err) {
      if (call?.id === id) show(`record: ${err.message}`);
    } finally {
      if (call?.id === id) button.disabled = false;
    }
  };
  $("hangup").onclick = () => queue(async () => {
    if (!call) return;
    const { id, view } = call;
    const cancel = view.status === "ringing" && isHost();
    leave(cancel ? "call cancelled" : "you left the call");
    // Answered meanwhile: too late to cancel, hang up instead.
    const hangUp = () => api(`/api/calls/${id}/leave`, { method: "POST" });
    await (cancel ? api(`/api/calls/${id}/cancel`, { method: "POST" }).catch(hangUp) : hangUp())
      .catch((err) => show(`hang up: ${err.message}`));
  });
})().catch((err) => { document.getElementById("state").textContent = `error: ${err}`; });
