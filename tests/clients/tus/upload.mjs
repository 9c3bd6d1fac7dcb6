// Upload a file with tus-js-client, abort it part way, then resume it as a browser would.
// Usage: node upload.mjs ENDPOINT TOKEN FILE CHUNK_BYTES
// Prints one JSON line per event: {"event": "aborted" | "resumed" | "success" | "error", ...}
import { readFileSync } from "node:fs";
import { basename } from "node:path";
import * as tus from "tus-js-client";

const [endpoint, token, file, chunk] = process.argv.slice(2);
const data = readFileSync(file);
const chunkSize = Number(chunk);
const say = (event, extra = {}) => console.log(JSON.stringify({ event, ...extra }));

function options(extra) {
  return {
    endpoint,
    chunkSize,
    uploadDataDuringCreation: true,
    headers: { Authorization: `Bearer ${token}` },
    metadata: { filename: basename(file), filetype: "application/x-made-up" },
    retryDelays: null,
    onError: (error) => {
      say("error", { message: String(error) });
      process.exit(1);
    },
    ...extra,
  };
}

const first = new tus.Upload(data, options({
  onProgress: (sent) => {
    if (sent >= 2 * chunkSize && first.url) {
      first.abort().then(() => {
        say("aborted", { url: first.url, sent });
        resume(first.url);
      });
    }
  },
  onSuccess: () => say("error", { message: "finished before it could be aborted" }),
}));
first.start();

function resume(url) {
  let reported = false;
  const second = new tus.Upload(data, options({
    uploadUrl: url,
    onProgress: (sent) => {
      if (!reported) {
        reported = true;
        say("resumed", { sent });
      }
    },
    onSuccess: () => say("success", { url: second.url }),
  }));
  second.start();
}
