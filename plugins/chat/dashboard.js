// Chat on the admin dashboard: its audit records in the activity filter (see admin.js).
"use strict";
window.SyncStreamAdmin.extend({ activity: ["chat."] });
