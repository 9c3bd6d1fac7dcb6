// Calls on the admin dashboard: calls in progress, ending one, a user's call (see admin.js).
"use strict";
(() => {
  const { el, api, guarded, fmt, when, sum } = window.SyncStreamAdmin;
  window.SyncStreamAdmin.extend({
    tiles: [["Calls", () => fmt(sum("calls.active"))]],
    userActions: ({ facts, act, load }) => ({
      ends: facts.calls?.in_call ? [act("End their call", async () => {
        await guarded(() => api(`/api/calls/${facts.calls.in_call}/end`, { method: "POST" }), "Call ended");
        load();
      }, true)] : [],
    }),
    sections: [{
      title: "Calls",
      head: ["In the call", "Kind", "", "Started", ""],
      async fill(body, { endButton, none }) {
        const talking = await guarded(() => api("/api/calls/live"));
        if (!talking) return;
        body.replaceChildren(...(talking.calls.length ? talking.calls.map((c) => el("tr", { "data-call": c.id },
          el("td", {}, c.participants.filter((p) => p.state === "joined").map((p) => p.username).join(", ") || "–"),
          el("td", {}, `${c.kind}, ${c.route}`), el("td", {}, c.recording ? el("span", { class: "tag critical" }, "recording") : ""),
          el("td", {}, when(c.created_at)), el("td", {}, endButton("End call", "The call", `/api/calls/${c.id}/end`)))) : none("No calls on this node.")));
      },
    }],
    activity: ["call."],
  });
})();
