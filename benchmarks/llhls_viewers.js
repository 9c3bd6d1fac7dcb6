// LL-HLS load client: N viewers following one live stream the way hls.js does in low-latency
// mode. Plain Node (http module, no npm packages), so the client is not what saturates.
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
const http = require("http");

const [base, viewersArg, secondsArg] = process.argv.slice(2);
const viewers = Number(viewersArg);
const seconds = Number(secondsArg);
const url = new URL(base);
const HINT = /#EXT-X-PRELOAD-HINT:TYPE=PART,URI="([^"]+)"/;

const firsts = new Map(); // key -> first completion (ms)
const completions = []; // [key, ms]
let errors = 0;
let parts = 0;
const statuses = {}; // status -> count of answers that were not 200 (0: connection error)

// A part's bytes are counted, not kept: the client must stay cheaper than the server.
function get(agent, path, keep = true) {
  return new Promise((resolve) => {
    const req = http.get(
      { host: url.hostname, port: url.port, path: url.pathname.replace(/\/$/, "") + "/" + path, agent },
      (res) => {
        const chunks = [];
        let size = 0;
        res.on("data", (c) => {
          size += c.length;
          if (keep) chunks.push(c);
        });
        res.on("end", () =>
          resolve({ status: res.statusCode, size, body: keep ? Buffer.concat(chunks) : null }),
        );
        res.on("error", () => resolve({ status: 0, body: Buffer.alloc(0) }));
      },
    );
    req.on("error", () => resolve({ status: 0, body: Buffer.alloc(0) }));
  });
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
  const agent = new http.Agent({ keepAlive: true, maxSockets: 2 });
  let res = await get(agent, "index.m3u8");
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
    const [playlist, media] = await Promise.all([
      get(agent, `index.m3u8?_HLS_msn=${msn}&_HLS_part=${part}`).then((r) => {
        if (r.status === 200) record(`p:${msn}.${part}`);
        return r;
      }),
      get(agent, hint[1], false).then((r) => {
        if (r.status === 200) record(`m:${hint[1]}`);
        return r;
      }),
    ]);
    if (playlist.status !== 200 || media.status !== 200) {
      errors += 1;
      for (const r of [playlist, media]) {
        if (r.status !== 200) statuses[r.status] = (statuses[r.status] || 0) + 1;
      }
      if (playlist.status !== 200) break;
    } else {
      parts += 1;
    }
    text = playlist.body.toString();
  }
  agent.destroy();
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
