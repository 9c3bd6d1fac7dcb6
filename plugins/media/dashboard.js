// Media jobs on the admin dashboard: the queue on the overview (see admin.js).
"use strict";
(() => {
  const { fmt, sum } = window.SyncStreamAdmin;
  window.SyncStreamAdmin.extend({
    tiles: [["Jobs queued", () => fmt(sum("jobs.queued")), () => `${fmt(sum("jobs.running"))} running`]],
  });
})();
