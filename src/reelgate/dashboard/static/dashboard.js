// reelgate dashboard: the create form's limits, live progress (server-sent events),
// and a confirmation before a delete. Plain JavaScript, no libraries.
"use strict";

const TERMINAL = new Set(["SUCCESS", "FAILED", "ERROR"]);
let leaving = false; // a form was sent: its answer, not a reload, comes next

function limitForm() {
  const model = document.getElementById("model");
  if (!model) return;
  const seconds = document.getElementById("seconds");
  const range = document.getElementById("seconds-range");
  const resolution = document.getElementById("resolution");
  const image = document.getElementById("image");
  const note = document.getElementById("image-note");
  function apply() {
    const chosen = model.selectedOptions[0];
    if (!chosen) return;
    const min = Number(chosen.dataset.min), max = Number(chosen.dataset.max);
    seconds.min = String(min);
    seconds.max = String(max);
    const value = Number(seconds.value);
    if (!Number.isInteger(value) || value < min) seconds.value = String(min);
    else if (value > max) seconds.value = String(max);
    range.textContent = min + "–" + max + " s";
    const keep = resolution.value;
    const offered = chosen.dataset.resolutions.split(" ");
    resolution.replaceChildren(...offered.map((r) => new Option(r, r, false, r === keep)));
    const takesImage = chosen.dataset.image === "1";
    image.disabled = !takesImage;
    if (!takesImage) image.value = "";
    note.textContent = takesImage ? "PNG, JPEG or WebP" : "this model takes text only";
  }
  model.addEventListener("change", apply);
  apply();
}

function show(row, video) {
  const status = row.querySelector(".status");
  if (status) {
    status.textContent = video.status;
    status.className = "status s-" + video.status;
  }
  const bar = row.querySelector("progress");
  if (bar) bar.value = video.progress;
  const pct = row.querySelector(".pct, #progress-text");
  if (pct) pct.textContent = video.progress + " %";
}

function listen(url, onVideo) {
  const source = new EventSource(url);
  const handle = (message) => onVideo(JSON.parse(message.data), message, source);
  source.addEventListener("status", handle);
  source.addEventListener("progress", handle);
  source.addEventListener("end", () => source.close());
  return source;
}

function liveList() {
  const table = document.getElementById("task-table");
  if (!table || !table.dataset.live) return;
  const ids = table.dataset.live.split(" ");
  const query = ids.map((id) => "task=" + encodeURIComponent(id)).join("&");
  const open = new Set(ids);
  listen("/dashboard/events?" + query, (video, _message, source) => {
    const row = table.querySelector('tr[data-task="' + CSS.escape(video.id) + '"]');
    if (row) show(row, video);
    if (TERMINAL.has(video.status)) {
      open.delete(video.id);
      if (open.size === 0) source.close();
    }
  });
}

function liveTask() {
  const card = document.getElementById("task");
  if (!card || !card.dataset.stream) return;
  const events = document.querySelector("#events tbody");
  listen(card.dataset.stream, (video, message, source) => {
    show(card, video);
    const row = events.insertRow();
    const at = new Date().toISOString().replace("T", " ").slice(0, 19) + " UTC";
    for (const text of [message.lastEventId, at, video.status, video.progress + " %", ""]) {
      row.insertCell().textContent = text;
    }
    if (TERMINAL.has(video.status)) {
      source.close();
      if (!leaving) window.location.reload(); // the video, the thumbnail or the error
    }
  });
}

function confirmations() {
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  }
}

document.addEventListener("submit", () => { leaving = true; });
document.addEventListener("DOMContentLoaded", () => {
  limitForm();
  liveList();
  liveTask();
  confirmations();
});
