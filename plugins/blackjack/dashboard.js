// Blackjack on the admin dashboard: tables in play and adjusting a user's chips (see admin.js).
"use strict";
(() => {
  const { el, api, ask, toast, guarded, fmt, sum } = window.SyncStreamAdmin;
  window.SyncStreamAdmin.extend({
    tiles: [["Blackjack tables", () => fmt(sum("blackjack.tables"))]],
    userActions: ({ user, act, load }) => ({
      actions: [act("Adjust chips", async () => {
        const amount = el("input", { type: "number", step: "1", required: true, "aria-label": "chips" });
        const reason = el("input", { maxlength: "200", required: true, "aria-label": "reason" });
        if (!(await ask(`Adjust ${user.username}'s chips`, [el("label", {}, "Chips (negative to take)", amount), el("label", {}, "Reason", reason)], "Adjust"))) return;
        const result = await guarded(() => api(`/api/blackjack/wallets/${user.id}/adjust`, { method: "POST",
          body: { amount: Number(amount.value), reason: reason.value, request_id: crypto.randomUUID() } }));
        if (result) toast(`Balance now ${fmt(result.balance)} chips`);
        load();
      })],
    }),
    activity: ["blackjack."],
  });
})();
