// scrubproxy scrubber page: one frame on screen, a timeline to drag, keys to step.
//
// Requests run one at a time. While one is in flight, newer wishes wait in
// `pending`: a drag replaces whatever waits there (only the newest position
// matters, stale ones are never fetched), key steps add up (three presses of
// the right arrow are three frames). So the picture follows the pointer
// without a backlog, however fast it moves.
"use strict";

const $ = (id) => document.getElementById(id);
const timelineEl = $("timeline");
const img = $("frame");

let timeline = null; // /api/timeline
let current = null; // what is on screen: {frame, segment, sourceFrame, sourceTime, time}
let pending = null; // {frame} | {time} | {step} | {timeStep}
let busy = false;
let objectUrl = null;

const clamp = (x, lo, hi) => Math.min(hi, Math.max(lo, x));

function say(text, isError = false) {
  const el = $("status");
  el.textContent = text;
  el.classList.toggle("error", isError);
}

function want(action) {
  if (pending && "step" in pending && "step" in action) pending = { step: pending.step + action.step };
  else if (pending && "timeStep" in pending && "timeStep" in action) pending = { timeStep: pending.timeStep + action.timeStep };
  else pending = action;
  if (!busy) pump();
}

function urlFor(action) {
  const v = `v=${timeline.version}`;
  const last = timeline.frames - 1;
  if ("frame" in action) return `/frames/${clamp(action.frame, 0, last)}.jpg?${v}`;
  if ("step" in action) return `/frames/${clamp((current ? current.frame : 0) + action.step, 0, last)}.jpg?${v}`;
  const t = "time" in action ? action.time : (current ? current.time : 0) + action.timeStep;
  return `/frames/at.jpg?t=${clamp(t, 0, timeline.duration).toFixed(6)}&${v}`;
}

async function pump() {
  busy = true;
  document.body.dataset.state = "loading";
  while (pending) {
    const action = pending;
    pending = null;
    try {
      const res = await fetch(urlFor(action));
      if (!res.ok) {
        const body = await res.json().catch(() => ({ error: res.statusText }));
        say(`${res.status}: ${body.error}`, true);
        continue;
      }
      const h = res.headers;
      const info = {
        frame: Number(h.get("X-Frame")),
        segment: Number(h.get("X-Segment")),
        sourceFrame: Number(h.get("X-Source-Frame")),
        sourceTime: Number(h.get("X-Source-Time")),
        time: Number(h.get("X-Timeline-Time")),
      };
      await show(await res.blob(), info);
    } catch (err) {
      say(String(err), true);
    }
  }
  busy = false;
  document.body.dataset.state = "idle";
}

function clock(seconds) {
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = (seconds % 60).toFixed(3).padStart(6, "0");
  return (h ? `${h}:${String(m).padStart(2, "0")}` : `${m}`) + `:${s}`;
}

async function show(blob, info) {
  const url = URL.createObjectURL(blob);
  img.src = url;
  try {
    await img.decode();
  } catch (err) {
    // a frame that does not decode still updates the numbers; the picture stays
  }
  if (img.naturalHeight) img.style.setProperty("--aspect", String(img.naturalWidth / img.naturalHeight));
  if (objectUrl) URL.revokeObjectURL(objectUrl);
  objectUrl = url;
  current = info;
  const seg = timeline.segments[info.segment];
  img.dataset.frame = String(info.frame);
  $("segment-name").textContent = seg.name;
  $("source-frame").textContent = String(info.sourceFrame);
  $("source-time").textContent = `${info.sourceTime.toFixed(3)} s`;
  $("frame-number").textContent = String(info.frame);
  $("timeline-time").textContent = clock(info.time);
  $("playhead").style.left = `${(100 * info.time) / (timeline.duration || 1)}%`;
  $("original").href = `/original/${info.frame}.png?v=${timeline.version}`;
  timelineEl.setAttribute("aria-valuenow", String(info.frame));
  history.replaceState(null, "", `#f=${info.frame}`);
}

function drawTimeline() {
  const box = $("segments");
  box.replaceChildren();
  for (const seg of timeline.segments) {
    const div = document.createElement("div");
    div.className = "segment";
    div.style.left = `${(100 * seg.start_time) / timeline.duration}%`;
    div.style.width = `${(100 * seg.duration) / timeline.duration}%`;
    div.textContent = seg.name;
    div.title = `${seg.name}: frames ${seg.first_frame} to ${seg.last_frame}`;
    box.appendChild(div);
  }
  $("frame-count").textContent = String(timeline.frames);
  timelineEl.setAttribute("aria-valuemax", String(timeline.frames - 1));
}

// -- pointer: mouse, pen and touch alike ---------------------------------------
let dragging = null;

function seekToPointer(event) {
  const box = timelineEl.getBoundingClientRect();
  const fraction = clamp((event.clientX - box.left) / box.width, 0, 1);
  want({ time: fraction * timeline.duration });
}

timelineEl.addEventListener("pointerdown", (event) => {
  if (!timeline || event.button > 0) return;
  dragging = event.pointerId;
  timelineEl.setPointerCapture(event.pointerId);
  timelineEl.focus();
  seekToPointer(event);
  event.preventDefault();
});
timelineEl.addEventListener("pointermove", (event) => {
  if (dragging === event.pointerId) seekToPointer(event);
});
for (const type of ["pointerup", "pointercancel", "lostpointercapture"]) {
  timelineEl.addEventListener(type, (event) => {
    if (dragging === event.pointerId) dragging = null;
  });
}

// -- keys and buttons ----------------------------------------------------------
const KEYS = {
  ArrowLeft: (shift) => (shift ? { timeStep: -1 } : { step: -1 }),
  ArrowRight: (shift) => (shift ? { timeStep: 1 } : { step: 1 }),
  PageUp: () => ({ timeStep: -10 }),
  PageDown: () => ({ timeStep: 10 }),
  Home: () => ({ frame: 0 }),
  End: () => ({ frame: Number.MAX_SAFE_INTEGER }),
};

document.addEventListener("keydown", (event) => {
  const make = KEYS[event.key];
  if (!make || !timeline || event.ctrlKey || event.metaKey || event.altKey) return;
  event.preventDefault();
  want(make(event.shiftKey));
});

const BUTTONS = { "-1": { step: -1 }, "+1": { step: 1 }, "-1s": { timeStep: -1 }, "+1s": { timeStep: 1 } };
for (const button of document.querySelectorAll("button[data-step]")) {
  button.addEventListener("click", () => timeline && want({ ...BUTTONS[button.dataset.step] }));
}

async function copyLink() {
  if (!current) return;
  const link = `${location.origin}${location.pathname}#f=${current.frame}`;
  try {
    await navigator.clipboard.writeText(link);
  } catch (err) {
    // not a secure context (plain http to another machine): the old way
    const area = document.createElement("textarea");
    area.value = link;
    document.body.appendChild(area);
    area.select();
    document.execCommand("copy");
    area.remove();
  }
  $("copy-link").dataset.link = link;
  say(`link copied: ${link}`);
}
$("copy-link").addEventListener("click", copyLink);

// -- position in the URL: #f=FRAME or #t=SECONDS --------------------------------
function fromHash() {
  const params = new URLSearchParams(location.hash.slice(1));
  const f = Number.parseInt(params.get("f") ?? "", 10);
  const t = Number.parseFloat(params.get("t") ?? "");
  if (Number.isFinite(f)) return { frame: f };
  if (Number.isFinite(t)) return { time: t };
  return { frame: 0 };
}

window.addEventListener("hashchange", () => {
  const action = fromHash();
  if (!current || !("frame" in action) || action.frame !== current.frame) want(action);
});

async function start() {
  const token = new URLSearchParams(location.search).get("token");
  if (token) history.replaceState(null, "", location.pathname + location.hash); // the cookie holds it now
  try {
    const res = await fetch("/api/timeline");
    if (!res.ok) throw new Error((await res.json()).error);
    timeline = await res.json();
  } catch (err) {
    say(`cannot load the timeline: ${err.message || err}`, true);
    document.body.dataset.state = "error";
    return;
  }
  drawTimeline();
  want(fromHash());
}

start();
