// LL-HLS load client: N viewers following one live stream the way hls.js does in low-latency
// mode. Plain Node (raw sockets, a minimal HTTP/1.1 client, no npm packages), so the client
// is not what saturates.
//
// Each viewer has two keep-alive connections (a browser keeps up to six per host). For every
// part it sends, at once, the blocking playlist reload for the part after the last one listed
// (_HLS_msn / _HLS_part, RFC 8216bis 6.2.5.2) and the request for the part named by
// EXT-X-PRELOAD-HINT; both are held by the server until the part exists. For each answer the
// client records when it completed; the delay of an answer is its completion time minus the
// first completion of any viewer's request for the same thing (the moment the part landed, as
// seen from here). Errors and non-200 answers are counted.
//
//   node benchmarks/llhls_viewers.js BASE_URL VIEWERS SECONDS
//   -> one JSON line: viewers, answers, errors, p50_ms, p99_ms, max_ms, parts_per_viewer
"use strict";
const net = require("net");

const [base, viewersArg, secondsArg] = process.argv.slice(2);
const viewers = Number(viewersArg);
const seconds = Number(secondsArg);
const url = new URL(base);
const prefix = url.pathname.replace(/\/$/, "") + "/";
const HINT = /#EXT-X-PRELOAD-HINT:TYPE=PART,URI="([^"]+)"/;
const LENGTH = /\r\ncontent-length: *(\d+)/i;

const firsts = new Map(); // key -> first completion (ms)
const completions = []; // [key, ms]
let errors = 0;
let parts = 0;
const statuses = {}; // status -> count of answers that were not 200 (0: connection error)

// One keep-alive HTTP/1.1 connection with one request in flight at a time, on a raw socket:
// Node's http module cost the client more CPU per answer than the server spent on it. A part's
// bytes are counted, not kept: the client must stay cheaper than the server.
class Connection {
  constructor() {
    this.socket = net.connect(Number(url.port), url.hostname);
    this.socket.setNoDelay(true);
    this.pending = null; // {resolve, keep}
    this.head = null; // bytes of a response head not yet complete
    this.status = 0;
    this.left = -1; // body bytes still to come (-1: reading the head)
    this.size = 0;
    this.chunks = [];
    this.socket.on("data", (data) => this.received(data));
    this.socket.on("error", () => this.fail());
    this.socket.on("close", () => this.fail());
  }

  get(path, keep) {
    return new Promise((resolve) => {
      if (this.socket.destroyed) {
        resolve({ status: 0, size: 0, body: Buffer.alloc(0) });
        return;
      }
      this.pending = { resolve, keep };
      this.socket.write(`GET ${prefix}${path} HTTP/1.1\r\nHost: ${url.host}\r\n\r\n`);
    });
  }

  received(data) {
    while (data.length) {
      if (this.left < 0) {
        const head = this.head ? Buffer.concat([this.head, data]) : data;
        const end = head.indexOf("\r\n\r\n");
        if (end < 0) {
          this.head = head;
          return;
        }
        const text = head.toString("latin1", 0, end);
        this.status = Number(text.slice(9, 12));
        const length = LENGTH.exec(text);
        this.left = length ? Number(length[1]) : 0;
        this.size = 0;
        this.chunks = [];
        this.head = null;
        data = head.subarray(end + 4);
      }
      const take = Math.min(this.left, data.length);
      if (take && this.pending && this.pending.keep) this.chunks.push(data.subarray(0, take));
      this.size += take;
      this.left -= take;
      data = data.subarray(take);
      if (this.left === 0) {
        this.left = -1;
        const pending = this.pending;
        this.pending = null;
        if (pending) {
          const body = pending.keep ? Buffer.concat(this.chunks) : null;
          pending.resolve({ status: this.status, size: this.size, body });
        }
      }
    }
  }

  fail() {
    const pending = this.pending;
    this.pending = null;
    if (pending) pending.resolve({ status: 0, size: 0, body: Buffer.alloc(0) });
  }

  close() {
    this.socket.destroy();
  }
}

function record(key) {
  const now = performance.now();
  if (!firsts.has(key) || firsts.get(key) > now) firsts.set(key, now);
  completions.push([key, now]);
}

// (msn, part) of the part after the last one listed: the blocking reload's query.
function nextPosition(text) {
  const seq = Number(/#EXT-X-MEDIA-SEQUENCE:(\d+)/.exec(text)[1]);
  const lines = text.split("\n");
  let complete = 0;
  let open = 0;
  for (const line of lines) {
    if (line.startsWith("#EXTINF:")) {
      complete += 1;
      open = 0;
    } else if (line.startsWith("#EXT-X-PART:")) {
      open += 1;
    }
  }
  return [seq + complete, open];
}

async function viewer(until) {
  const playlists = new Connection();
  const media = new Connection();
  let res = await playlists.get("index.m3u8", true);
  if (res.status !== 200) {
    errors += 1;
    statuses[res.status] = (statuses[res.status] || 0) + 1;
    return;
  }
  let text = res.body.toString();
  while (performance.now() < until) {
    const hint = HINT.exec(text);
    if (!hint) break;
    const [msn, part] = nextPosition(text);
    const [playlist, hinted] = await Promise.all([
      playlists.get(`index.m3u8?_HLS_msn=${msn}&_HLS_part=${part}`, true).then((r) => {
        if (r.status === 200) record(`p:${msn}.${part}`);
        return r;
      }),
      media.get(hint[1], false).then((r) => {
        if (r.status === 200) record(`m:${hint[1]}`);
        return r;
      }),
    ]);
    if (playlist.status !== 200 || hinted.status !== 200) {
      errors += 1;
      for (const r of [playlist, hinted]) {
        if (r.status !== 200) statuses[r.status] = (statuses[r.status] || 0) + 1;
      }
      if (playlist.status !== 200) break;
    } else {
      parts += 1;
    }
    text = playlist.body.toString();
  }
  playlists.close();
  media.close();
}

async function main() {
  const start = performance.now();
  const until = start + seconds * 1000;
  // Viewers join over the first second, as an audience does.
  const runs = [];
  for (let i = 0; i < viewers; i += 1) {
    runs.push(new Promise((r) => setTimeout(r, (i * 1000) / viewers)).then(() => viewer(until)));
  }
  await Promise.all(runs);
  const warm = start + 2000; // the joining second and the first parts are left out
  const delays = completions
    .filter(([, t]) => t >= warm)
    .map(([key, t]) => t - firsts.get(key))
    .sort((a, b) => a - b);
  const q = (p) => (delays.length ? delays[Math.min(delays.length - 1, Math.floor(p * delays.length))] : null);
  console.log(
    JSON.stringify({
      viewers,
      answers: completions.length,
      errors,
      statuses,
      parts_per_viewer: parts / viewers,
      p50_ms: q(0.5),
      p99_ms: q(0.99),
      max_ms: delays.length ? delays[delays.length - 1] : null,
    }),
  );
}

main();
