// The peer for the WebSocket fan-out benchmark: a Socket.IO server (WebSocket transport only,
// no compression) where clients join a room and a publisher's messages are broadcast to it
// with io.to(room).emit — Socket.IO's idiomatic fast path (one encode per broadcast).
"use strict";
const { Server } = require("socket.io");

const port = Number(process.argv[2] || 3001);
const io = new Server(port, {
  transports: ["websocket"],
  perMessageDeflate: false,
  serveClient: false,
});
io.on("connection", (socket) => {
  socket.on("join", (room, ack) => {
    socket.join(room);
    if (typeof ack === "function") ack("ok");
  });
  socket.on("publish", (room, data) => io.to(room).emit("event", data));
});
console.log(JSON.stringify({ listening: port }));
