// The landing page: what runs on this node (GET /api/node) and who is live (GET
// /api/live/streams), with links to each watch page. No token: everything here is public.
"use strict";
(async () => {
  const $ = (id) => document.getElementById(id);
  const origin = location.origin;
  const link = (href, text) => {
    const a = document.createElement("a");
    a.href = href;
    a.textContent = text;
    return a;
  };
  const node = await (await fetch("/api/node")).json();
  $("node").textContent = `version ${node.version} · node ${node.node}`;
  $("plugins").textContent = `Plugins: ${node.plugins.join(", ") || "none"}`;
  for (const { label, value } of node.links) {
    const text = value.replaceAll("{url}", origin);
    const item = document.createElement("li");
    const url = text.match(/^(https?:\/\/\S+)(.*)$/);
    if (url && !url[1].includes("<")) item.append(`${label}: `, link(url[1], url[1]), url[2]);
    else item.append(`${label}: ${text}`);
    if (label === "RTMP ingest") $("rtmp").textContent = text;
    $("links").append(item);
  }
  const { streams } = await (await fetch("/api/live/streams")).json();
  $("no-streams").hidden = streams.length > 0;
  for (const stream of streams) {
    const item = document.createElement("li");
    const a = link(`/watch/${encodeURIComponent(stream.name)}`, "");
    const img = document.createElement("img");
    if (stream.thumbnail) img.src = stream.thumbnail;
    img.alt = "";
    a.append(img, `${stream.name} · ${stream.owner.username} · ${stream.viewers.total} watching`);
    item.append(a);
    $("streams").append(item);
  }
})().catch((err) => { document.getElementById("node").textContent = `error: ${err}`; });
