// The load client shared by both servers, so the client side costs the same for each.
// Opens N subscriber sockets, then one publisher sends `rate` events/s for `seconds`; every
// event carries its send time, receivers record latency = receive time - send time.
// Usage: node load.js '<json options>'  -> prints one JSON line of results.
"use strict";
const { performance } = require("perf_hooks");
const WebSocket = require("ws");
const { io } = require("socket.io-client");

const opts = JSON.parse(process.argv[2]);
const { kind, urls, token, clients, rate, seconds, topic } = opts;
const now = () => performance.timeOrigin + performance.now();
const MAX_SAMPLES = 4_000_000;
const samples = new Float64Array(MAX_SAMPLES);
let nSamples = 0;
let delivered = 0;
let firstSend = 0;
let lastReceive = 0;
let closedEarly = 0;

function record(sentAt) {
  const t = now();
  delivered += 1;
  lastReceive = t;
  if (nSamples < MAX_SAMPLES) samples[nSamples++] = t - sentAt;
}

// SyncStream frames: {"op":"event",...,"data":{"t":<ms>}} - read "t" without a full parse.
function onSyncstreamFrame(text) {
  const at = text.indexOf('"t":');
  if (at < 0 || !text.startsWith('{"op":"event"')) return;
  record(parseFloat(text.slice(at + 4)));
}

function openSyncstream(url, subscribe) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${url.replace(/^http/, "ws")}/ws?token=${token}`, { perMessageDeflate: false });
    let ready = false;
    ws.on("message", (data) => {
      const text = data.toString();
      if (!ready) {
        if (text.startsWith('{"op":"hello"')) {
          if (!subscribe) { ready = true; resolve(ws); return; }
          ws.send(JSON.stringify({ op: "subscribe", id: 1, topic }));
        } else if (text.startsWith('{"op":"reply"')) {
          ready = true;
          resolve(ws);
        } else if (text.startsWith('{"op":"error"')) {
          reject(new Error(text));
        }
        return;
      }
      onSyncstreamFrame(text);
    });
    ws.on("error", reject);
    ws.on("close", () => { if (ready) closedEarly += 1; });
  });
}

function openSocketio(url, subscribe) {
  return new Promise((resolve, reject) => {
    const socket = io(url, { transports: ["websocket"], forceNew: true, reconnection: false });
    socket.on("connect_error", reject);
    socket.on("event", (data) => record(data.t));
    socket.on("disconnect", () => { closedEarly += 1; });
    socket.on("connect", () => {
      if (!subscribe) return resolve(socket);
      socket.emit("join", topic, () => resolve(socket));
    });
  });
}

const open = kind === "socketio" ? openSocketio : openSyncstream;

async function main() {
  const subs = [];
  const batch = 100;
  for (let i = 0; i < clients; i += batch) {
    const group = [];
    for (let j = i; j < Math.min(clients, i + batch); j++) group.push(open(urls[j % urls.length], true));
    subs.push(...(await Promise.all(group)));
  }
  const publisher = await open(urls[0], false);
  const send = kind === "socketio"
    ? (n) => publisher.emit("publish", topic, { t: now(), n })
    : (n) => publisher.send(`{"op":"publish","topic":"${topic}","data":{"n":${n},"t":${now()}}}`);

  let sent = 0;
  firstSend = now();
  const end = firstSend + seconds * 1000;
  await new Promise((resolve) => {
    const tick = () => {
      const t = now();
      const due = Math.min(Math.floor(((t - firstSend) / 1000) * rate), Math.floor(seconds * rate));
      while (sent < due) send(sent++);
      if (t >= end) resolve();
      else setTimeout(tick, 2);
    };
    tick();
  });
  const expected = sent * clients;
  const drainUntil = now() + 5000;
  while (delivered < expected && now() < drainUntil) await new Promise((r) => setTimeout(r, 20));

  const lat = samples.subarray(0, nSamples).sort();
  const pct = (p) => (nSamples ? lat[Math.min(nSamples - 1, Math.floor((p / 100) * nSamples))] : null);
  const span = (lastReceive - firstSend) / 1000;
  console.log(JSON.stringify({
    kind, clients, rate, seconds, sent, expected, delivered,
    lost: expected - delivered,
    closed_early: closedEarly,
    delivered_per_s: span > 0 ? delivered / span : 0,
    p50_ms: pct(50), p99_ms: pct(99), max_ms: nSamples ? lat[nSamples - 1] : null,
  }));
  for (const s of subs) (s.terminate ? s.terminate() : s.disconnect());
  if (publisher.terminate) publisher.terminate(); else publisher.disconnect();
  process.exit(0);
}

main().catch((err) => { console.error(err); process.exit(1); });
