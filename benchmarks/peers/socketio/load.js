// The load client shared by both servers, so the client side costs the same for each.
// Opens N subscriber sockets, then one publisher sends `rate` events/s for `seconds`; every
// event carries its send time (performance.timeOrigin + performance.now(), ms) and receivers
// record latency = receive time - send time. Every received frame is fully decoded: JSON.parse
// for SyncStream, socket.io-client's own decoder for Socket.IO.
//
// Usage: node load.js '<json options>'  -> prints one JSON line of results.
// Options: kind ("syncstream" | "socketio" | "chat"), urls (subscribers are spread over them,
// the publisher uses urls[0]), token, clients, rate, seconds, topic, workers (1: one process
// does everything; 2+: that many forked processes hold the subscribers and this one only
// publishes). rooms = [[topic, size], ...] (sizes add up to clients): client j joins the room
// its index falls in and the publisher sends to the rooms in turn; kind "chat" sends chat
// messages (the text carries the send time, read back from message events), "socketio"
// broadcasts to the Socket.IO room.
"use strict";
const { fork } = require("child_process");
const { performance } = require("perf_hooks");
const WebSocket = require("ws");
const { io } = require("socket.io-client");

const BUCKET_MS = 0.1; // latency histogram resolution
const BUCKETS = 300_000; // 0 .. 30 s; later arrivals land in the last bucket
const DRAIN_MS = 5000; // how long receivers may lag behind the last send
const OPEN_TIMEOUT_MS = 60_000;

const now = () => performance.timeOrigin + performance.now();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function cpuSeconds() {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1e6;
}

// --- receiving ---------------------------------------------------------------------------

class Receiver {
  constructor(opts) {
    this.opts = opts;
    this.hist = new Uint32Array(BUCKETS);
    this.delivered = 0;
    this.lastReceive = 0;
    this.closedEarly = 0;
    this.maxMs = 0;
    this.sockets = [];
  }

  record(sentAt) {
    const t = now();
    const ms = t - sentAt;
    this.delivered += 1;
    this.lastReceive = t;
    if (ms > this.maxMs) this.maxMs = ms;
    this.hist[Math.min(BUCKETS - 1, Math.max(0, Math.floor(ms / BUCKET_MS)))] += 1;
  }

  open(url, subscribe, topic) {
    return this.opts.kind === "socketio" ? this.openSocketio(url, subscribe, topic) : this.openSyncstream(url, subscribe, topic);
  }

  openSyncstream(url, subscribe, topic = this.opts.topic) {
    const { token } = this.opts;
    const chat = this.opts.kind === "chat";
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(`${url.replace(/^http/, "ws")}/ws?token=${token}`, { perMessageDeflate: false });
      let ready = false;
      ws.publishErrors = 0;
      ws.on("message", (data) => {
        const frame = JSON.parse(data.toString());
        if (frame.op === "event") {
          if (!chat) this.record(frame.data.t);
          else if (frame.data.type === "message") this.record(parseFloat(frame.data.message.text));
        } else if (frame.op === "hello" && !ready) {
          if (subscribe) ws.send(JSON.stringify({ op: "subscribe", id: 1, topic }));
          else { ready = true; resolve(ws); }
        } else if (frame.op === "reply" && !ready) {
          ready = true;
          resolve(ws);
        } else if (frame.op === "error") {
          if (!ready) reject(new Error(JSON.stringify(frame)));
          else ws.publishErrors += 1;
        }
      });
      ws.on("error", reject);
      ws.on("close", () => { if (ready) this.closedEarly += 1; });
    });
  }

  openSocketio(url, subscribe, topic = this.opts.topic) {
    return new Promise((resolve, reject) => {
      const socket = io(url, { transports: ["websocket"], forceNew: true, reconnection: false });
      socket.publishErrors = 0;
      socket.on("connect_error", reject);
      socket.on("event", (data) => this.record(data.t));
      socket.on("disconnect", () => { this.closedEarly += 1; });
      socket.on("connect", () => {
        if (!subscribe) return resolve(socket);
        socket.emit("join", topic, () => resolve(socket));
      });
    });
  }

  async subscribeAll(clients) {
    const batch = 100;
    for (let i = 0; i < clients.length; i += batch) {
      const group = clients.slice(i, i + batch).map(
        (j) => this.open(this.opts.urls[j % this.opts.urls.length], true, topicOf(this.opts, j)));
      this.sockets.push(...(await Promise.all(group)));
    }
  }

  async drain(expected, until) {
    while (this.delivered < expected && now() < until) await sleep(20);
  }

  stats() {
    const sparse = [];
    for (let i = 0; i < BUCKETS; i++) if (this.hist[i]) sparse.push([i, this.hist[i]]);
    return {
      delivered: this.delivered,
      lastReceive: this.lastReceive,
      closedEarly: this.closedEarly,
      maxMs: this.maxMs,
      hist: sparse,
      cpu: cpuSeconds(),
    };
  }

  closeAll() {
    for (const s of this.sockets) (s.terminate ? s.terminate() : s.disconnect());
  }
}

// The subscribers of client number j go to urls[j % urls.length] and worker j % workers.
function myClients(opts, worker, workers) {
  const mine = [];
  for (let j = 0; j < opts.clients; j++) if (j % workers === worker) mine.push(j);
  return mine;
}

// The topic client j subscribes to: its room (kind "chat"), else the one topic.
function topicOf(opts, j) {
  if (!opts.rooms) return opts.topic;
  let end = 0;
  for (const [topic, size] of opts.rooms) {
    end += size;
    if (j < end) return topic;
  }
  return opts.rooms[opts.rooms.length - 1][0];
}

// Deliveries the given clients should see when `sent` messages went out: for chat, each
// message reaches the clients of the room it was sent to (rooms in turn).
function expectedFor(opts, clients, sent) {
  if (!opts.rooms) return sent * clients.length;
  const perRoom = new Map();
  for (const j of clients) perRoom.set(topicOf(opts, j), (perRoom.get(topicOf(opts, j)) || 0) + 1);
  let total = 0;
  opts.rooms.forEach(([topic], r) => {
    const messages = Math.floor(sent / opts.rooms.length) + (r < sent % opts.rooms.length ? 1 : 0);
    total += messages * (perRoom.get(topic) || 0);
  });
  return total;
}

// --- a forked worker: holds its share of the subscribers -----------------------------------

function runWorker() {
  let receiver;
  process.on("message", async (msg) => {
    try {
      if (msg.cmd === "open") {
        receiver = new Receiver(msg.opts);
        await receiver.subscribeAll(myClients(msg.opts, msg.worker, msg.workers));
        receiver.cpuAtReady = cpuSeconds();
        process.send({ cmd: "ready" });
      } else if (msg.cmd === "finish") {
        await receiver.drain(expectedFor(msg.opts, myClients(msg.opts, msg.worker, msg.workers), msg.sent), msg.until);
        const stats = receiver.stats();
        stats.cpu -= receiver.cpuAtReady;
        process.send({ cmd: "stats", stats });
        receiver.closeAll();
        setTimeout(() => process.exit(0), 50);
      }
    } catch (err) {
      process.send({ cmd: "failed", error: String(err && err.stack || err) });
      process.exit(1);
    }
  });
}

function ask(child, message, reply) {
  return new Promise((resolve, reject) => {
    const onMessage = (msg) => {
      if (msg.cmd === "failed") reject(new Error(msg.error));
      else if (msg.cmd === reply) { child.off("message", onMessage); resolve(msg); }
    };
    child.on("message", onMessage);
    child.once("exit", (code) => code && reject(new Error(`worker exited with ${code}`)));
    child.send(message);
  });
}

// --- the coordinator: publishes, and receives itself when workers == 1 ---------------------

function withTimeout(promise, ms, what) {
  let timer;
  const limit = new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`${what} timed out`)), ms); });
  return Promise.race([promise, limit]).finally(() => clearTimeout(timer));
}

function percentile(hist, total, p) {
  if (!total) return null;
  const rank = Math.max(1, Math.ceil((p / 100) * total));
  let seen = 0;
  for (const [bucket, count] of hist) {
    seen += count;
    if (seen >= rank) return (bucket + 0.5) * BUCKET_MS;
  }
  return null;
}

async function main(opts) {
  const workers = Math.max(1, opts.workers || 1);
  const { kind, clients, rate, seconds, topic } = opts;
  const local = workers === 1 ? new Receiver(opts) : null;
  const children = [];
  if (local) {
    await withTimeout(local.subscribeAll(myClients(opts, 0, 1)), OPEN_TIMEOUT_MS, "opening sockets");
  } else {
    for (let w = 0; w < workers; w++) children.push(fork(__filename, ["--worker"]));
    await withTimeout(
      Promise.all(children.map((c, w) => ask(c, { cmd: "open", opts, worker: w, workers }, "ready"))),
      OPEN_TIMEOUT_MS, "opening sockets");
  }
  const pubSide = local || new Receiver(opts);
  const publisher = await pubSide.open(opts.urls[0], false);
  const roomOf = (n) => (opts.rooms ? opts.rooms[n % opts.rooms.length][0] : topic);
  const send = kind === "socketio"
    ? (n) => publisher.emit("publish", roomOf(n), { n, t: now() })
    : kind === "chat"
      ? (n) => publisher.send(`{"op":"publish","id":${n + 2},"topic":"${opts.rooms[n % opts.rooms.length][0]}","data":{"text":"${now()}"}}`)
      : (n) => publisher.send(`{"op":"publish","id":${n + 2},"topic":"${topic}","data":{"n":${n},"t":${now()}}}`);

  const cpuBefore = cpuSeconds();
  let sent = 0;
  const firstSend = now();
  const total = Math.floor(seconds * rate);
  await new Promise((resolve) => {
    const tick = () => {
      const due = Math.min(Math.floor(((now() - firstSend) / 1000) * rate), total);
      while (sent < due) send(sent++);
      if (sent >= total) resolve();
      else setTimeout(tick, 1);
    };
    tick();
  });
  const until = now() + DRAIN_MS;
  let parts;
  const expected = expectedFor(opts, myClients(opts, 0, 1), sent);
  if (local) {
    await local.drain(expected, until);
    parts = [local.stats()];
  } else {
    parts = (await Promise.all(children.map((c, w) => ask(
      c, { cmd: "finish", opts, worker: w, workers, sent, until }, "stats"))))
      .map((m) => m.stats);
  }

  const merged = new Map();
  for (const part of parts) for (const [b, c] of part.hist) merged.set(b, (merged.get(b) || 0) + c);
  const hist = [...merged.entries()].sort((a, b) => a[0] - b[0]);
  const delivered = parts.reduce((s, p) => s + p.delivered, 0);
  const lastReceive = Math.max(...parts.map((p) => p.lastReceive));
  const span = (lastReceive - firstSend) / 1000;
  // CPU of the client during the run: the coordinator's since the first send, plus each
  // worker's since its sockets were open.
  const clientCpu = cpuSeconds() - cpuBefore + (local ? 0 : parts.reduce((s, p) => s + p.cpu, 0));
  console.log(JSON.stringify({
    kind, clients, rate, seconds, workers, sent, expected, delivered,
    lost: expected - delivered,
    publish_errors: publisher.publishErrors,
    closed_early: parts.reduce((s, p) => s + p.closedEarly, 0),
    delivered_per_s: span > 0 ? delivered / span : 0,
    p50_ms: percentile(hist, delivered, 50),
    p99_ms: percentile(hist, delivered, 99),
    max_ms: delivered ? Math.max(...parts.map((p) => p.maxMs)) : null,
    client_cpu_s: clientCpu,
  }));
  if (local) local.closeAll();
  if (publisher.terminate) publisher.terminate(); else publisher.disconnect();
  process.exit(0);
}

if (process.argv[2] === "--worker") runWorker();
else main(JSON.parse(process.argv[2])).catch((err) => { console.error(err); process.exit(1); });
