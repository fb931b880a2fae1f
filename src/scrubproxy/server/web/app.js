// scrubproxy scrubber page: one frame on a canvas, a timeline to drag, keys to step and play.
//
// Frames near the playhead are kept decoded (ImageBitmaps, at most
// CACHE_BYTES of pixels, the farthest from the playhead dropped first) and
// fetched ahead in the direction of travel, so a step or a short jump is drawn
// in the input handler itself: on screen at the next refresh. A frame not
// kept is a "wish": one request at a time, and a newer wish replaces a waiting
// one (a fast drag fetches the frame in flight and the newest, never the
// stale ones); meanwhile the nearest thumbnail (a known frame) is shown.
//
// Every number comes from the frame map (the segments' frame times, fetched
// once): the numbers under the picture describe the frame drawn, whether a
// frame or a thumbnail. Playback shows each frame at its own source time (a
// clock on the timeline's source time: variable rate as recorded); a frame
// that is not there yet holds the clock, faster speeds skip frames. Sound
// plays only at 1x forward: each segment's own <audio> (/audio/{i}.webm, its
// time 0 at the segment's start) follows the playback clock; paused, stepping,
// shuttling at other speeds or in reverse, the page is silent.
//
// A recording still being made grows: while a segment is live (or none has a
// frame yet) the page polls /api/timeline every LIVE_POLL_MS (a plain poll:
// the server looks at the session at most every 0.25 s, so polls are cheap).
// Growth at the end keeps every frame number and every kept frame; the LIVE
// control (and End) keeps the newest frame on screen as it grows; otherwise
// the picture stays where the person left it while the bar grows. A timeline
// that changed in another way (a segment in the middle, a rebuilt proxy, a
// dropped live one) starts afresh.
"use strict";

const $ = (id) => document.getElementById(id);
const canvas = $("frame");
const ctx = canvas.getContext("2d");
const timelineEl = $("timeline");

//: Decoded frames kept: 160 MiB of pixels (about 170 proxy frames of 640x360).
const CACHE_BYTES = 160 * 2 ** 20;
const AHEAD = 30; // frames fetched ahead in the direction of travel
const BEHIND = 8; // and behind
const PREFETCH_REQUESTS = 4; // at once, while no wish waits
const SHEETS_KEPT = 12; // decoded thumbnail sheets
const TOLERANCE = 1e-6; // as the frame map's index_at
const SPEEDS = 8; // J/L top speed
const LIVE_POLL_MS = 500;
const HALF_REFRESH_MS = 1000 / 120;
const PREROLL = 8; // frames kept before playback starts its clock
const PREROLL_MS = 400; // or this long waited for them
const SOUND_DRIFT = 0.08; // seconds the sound may stray from the playback clock before it is put back

let timeline = null; // /api/timeline
let times = []; // per segment: Float64Array of frame times (seconds from the segment's start)
let thumbs = null; // /api/thumbs
let shown = null; // global frame on screen (frame or thumbnail)
let shownKind = null; // "frame" | "thumbnail"
let wish = null; // global frame wanted on screen, not yet kept
let wishBusy = false;
let direction = 1;
let dragging = null;
let speed = 0;
let clock = null; // {t, at}: timeline time t at performance.now() at
let raf = 0;
let kHeld = false;
let prefetching = 0;
let epoch = 0; // counts the timeline changes that renumber frames: what was fetched before is dropped
let following = false; // LIVE: the newest frame stays on screen as the recording grows
let thumbsFor = null; // the segments /api/thumbs was last read for (their builds, live ones left out)

const frames = new Map(); // global frame -> ImageBitmap
const loading = new Map(); // global frame -> Promise
const prefetchAborts = new Set();
let keptBytes = 0;
const sheets = new Map(); // "seg/n" -> ImageBitmap (LRU by insertion order)
const sheetLoading = new Map();
const sounds = new Map(); // segment index -> <audio>, made when playback first reaches it
let sounding = null; // the <audio> playing

const clamp = (x, lo, hi) => Math.min(hi, Math.max(lo, x));

function say(text, isError = false) {
  const el = $("status");
  el.textContent = text;
  el.classList.toggle("error", isError);
}

// -- the frame map: frame <-> segment, source frame, times -----------------------
function lastLE(arr, x, lo = 0, hi = arr.length - 1) {
  // last index i in [lo, hi] with arr[i] <= x (lo - 1 if none)
  let answer = lo - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (arr[mid] <= x) {
      answer = mid;
      lo = mid + 1;
    } else hi = mid - 1;
  }
  return answer;
}

function segmentOf(g) {
  const segs = timeline.segments;
  let lo = 0;
  let hi = segs.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (segs[mid].first_frame <= g) lo = mid;
    else hi = mid - 1;
  }
  return segs[lo];
}

function describe(g) {
  const seg = segmentOf(g);
  const sourceFrame = g - seg.first_frame;
  const sourceTime = times[seg.index][sourceFrame];
  return { frame: g, segment: seg.index, sourceFrame, sourceTime, time: seg.start_time + sourceTime };
}

const timeOf = (g) => describe(g).time;

function indexAt(t) {
  // the frame on screen at timeline time t (as the server's Timeline.index_at)
  const segs = timeline.segments;
  let i = 0;
  for (let lo = 0, hi = segs.length - 1; lo <= hi; ) {
    const mid = (lo + hi) >> 1;
    if (segs[mid].start_time <= t) {
      i = mid;
      lo = mid + 1;
    } else hi = mid - 1;
  }
  const local = Math.max(lastLE(times[i], t - segs[i].start_time + TOLERANCE), 0);
  return segs[i].first_frame + local;
}

const lastFrame = () => timeline.frames - 1;

// -- decoded frames kept around the playhead --------------------------------------
function keep(g, bitmap) {
  if (frames.has(g)) {
    bitmap.close();
    return;
  }
  frames.set(g, bitmap);
  keptBytes += bitmap.width * bitmap.height * 4;
  if (keptBytes <= CACHE_BYTES) return;
  const here = wish ?? shown ?? 0;
  const byDistance = [...frames.keys()].filter((k) => k !== shown && k !== wish).sort((a, b) => Math.abs(b - here) - Math.abs(a - here));
  for (const k of byDistance) {
    if (keptBytes <= CACHE_BYTES) break;
    const b = frames.get(k);
    keptBytes -= b.width * b.height * 4;
    b.close();
    frames.delete(k);
  }
}

function forget() {
  for (const b of frames.values()) b.close();
  frames.clear();
  keptBytes = 0;
  for (const b of sheets.values()) b.close();
  sheets.clear();
}

function load(g, signal) {
  // the decoded frame g, fetched once however many ask for it
  if (loading.has(g)) return loading.get(g);
  const version = timeline.version;
  const since = epoch;
  const job = (async () => {
    const res = await fetch(`/frames/${g}.jpg?v=${version}`, { signal });
    if (res.status === 409) {
      refreshTimeline();
      throw new Error("the timeline changed: reloading it");
    }
    if (!res.ok) {
      const body = await res.json().catch(() => ({ error: res.statusText }));
      throw new Error(`${res.status}: ${body.error}`);
    }
    if (Number(res.headers.get("X-Frame")) !== g) throw new Error(`asked for frame ${g}, got ${res.headers.get("X-Frame")}`);
    const bitmap = await createImageBitmap(await res.blob());
    if (since === epoch) keep(g, bitmap);
    else bitmap.close();
  })();
  loading.set(g, job);
  job.then(
    () => loading.delete(g),
    () => loading.delete(g),
  );
  return job;
}

// -- drawing: the numbers always describe what is drawn ---------------------------
function fitCanvas(w, h) {
  if (canvas.width !== w || canvas.height !== h) {
    canvas.width = w;
    canvas.height = h;
    canvas.style.setProperty("--aspect", String(w / h));
  }
}

function draw(g) {
  const bitmap = frames.get(g);
  fitCanvas(bitmap.width, bitmap.height);
  ctx.drawImage(bitmap, 0, 0);
  label(g, "frame");
}

function drawThumbnail(g, bitmap, x, y, w, h) {
  if (canvas.width <= 16) fitCanvas(timeline.segments[0].width || w, timeline.segments[0].height || h);
  ctx.drawImage(bitmap, x, y, w, h, 0, 0, canvas.width, canvas.height);
  label(g, "thumbnail");
}

function twoDigits(n, width = 2) {
  return String(n).padStart(width, "0");
}

function clockText(seconds) {
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = (seconds % 60).toFixed(3).padStart(6, "0");
  return (h ? `${h}:${twoDigits(m)}` : `${m}`) + `:${s}`;
}

function wallText(unixSeconds) {
  // local date and time to the millisecond (the viewer's time zone)
  const d = new Date(Math.round(unixSeconds * 1000));
  const date = `${d.getFullYear()}-${twoDigits(d.getMonth() + 1)}-${twoDigits(d.getDate())}`;
  return `${date} ${twoDigits(d.getHours())}:${twoDigits(d.getMinutes())}:${twoDigits(d.getSeconds())}.${twoDigits(d.getMilliseconds(), 3)}`;
}

function label(g, kind) {
  const info = describe(g);
  const seg = timeline.segments[info.segment];
  shown = g;
  shownKind = kind;
  canvas.dataset.frame = String(g);
  canvas.dataset.kind = kind;
  $("segment-name").textContent = seg.name;
  $("source-frame").textContent = String(info.sourceFrame);
  $("source-time").textContent = `${info.sourceTime.toFixed(3)} s`;
  $("frame-number").textContent = String(g);
  $("timeline-time").textContent = clockText(info.time);
  $("kind").textContent = kind === "thumbnail" ? "(thumbnail)" : "";
  const wall = seg.wall_start;
  $("wall").hidden = wall == null;
  if (wall != null) $("wall-time").textContent = wallText(wall + info.sourceTime);
  $("playhead").style.left = `${100 * fractionOf(info.time)}%`;
  $("original").href = `/original/${g}.png?v=${timeline.version}`;
  timelineEl.setAttribute("aria-valuenow", String(g));
  markFilmstrip(g);
}

let hashTimer = 0;
function settle() {
  const idle = wish === null && speed === 0;
  document.body.dataset.state = speed !== 0 ? "playing" : idle ? "idle" : "loading";
  clearTimeout(hashTimer); // browsers throttle history updates: write the address once it rests
  if (idle && shown !== null && shownKind === "frame") hashTimer = setTimeout(() => history.replaceState(null, "", `#f=${shown}`), 150);
}

// -- wishes: the frame to show ------------------------------------------------------
function goTo(g, { play = false } = {}) {
  if (!timeline || !timeline.frames) return;
  g = clamp(Math.round(g), 0, lastFrame());
  const from = wish ?? shown;
  if (from !== null && g !== from) direction = Math.sign(g - from);
  if (frames.has(g)) {
    wish = null;
    draw(g);
  } else {
    wish = g;
    if (!play) showNearestThumbnail(g);
    pumpWish();
  }
  settle();
  prefetch();
}

async function pumpWish() {
  if (wishBusy) return;
  wishBusy = true;
  while (wish !== null && !frames.has(wish)) {
    const g = wish;
    try {
      await load(g);
    } catch (err) {
      if (err.name !== "AbortError") say(String(err.message || err), true);
      if (wish === g) wish = null;
    }
  }
  wishBusy = false;
  if (wish !== null) {
    const g = wish;
    wish = null;
    if (speed === 0) draw(g);
  }
  settle();
  prefetch();
}

const target = () => wish ?? shown ?? 0;

function stepFrames(d) {
  stop();
  goTo(target() + d);
}

function stepSeconds(d) {
  stop();
  goTo(indexAt(clamp(timeOf(target()) + d, 0, timeline.duration)));
}

// -- prefetch in the direction of travel -----------------------------------------------
function wanted(all = false) {
  const here = shown ?? 0;
  const list = [];
  if (speed !== 0) {
    // the frames the coming refreshes will show (at 60 Hz), in order
    const t = timeOf(here);
    for (let i = 1; list.length < AHEAD && i < 4 * AHEAD; i++) {
      const g = indexAt(clamp(t + (i * speed) / 60, 0, timeline.duration));
      if (g !== here && list[list.length - 1] !== g) list.push(g);
    }
  } else {
    for (let d = 1; d <= AHEAD; d++) list.push(here + direction * d);
    for (let d = 1; d <= BEHIND; d++) list.push(here - direction * d);
  }
  return list.filter((g) => g >= 0 && g <= lastFrame() && (all || (!frames.has(g) && !loading.has(g))));
}

function prefetch() {
  if (!timeline || dragging !== null || wish !== null) return;
  for (const g of wanted()) {
    if (prefetching >= PREFETCH_REQUESTS) break;
    const abort = new AbortController();
    prefetchAborts.add(abort);
    prefetching++;
    load(g, abort.signal)
      .catch(() => {})
      .finally(() => {
        prefetching--;
        prefetchAborts.delete(abort);
        prefetch();
      });
  }
}

function stopPrefetch() {
  for (const abort of prefetchAborts) abort.abort();
}

// -- playback and shuttle -------------------------------------------------------------
function setSpeed(s) {
  speed = s;
  silence(); // the next tick starts the sound again where the clock is, at 1x
  $("play").textContent = speed === 0 ? "play" : `pause (${speed > 0 ? "" : "-"}${Math.abs(speed)}x)`;
  if (speed === 0) {
    cancelAnimationFrame(raf);
    raf = 0;
  } else {
    wish = null;
    clock = { t: timeOf(shown ?? 0), at: null, asked: performance.now() }; // started once a few frames are in
    if (!raf) raf = requestAnimationFrame(tick);
  }
  settle();
  prefetch();
}

function stop() {
  if (speed !== 0) setSpeed(0);
}

function tick(now) {
  raf = 0;
  if (speed === 0) return;
  // Half a refresh ahead: each frame goes to the refresh nearest its time, which a refresh
  // that comes a little early or late does not change.
  if (clock.at === null) {
    if (!prerolled(now)) {
      prefetch();
      raf = requestAnimationFrame(tick);
      return;
    }
    clock.at = now - HALF_REFRESH_MS;
  }
  const t = clamp(clock.t + ((now - clock.at) / 1000) * speed, 0, timeline.duration);
  let g = indexAt(t);
  if (Math.abs(speed) <= 1 && shown !== null && Math.abs(g - shown) > 1) {
    // at 1x every frame is shown: after a refresh that came late, the clock restarts at the frame on screen
    clock = { t: timeOf(shown), at: now - HALF_REFRESH_MS };
    g = shown;
  }
  if (g !== shown || shownKind !== "frame") {
    if (frames.has(g)) {
      draw(g);
      if (clock.held) clock = { t: timeOf(g), at: now - HALF_REFRESH_MS }; // its time starts now
    } else clock = { t: timeOf(g), at: now - HALF_REFRESH_MS, held: true }; // hold the clock until it comes
  }
  follow(clock.t + ((now - clock.at) / 1000) * speed);
  const atEnd = speed > 0 ? shown === lastFrame() : shown === 0;
  if (atEnd && shownKind === "frame") {
    setSpeed(0);
    return;
  }
  prefetch();
  raf = requestAnimationFrame(tick);
}

function prerolled(now) {
  // the next PREROLL frames kept (or as many as there are), or PREROLL_MS waited for them
  const here = shown ?? 0;
  const coming = wanted(true).slice(0, PREROLL);
  return now - clock.asked > PREROLL_MS || coming.every((g) => frames.has(g)) || here === (speed > 0 ? lastFrame() : 0);
}

function shuttle(sign) {
  if (kHeld) {
    stepFrames(sign);
    return;
  }
  if (Math.sign(speed) === sign) setSpeed(clamp(speed * 2, -SPEEDS, SPEEDS));
  else setSpeed(sign);
}

// -- sound: the segment's audio along with 1x forward playback --------------------------
function soundOf(i) {
  // the <audio> of segment i (null when its source has no sound)
  if (!timeline.segments[i] || !timeline.segments[i].audio) return null;
  let el = sounds.get(i);
  if (!el) {
    el = document.createElement("audio");
    el.preload = "auto";
    el.dataset.segment = i;
    el.src = `/audio/${i}.webm?v=${timeline.version}`;
    document.body.append(el);
    sounds.set(i, el);
  }
  return el;
}

function silence() {
  if (sounding) sounding.pause();
  sounding = null;
}

function follow(t) {
  // at 1x, once the clock runs: the sound of the segment on screen at clock time t
  if (speed !== 1 || clock.at === null || shown === null) {
    silence();
    return;
  }
  const seg = segmentOf(shown);
  const el = soundOf(seg.index);
  const at = clamp(t - seg.start_time, 0, seg.duration);
  if (!el) {
    silence(); // a source without sound
    return;
  }
  if (el !== sounding) {
    silence();
    sounding = el;
    el.currentTime = at;
    el.play().catch(() => {}); // refused (no user gesture yet): playback goes on silent
    soundOf(seg.index + 1); // the next segment's sound loads meanwhile
  } else if (el.readyState >= HTMLMediaElement.HAVE_FUTURE_DATA && !el.seeking && Math.abs(el.currentTime - at) > SOUND_DRIFT) {
    el.currentTime = at; // late to start, or a held clock: back to the frame's time
  }
}

function dropSounds() {
  silence();
  for (const el of sounds.values()) {
    el.removeAttribute("src");
    el.load();
    el.remove();
  }
  sounds.clear();
}

// -- thumbnails: preview, filmstrip, stand-ins while frames come ------------------------
function tileOf(g) {
  // (segment, tile index) of the tile standing for frame g: the last tile at or before it
  // (null in a segment without tiles: one still being recorded)
  const seg = segmentOf(g);
  const list = thumbs.segments[seg.index]?.frames ?? [];
  return list.length ? { seg: seg.index, i: Math.max(lastLE(list, g), 0) } : null;
}

function tilePlace(i) {
  const per = thumbs.cols * thumbs.rows;
  const n = Math.floor(i / per);
  const r = i % per;
  return { n, x: (r % thumbs.cols) * thumbs.tile_width, y: Math.floor(r / thumbs.cols) * thumbs.tile_height };
}

const sheetUrl = (seg, n) => `/thumbs/${seg}/${n}.jpg?v=${timeline.version}`;

function loadSheet(seg, n) {
  const key = `${seg}/${n}`;
  if (sheets.has(key) || sheetLoading.has(key)) return;
  const job = fetch(sheetUrl(seg, n))
    .then((res) => (res.ok ? res.blob() : Promise.reject(new Error(res.statusText))))
    .then((blob) => createImageBitmap(blob))
    .then((bitmap) => {
      sheets.set(key, bitmap);
      while (sheets.size > SHEETS_KEPT) {
        const [oldest, b] = sheets.entries().next().value;
        b.close();
        sheets.delete(oldest);
      }
    })
    .catch(() => {})
    .finally(() => sheetLoading.delete(key));
  sheetLoading.set(key, job);
}

function showNearestThumbnail(g) {
  if (!thumbs || !tileOf(g)) return;
  const { seg, i } = tileOf(g);
  const list = thumbs.segments[seg].frames;
  const best = i + 1 < list.length && list[i + 1] - g < g - list[i] ? i + 1 : i;
  const { n, x, y } = tilePlace(best);
  const bitmap = sheets.get(`${seg}/${n}`);
  if (!bitmap) {
    loadSheet(seg, n);
    return;
  }
  sheets.delete(`${seg}/${n}`); // most recently used last
  sheets.set(`${seg}/${n}`, bitmap);
  if (list[best] !== shown) drawThumbnail(list[best], bitmap, x, y, thumbs.tile_width, thumbs.tile_height);
}

function paintTile(el, g, height) {
  const scale = height / thumbs.tile_height;
  el.style.width = `${thumbs.tile_width * scale}px`;
  el.style.height = `${height}px`;
  const tile = tileOf(g);
  if (!tile) {
    el.style.backgroundImage = "none"; // no tiles yet: a blank one that still leads to the frame
    el.dataset.frame = String(g);
    return g;
  }
  const { seg, i } = tile;
  const { n, x, y } = tilePlace(i);
  el.style.backgroundImage = `url("${sheetUrl(seg, n)}")`;
  el.style.backgroundSize = `${thumbs.cols * thumbs.tile_width * scale}px auto`;
  el.style.backgroundPosition = `${-x * scale}px ${-y * scale}px`;
  el.dataset.frame = String(thumbs.segments[seg].frames[i]);
  return Number(el.dataset.frame);
}

function showPreview(event) {
  if (!thumbs || !timeline) return;
  const box = timelineEl.getBoundingClientRect();
  const fraction = clamp((event.clientX - box.left) / box.width, 0, 1);
  const g = indexAt(timeAt(fraction));
  const preview = $("preview");
  const tile = paintTile($("preview-picture"), g, thumbs.tile_height);
  $("preview-label").textContent = `${tile} · ${clockText(timeOf(tile))}`;
  preview.hidden = false;
  const half = thumbs.tile_width / 2;
  preview.style.left = `${clamp(event.clientX - box.left, half, box.width - half) - half}px`;
}

let stripTiles = [];
function drawFilmstrip() {
  const strip = $("filmstrip");
  strip.replaceChildren();
  stripTiles = [];
  if (!thumbs) return;
  const height = strip.clientHeight || 54;
  const width = (height * thumbs.tile_width) / thumbs.tile_height;
  const count = Math.max(1, Math.floor(strip.clientWidth / width));
  for (let j = 0; j < count; j++) {
    const el = document.createElement("div");
    el.className = "tile";
    const g = paintTile(el, indexAt(timeAt((j + 0.5) / count)), height);
    el.title = `frame ${g} at ${clockText(timeOf(g))}`;
    el.addEventListener("click", () => {
      stop();
      setLive(false);
      goTo(g);
    });
    strip.appendChild(el);
    stripTiles.push(el);
  }
  if (shown !== null) markFilmstrip(shown);
}

function markFilmstrip(g) {
  let current = null;
  for (const el of stripTiles) if (Number(el.dataset.frame) <= g) current = el;
  for (const el of stripTiles) el.classList.toggle("current", el === current);
}

// -- the timeline bar: segments (gaps where the recording stopped), ticks -----------------
let layout = []; // per segment: {start, end (timeline time), x0, x1 (fraction of the bar)}
const GAP_MIN = 1; // seconds: file-name stamps are whole seconds
const GAP_SHARE = 0.04; // at most this much of the bar per gap

function gapsOf(segs) {
  // the wall-clock gap before each segment, where both starts are known well (tag or file name)
  return segs.map((seg, i) => {
    const prev = segs[i - 1];
    const known = (s) => s && s.wall_start != null && s.wall_start_from !== "file mtime";
    if (!known(prev) || !known(seg)) return 0;
    const gap = seg.wall_start - (prev.wall_start + prev.duration);
    return gap >= GAP_MIN ? gap : 0;
  });
}

function layOut() {
  const segs = timeline.segments;
  const gaps = gapsOf(segs);
  const shares = gaps.map((gap) => (gap ? Math.min(gap / (timeline.duration + gap), GAP_SHARE) : 0));
  const forFrames = 1 - shares.reduce((a, b) => a + b, 0);
  let x = 0;
  layout = segs.map((seg, i) => {
    x += shares[i];
    const w = (forFrames * seg.duration) / (timeline.duration || 1);
    const piece = { start: seg.start_time, end: seg.start_time + seg.duration, x0: x, x1: x + w, gap: gaps[i] };
    x += w;
    return piece;
  });
}

function fractionOf(t) {
  const p = layout.findLast((q) => q.start <= t) ?? layout[0];
  const within = p.end > p.start ? (t - p.start) / (p.end - p.start) : 0;
  return clamp(p.x0 + within * (p.x1 - p.x0), 0, 1);
}

function timeAt(fraction) {
  // a point in a gap goes to the nearer edge
  let p = layout[0];
  for (let i = 0; i < layout.length; i++) {
    const q = layout[i];
    if (fraction < q.x0) {
      p = i > 0 && fraction - layout[i - 1].x1 < q.x0 - fraction ? layout[i - 1] : q;
      break;
    }
    p = q;
  }
  const within = p.x1 > p.x0 ? clamp((fraction - p.x0) / (p.x1 - p.x0), 0, 1) : 0;
  return clamp(p.start + within * (p.end - p.start), 0, timeline.duration);
}

function distinguishing(names) {
  // the part of each name that tells it from the others (common start and end dropped)
  if (names.length < 2) return names;
  let pre = 0;
  while (names.every((n) => n[pre] === names[0][pre] && pre < n.length - 1)) pre++;
  let post = 0;
  while (names.every((n) => n.length - post - 1 > pre && n[n.length - 1 - post] === names[0][names[0].length - 1 - post])) post++;
  return names.map((n) => n.slice(pre, n.length - post));
}

function drawTimeline() {
  layOut();
  const box = $("segments");
  box.replaceChildren();
  const width = timelineEl.clientWidth || 1;
  const short = distinguishing(timeline.segments.map((s) => s.name));
  timeline.segments.forEach((seg, i) => {
    const p = layout[i];
    const div = document.createElement("div");
    div.className = "segment";
    if (p.gap) div.classList.add("after-gap");
    if (seg.live) div.classList.add("live");
    div.style.left = `${100 * p.x0}%`;
    div.style.width = `${100 * (p.x1 - p.x0)}%`;
    div.textContent = (p.x1 - p.x0) * width < seg.name.length * 7 ? short[i] : seg.name;
    div.title = `${seg.name}: frames ${seg.first_frame} to ${seg.last_frame}` + (p.gap ? ` (${clockText(p.gap)} after the one before)` : "");
    box.appendChild(div);
  });
  drawTicks(width);
  $("frame-count").textContent = String(timeline.frames);
  $("live").hidden = !timeline.live;
  timelineEl.dataset.frames = String(timeline.frames);
  timelineEl.setAttribute("aria-valuemax", String(timeline.frames - 1));
  drawFilmstrip();
}

function drawTicks(width) {
  const ticks = $("ticks");
  ticks.replaceChildren();
  const every = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200].find((s) => (s / (timeline.duration || 1)) * width >= 70) ?? 14400;
  for (let t = every; t < timeline.duration; t += every) {
    const tick = document.createElement("span");
    tick.className = "tick";
    tick.style.left = `${100 * fractionOf(t)}%`;
    tick.textContent = clockText(t).replace(/\.000$/, "");
    ticks.appendChild(tick);
  }
}

// -- pointer: mouse, pen and touch alike ---------------------------------------------
function seekToPointer(event) {
  const box = timelineEl.getBoundingClientRect();
  goTo(indexAt(timeAt(clamp((event.clientX - box.left) / box.width, 0, 1))));
}

timelineEl.addEventListener("pointerdown", (event) => {
  if (!timeline || event.button > 0) return;
  stop();
  setLive(false);
  dragging = event.pointerId;
  stopPrefetch();
  timelineEl.setPointerCapture(event.pointerId);
  timelineEl.focus();
  seekToPointer(event);
  event.preventDefault();
});
timelineEl.addEventListener("pointermove", (event) => {
  showPreview(event);
  if (dragging === event.pointerId) seekToPointer(event);
});
timelineEl.addEventListener("pointerleave", () => {
  if (dragging === null) $("preview").hidden = true;
});
for (const type of ["pointerup", "pointercancel", "lostpointercapture"]) {
  timelineEl.addEventListener(type, (event) => {
    if (dragging !== event.pointerId) return;
    dragging = null;
    if (event.pointerType !== "mouse") $("preview").hidden = true;
    prefetch();
  });
}

// -- keys and buttons (the same keys as scrubproxy.lua in mpv) ------------------------------
const KEYS = {
  ArrowLeft: (shift) => (shift ? stepSeconds(-1) : stepFrames(-1)),
  ArrowRight: (shift) => (shift ? stepSeconds(1) : stepFrames(1)),
  ArrowDown: () => stepSeconds(-10),
  ArrowUp: () => stepSeconds(10),
  PageUp: () => stepSeconds(-10),
  PageDown: () => stepSeconds(10),
  Home: () => (stop(), goTo(0)),
  End: () => (stop(), setLive(timeline.live), goTo(lastFrame())),
  " ": () => setSpeed(speed === 0 ? 1 : 0),
  j: () => shuttle(-1),
  l: () => shuttle(1),
  k: () => {
    kHeld = true;
    stop();
  },
  o: () => window.open($("original").href, "_blank", "noopener"),
  "?": () => toggleHelp(),
};

document.addEventListener("keydown", (event) => {
  const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
  const action = KEYS[key];
  if (!action || !timeline || event.ctrlKey || event.metaKey || event.altKey) return;
  if (event.target.closest && event.target.closest("button, a") && (key === " " || key === "Enter")) return; // a focused button's own key
  event.preventDefault();
  if (key === "k" && event.repeat) return;
  if (key !== "End" && key !== "?") setLive(false); // the person took the picture elsewhere
  action(event.shiftKey);
});
document.addEventListener("keyup", (event) => {
  if (event.key.toLowerCase() === "k") kHeld = false;
});

const BUTTONS = { "-1": () => stepFrames(-1), "+1": () => stepFrames(1), "-1s": () => stepSeconds(-1), "+1s": () => stepSeconds(1) };
for (const button of document.querySelectorAll("button[data-step]")) {
  button.addEventListener("click", () => timeline && (setLive(false), BUTTONS[button.dataset.step]()));
}
$("play").addEventListener("click", () => timeline && (setLive(false), setSpeed(speed === 0 ? 1 : 0)));

// -- LIVE: the newest frame on screen while the recording grows ------------------------------
function setLive(on) {
  following = on;
  $("live").setAttribute("aria-pressed", String(on));
  document.body.dataset.live = String(on);
}
$("live").addEventListener("click", () => {
  if (!timeline) return;
  stop();
  setLive(!following);
  if (following) goTo(lastFrame());
});

function toggleHelp() {
  $("help").hidden = !$("help").hidden;
}
$("keys-button").addEventListener("click", toggleHelp);

async function copyLink() {
  if (shown === null) return;
  const link = `${location.origin}${location.pathname}#f=${shown}`;
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

// -- position in the URL: #f=FRAME, #t=SECONDS or #at=LOCAL-DATE-TIME ----------------------
function frameAtWallClock(text) {
  const when = new Date(text).getTime() / 1000; // no zone given: the viewer's local time
  if (!Number.isFinite(when)) throw new Error(`#at=${text} is not a date and time (2026-12-02T14:32:05.250)`);
  const known = timeline.segments.filter((s) => s.wall_start != null);
  if (!known.length) throw new Error("the time of day of this recording is unknown");
  const seg = known.findLast((s) => s.wall_start <= when + TOLERANCE) ?? known[0];
  const local = Math.max(lastLE(times[seg.index], when - seg.wall_start + TOLERANCE), 0);
  return seg.first_frame + local;
}

function fromHash() {
  const params = new URLSearchParams(location.hash.slice(1));
  const f = Number.parseInt(params.get("f") ?? "", 10);
  const t = Number.parseFloat(params.get("t") ?? "");
  if (Number.isFinite(f)) return clamp(f, 0, lastFrame());
  if (Number.isFinite(t)) return indexAt(clamp(t, 0, timeline.duration));
  if (params.get("at")) {
    try {
      return frameAtWallClock(params.get("at"));
    } catch (err) {
      say(err.message, true);
    }
  }
  return 0;
}

window.addEventListener("hashchange", () => {
  if (!timeline || !timeline.frames) return;
  const g = fromHash();
  if (g !== shown) {
    stop();
    setLive(false);
    goTo(g);
  }
});

// -- the timeline, loaded at start and again when it changes (segments grow while recorded) ----
async function getJson(url) {
  const res = await fetch(url);
  if (!res.ok) throw new Error((await res.json().catch(() => ({ error: res.statusText }))).error);
  return res.json();
}

function continues(old, next) {
  // does next only add to old at its end (every frame number keeps its frame)?
  return old.segments.every((s, i) => next.segments[i] && next.segments[i].build === s.build && next.segments[i].frames >= s.frames);
}

async function loadTimeline() {
  const next = await getJson("/api/timeline");
  const same = timeline !== null && continues(timeline, next);
  const nextTimes = await Promise.all(
    next.segments.map(async (seg) => {
      const old = same ? times[seg.index] : null;
      if (old && old.length === seg.frames) return old;
      const res = await fetch(`/api/segments/${seg.index}/times?v=${next.version}`);
      if (!res.ok) throw new Error(`segment ${seg.index}: ${res.status}`);
      return new Float64Array(await res.arrayBuffer());
    }),
  );
  if (timeline && !same) {
    epoch++;
    forget();
    dropSounds();
    thumbsFor = null;
    say("the recording changed: showing the new timeline");
  } else if (timeline && !timeline.frames && next.frames) say("");
  timeline = next;
  times = nextTimes;
  if (!timeline.frames) {
    say("waiting for the recording");
    document.body.dataset.state = "waiting";
  }
  drawTimeline();
  const ended = timeline.segments.filter((s) => !s.live).map((s) => s.build).join(",");
  if (ended !== thumbsFor) {
    thumbsFor = ended; // thumbnails come with each segment's end: read them again only then
    loadThumbs();
  }
}

async function loadThumbs() {
  if (!timeline.frames) return;
  try {
    thumbs = await getJson(`/api/thumbs?v=${timeline.version}`);
  } catch (err) {
    thumbs = null;
    return;
  }
  const total = thumbs.segments.reduce((a, s) => a + s.sheets, 0);
  if (total <= SHEETS_KEPT) thumbs.segments.forEach((s) => [...Array(s.sheets).keys()].forEach((n) => loadSheet(s.index, n)));
  drawFilmstrip();
}

let refreshing = null;
function refreshTimeline() {
  refreshing ??= loadTimeline()
    .then(() => {
      if (!timeline.frames) return;
      if (following) goTo(lastFrame());
      else goTo(shown === null ? fromHash() : Math.min(shown, lastFrame()));
    })
    .catch((err) => say(`cannot reload the timeline: ${err.message || err}`, true))
    .finally(() => (refreshing = null));
  return refreshing;
}

let resizeTimer = 0;
window.addEventListener("resize", () => {
  clearTimeout(resizeTimer);
  resizeTimer = setTimeout(() => timeline && drawTimeline(), 100);
});

async function start() {
  const token = new URLSearchParams(location.search).get("token");
  if (token) history.replaceState(null, "", location.pathname + location.hash); // the cookie holds it now
  try {
    await loadTimeline();
  } catch (err) {
    say(`cannot load the timeline: ${err.message || err}`, true);
    document.body.dataset.state = "error";
    return;
  }
  // A recording being made opens on its newest frame, unless the link names one.
  setLive((timeline.live || !timeline.frames) && !location.hash);
  if (following) goTo(lastFrame());
  else goTo(fromHash());
  setInterval(() => (timeline.live || !timeline.frames) && refreshTimeline(), LIVE_POLL_MS);
}

start();
