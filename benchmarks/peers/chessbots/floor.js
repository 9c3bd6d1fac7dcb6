// The chess benchmark's floor: a Node `ws` server that speaks just enough of the gateway's
// protocol for bots.js (hello; subscribe -> reply; publish -> reply + a state event of the
// same size to every subscriber of the topic) and does nothing else: no rules, no clocks,
// no storage. The same bots on the same cores against it show what the machine, the
// client and 2 x games sockets cost by themselves, so the server's figures read as a ratio.
// Usage: node floor.js PORT   (prints "listening" once ready)
"use strict";
const http = require("http");
const WebSocket = require("ws");

const FEN = "rnbqkbnr/pppppppp/8/8/4P3/8/PPPP1PPP/RNBQKBNR b KQkq - 0 1";
const topics = new Map(); // topic -> Set of sockets
const seqs = new Map(); // topic -> seq

const server = http.createServer();
const wss = new WebSocket.Server({ server, perMessageDeflate: false });
wss.on("connection", (ws) => {
  ws.topics = [];
  ws.send(JSON.stringify({ op: "hello", data: { client_id: "floor", heartbeat: 20 } }));
  ws.on("message", (raw) => {
    const frame = JSON.parse(raw.toString());
    if (frame.op === "subscribe") {
      if (!topics.has(frame.topic)) topics.set(frame.topic, new Set());
      topics.get(frame.topic).add(ws);
      ws.topics.push(frame.topic);
      ws.send(JSON.stringify({ op: "reply", id: frame.id, topic: frame.topic,
        data: { seq: seqs.get(frame.topic) || 0, epoch: "floor", recovered: false } }));
    } else if (frame.op === "publish") {
      const seq = (seqs.get(frame.topic) || 0) + 1;
      seqs.set(frame.topic, seq);
      const ply = frame.data.ply + 1;
      ws.send(JSON.stringify({ op: "reply", id: frame.id, topic: frame.topic, data: { seq } }));
      const event = JSON.stringify({ op: "event", topic: frame.topic, seq, epoch: "floor", data: {
        type: "state", id: frame.topic, seq: ply, status: "started", result: "*", termination: null,
        fen: FEN, turn: ply % 2 ? "black" : "white", ply,
        last_move: { uci: frame.data.move, san: frame.data.move }, check: false,
        clocks: { white: 3600000, black: 3600000 }, clock_running: "white",
        draw_offer: null, takeback_offer: null, claimable_draw: false } });
      for (const peer of topics.get(frame.topic) || []) peer.send(event);
    }
  });
  ws.on("close", () => { for (const t of ws.topics) topics.get(t).delete(ws); });
});
server.listen(Number(process.argv[2]), "127.0.0.1", () => console.log("listening"));
