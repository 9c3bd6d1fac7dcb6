// Files on the admin dashboard: storage used and public links, revoked or deleted (see admin.js).
"use strict";
(() => {
  const { el, api, ask, guarded, fmt, bytes, when, most } = window.SyncStreamAdmin;
  window.SyncStreamAdmin.extend({
    tiles: [["Storage", () => bytes(most("files.bytes"))]],
    sections: [{
      title: "Public links",
      head: ["Item", "Owner", "Created", "Expires", "Downloads", ""],
      wide: true,
      async fill(body, { none, load }) {
        const shared = await guarded(() => api("/api/files/links"));
        if (!shared) return;
        body.replaceChildren(...(shared.links.length ? shared.links.map((l) => el("tr", {},
          el("td", {}, l.name), el("td", {}, l.owner), el("td", {}, when(l.created_at)), el("td", {}, l.expires_at ? when(l.expires_at) : "never"),
          el("td", {}, fmt(l.downloads)), el("td", {}, el("div", { class: "actions" },
            el("button", { type: "button", onclick: async () => { await guarded(() => api(`/api/files/links/${l.token}`, { method: "DELETE" }), "Link revoked"); load(); } }, "Revoke"),
            el("button", { type: "button", class: "danger", onclick: async () => {
              if (!(await ask(`Delete ${l.name} for good?`, `It belongs to ${l.owner}; this cannot be undone.`, "Delete", true))) return;
              await guarded(() => api(`/api/files/${l.node_id}?permanent=true`, { method: "DELETE" }), `${l.name} deleted`);
              load();
            } }, "Delete file"))))) : none("No public links.")));
      },
    }],
    activity: ["file."],
  });
})();
