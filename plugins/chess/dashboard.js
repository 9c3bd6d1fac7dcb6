// Chess on the admin dashboard: games in play, ending a game, a user's games (see admin.js).
"use strict";
(() => {
  const { el, api, guarded, fmt, when, sum } = window.SyncStreamAdmin;
  window.SyncStreamAdmin.extend({
    tiles: [["Chess games", () => fmt(sum("chess.games_active"))]],
    userActions: ({ facts, act, load }) => ({
      ends: (facts.chess?.playing_now || []).map((gameId) => act(`End chess game ${gameId.slice(0, 8)}…`, async () => {
        await guarded(() => api(`/api/chess/games/${gameId}/stop`, { method: "POST" }), "Game ended");
        load();
      }, true)),
    }),
    sections: [{
      title: "Chess games",
      head: ["Players", "Kind", "Started", ""],
      async fill(body, { endButton, none }) {
        const playing = await guarded(() => api("/api/chess/games/live"));
        if (!playing) return;
        body.replaceChildren(...(playing.games.length ? playing.games.map((g) => el("tr", { "data-game": g.id },
          el("td", {}, `${g.white} – ${g.black}`), el("td", {}, g.rated ? "rated" : "casual"), el("td", {}, when(g.created_at)),
          el("td", {}, endButton("End game", "The game", `/api/chess/games/${g.id}/stop`)))) : none("No games in progress.")));
      },
    }],
    activity: ["chess."],
  });
})();
