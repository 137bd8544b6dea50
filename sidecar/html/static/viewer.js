// microagents-sidecar viewer: live updates over Server-Sent Events and raw JSON on demand.
// Served as a file (the page's Content-Security-Policy allows no inline script). The HTML it
// places comes from the server's templates, where transcript text was escaped.
"use strict";

function replaceParts(parts) {
  const atBottom = window.innerHeight + window.scrollY >= document.body.scrollHeight - 40;
  for (const part of parts) {
    const template = document.createElement("template");
    template.innerHTML = part.html;
    const fresh = template.content.firstElementChild;
    if (!fresh) continue;
    const old = document.getElementById(part.id);
    if (old) {
      keepOpen(old, fresh);
      old.replaceWith(fresh);
    } else if (part.parent) {
      let parent = document.getElementById(part.parent);
      if (!parent) {  // a new chunk of turns, after the others
        parent = document.createElement("section");
        parent.className = "chunk";
        parent.id = part.parent;
        document.getElementById("turns").appendChild(parent);
      }
      // A hidden chunk is drawn afresh when it is opened: nothing to add to it now.
      if (!parent.dataset.src) parent.appendChild(fresh);
    }
  }
  if (atBottom && document.body.dataset.follow !== "no") window.scrollTo(0, document.body.scrollHeight);
}

// What the reader opened (thinking, raw JSON) stays open when its part is replaced.
function keepOpen(old, fresh) {
  for (const details of old.querySelectorAll("details[open][id], details[open][data-src]")) {
    const key = details.id ? "#" + CSS.escape(details.id) : `details[data-src="${CSS.escape(details.dataset.src)}"]`;
    const twin = fresh.querySelector(key);
    if (twin) twin.open = true;
  }
}

function follow(url) {
  const state = document.getElementById("live-state");
  const source = new EventSource(url);
  source.addEventListener("open", () => { if (state) state.className = "live-state on"; });
  source.addEventListener("error", () => { if (state) state.className = "live-state off"; });
  source.addEventListener("parts", (message) => replaceParts(JSON.parse(message.data)));
  source.addEventListener("failed", (message) => {
    if (state) { state.className = "live-state off"; state.title = JSON.parse(message.data); }
  });
  source.addEventListener("end", () => { source.close(); if (state) state.className = "live-state off"; });
}

// Raw JSON of an event, fetched when its <details> is first opened.
document.addEventListener("toggle", async (event) => {
  const details = event.target;
  if (!(details instanceof HTMLDetailsElement) || !details.open || !details.dataset.src) return;
  const pre = details.querySelector("pre");
  if (!pre || pre.dataset.loaded) return;
  pre.dataset.loaded = "1";
  const response = await fetch(details.dataset.src, { credentials: "same-origin" });
  pre.textContent = response.ok ? await response.text() : `could not load: ${response.status}`;
}, true);

// A chunk of turns the page left out, fetched from the server (drawn there, escaped there)
// and put in place of the hidden one with the same id.
async function loadChunk(url) {
  const response = await fetch(url, { credentials: "same-origin" });
  if (!response.ok) return false;
  const template = document.createElement("template");
  template.innerHTML = await response.text();
  const fresh = template.content.firstElementChild;
  const old = fresh && document.getElementById(fresh.id);
  if (!old) return false;
  old.replaceWith(fresh);
  return true;
}

document.addEventListener("click", (event) => {
  const button = event.target instanceof Element ? event.target.closest(".show-chunk") : null;
  const chunk = button && button.closest("section.chunk[data-src]");
  if (chunk) loadChunk(chunk.dataset.src);
});

// A permalink to an event of a hidden chunk: load the chunk that holds it, then go there.
async function reveal() {
  const found = /^#e-(\d+)$/.exec(location.hash);
  const session = new URLSearchParams(location.search).get("id");
  if (!found || session === null || !document.getElementById("turns")) return;
  if (!document.getElementById(`e-${found[1]}`)) {
    const url = "/chunk?" + new URLSearchParams({ id: session, e: found[1] });
    if (!(await loadChunk(url))) return;
  }
  const target = document.getElementById(`e-${found[1]}`);
  if (target) target.scrollIntoView();
}

window.addEventListener("hashchange", reveal);

document.addEventListener("DOMContentLoaded", () => {
  if (document.body.dataset.live) follow(document.body.dataset.live);
  reveal();
});
