// The chess benchmark's load client: every player of every game has a WebSocket of its own.
// Each game replays a line of legal moves chosen at random beforehand (by the Python side,
// with python-chess, so the bots spend no CPU on move generation): the side to move
// publishes its move on chess:<game> with its ply and times the round trip until the reply
// (the server has validated, stored and broadcast the move by then), and until the
// opponent's socket (both players subscribe to chess:<game>) has the new state.
// Pace "fixed" (default): a game's moves are due every `interval` s from a random phase of its
// own, whenever the replies come (open loop, as independent players are). Pace "after_reply":
// a bot waits `interval` s after each reply; every bot then replies to the server's rhythm,
// games answered in the same millisecond wake in the same timer tick, and over a run they
// merge into ever larger bursts (closed loop: the load synchronises itself).
// Usage: node bots.js OPTIONS.json  ({url, tokens: {white, black}, lines: {game id: [uci, ...]},
//                                     seconds, interval, warmup, pace})
// The first `warmup` seconds are played but not timed (first calls warm the server's caches).
// Prints "playing" once every socket is ready, "timed" when the warm-up is over, then one JSON line: moves, errors, round-trip percentiles (ms), client CPU seconds.
"use strict";
const { performance } = require("perf_hooks");
const WebSocket = require("ws");

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function connect(url, token) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${url.replace(/^http/, "ws")}/ws?token=${token}`, { perMessageDeflate: false });
    ws.waiting = new Map();
    ws.nextId = 0;
    ws.on("message", (data) => {
      const frame = JSON.parse(data.toString());
      if (frame.op === "hello") return resolve(ws);
      if (frame.op === "event") return ws.onEvent && ws.onEvent(frame.data);
      const done = ws.waiting.get(frame.id);
      if (done) { ws.waiting.delete(frame.id); done(frame); }
    });
    ws.on("error", reject);
  });
}

function request(ws, frame) {
  const id = ++ws.nextId;
  return new Promise((resolve) => {
    ws.waiting.set(id, resolve);
    ws.send(JSON.stringify({ ...frame, id }));
  });
}

async function main(opts) {
  const players = [];
  for (const game of Object.keys(opts.lines)) {
    const white = await connect(opts.url, opts.tokens.white);
    const black = await connect(opts.url, opts.tokens.black);
    for (const ws of [white, black]) await request(ws, { op: "subscribe", topic: `chess:${game}` });
    players.push({ game, white, black });
  }
  console.log("playing");  // the harness counts the server's CPU from here
  const rtts = [];
  const seen = [];  // publish -> the opponent's socket has the new state
  const lateness = [];  // fixed pace: how far behind its due time a move was sent (ms)
  const worst = { ms: 0, at: 0 };
  let errors = 0;
  let played = 0;  // every answered move, warm-up included (the server's CPU covers it all)
  const cpu0 = process.cpuUsage();
  const deadline = performance.now() + opts.seconds * 1000;
  const start = performance.now();
  setTimeout(() => console.log("timed"), (opts.warmup || 0) * 1000);  // warm-up over
  const fixed = (opts.pace || "fixed") === "fixed";
  await Promise.all(players.map(async ({ game, white, black }) => {
    const line = opts.lines[game];
    const phase = start + Math.random() * opts.interval * 1000;
    await sleep(phase - performance.now());
    let expect = null;  // {ply, t0, timed}: the state the opponent waits for
    for (const ws of [white, black]) {
      ws.onEvent = (data) => {
        if (data.type !== "state" || !expect || data.ply !== expect.ply || ws === expect.mover) return;
        if (expect.timed) seen.push(performance.now() - expect.t0);
        expect = null;
      };
    }
    for (let ply = 0; ply < line.length && performance.now() < deadline; ply++) {
      const due = phase + ply * opts.interval * 1000;
      if (fixed && performance.now() < due) await sleep(due - performance.now());
      const t0 = performance.now();
      const timed = t0 - start >= (opts.warmup || 0) * 1000;
      if (fixed && timed) lateness.push(t0 - due);
      const mover = ply % 2 === 0 ? white : black;
      expect = { ply: ply + 1, t0, timed, mover };
      const reply = await request(mover,
        { op: "publish", topic: `chess:${game}`, data: { move: line[ply], ply } });
      const rtt = performance.now() - t0;
      played += 1;
      if (timed) rtts.push(rtt);  // after the warm-up
      if (rtt > worst.ms) { worst.ms = rtt; worst.at = (t0 - start) / 1000; }
      if (reply.op !== "reply") {
        if (reply.code !== "game_over") errors += 1;  // fivefold, 75 moves: the server ends it
        return;
      }
      if (!fixed) await sleep(opts.interval * 1000);
    }
  }));
  const timedWall = (performance.now() - start) / 1000 - (opts.warmup || 0);
  const cpu = process.cpuUsage(cpu0);
  rtts.sort((a, b) => a - b);
  lateness.sort((a, b) => a - b);
  seen.sort((a, b) => a - b);
  const pct = (p, xs = rtts) => (xs.length ? xs[Math.min(xs.length - 1, Math.ceil((p / 100) * xs.length) - 1)] : null);
  console.log(JSON.stringify({
    moves: rtts.length, played, errors, moves_per_s: rtts.length / timedWall,
    rtt_p50_ms: pct(50), rtt_p99_ms: pct(99), rtt_max_ms: rtts.length ? rtts[rtts.length - 1] : null,
    rtt_max_at_s: worst.at,
    send_late_p99_ms: pct(99, lateness),
    seen_p50_ms: pct(50, seen), seen_p99_ms: pct(99, seen), seen_count: seen.length,
    client_cpu_s: (cpu.user + cpu.system) / 1e6,
  }));
  for (const p of players) { p.white.terminate(); p.black.terminate(); }
  process.exit(0);
}

main(JSON.parse(require("fs").readFileSync(process.argv[2], "utf8"))).catch((err) => { console.error(err); process.exit(1); });
