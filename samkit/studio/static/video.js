// samkit studio: the video view (docs/studio/API.md, "Videos").
//
// A video is annotated object by object: prompts for the active object on any frame, then tracking
// on the server (SAM 2's memory) fills the other frames. The page fetches only the frames it shows
// (GET /api/videos/{id}/frames/{t}) and a few ahead of them, and each frame's masks
// (.../frames/{t}/masks), kept per frame until a prompt, a clear or a tracked frame changes them.
// The server owns the objects, prompts, masks and the tracking job; the page keeps what the last
// answers said. The page's shell (studio.js) opens and closes the view and hands in its services
// with initVideo(); the hash is "#<id>/f<frame>".

import { viewCanvas } from "./canvas.js";
import { drawBox, drawPrompt } from "./draw.js";
import { attachPromptGestures } from "./gestures.js";
import { bindObjectRows, editName } from "./lists.js";
import { blend, hexRgb } from "./masks.js";

// ---------------------------------------------------------------------------------- constants

const PREFETCH = 4; // frames fetched ahead of the one shown, in the direction of the last move
const FRAME_BUDGET = 64e6; // decoded frames kept in the page, in pixels (about 256 MB of RGBA) ...
const MAX_FRAMES = 48; // ... and at most this many
const MASK_CACHE = 512; // frames whose masks are kept
const MAX_FPS = 30; // playback never asks for frames faster than this
const HASH_MS = 300; // the address bar follows the frame at most this often
const POLL_MS = 500; // the job's state is polled at this period when its event stream fails
const WHITE = [255, 255, 255];

// ---------------------------------------------------------------------------------- state

let shell = null; // the shell's services: see initVideo
const el = {};

const V = {
  id: null, // the open video (null when the image view is on)
  gen: 0, // bumped on every open and close: answers for an older video are dropped
  view: null, // its `video` view
  t: 0, // the frame asked for (shown once its pixels and masks are here)
  shown: null, // {t, bitmap, masks, prompts}: what the canvas shows
  objects: [], // [{id, name}] in the server's order
  active: null, // id of the object the prompts go to
  prompted: new Set(), // frames with prompts (of any object)
  pending: [], // prompts sent, not answered yet (drawn faintly)
  playing: false,
  step: 1, // direction of the last move: +1 or -1
  job: null, // the tracking `job`
  events: null, // the EventSource of a running job
  cancelling: false, // Cancel was pressed, the job's end has not come yet
  ended: 0, // tracking jobs seen to end since the page opened the video
  exporting: false,
  lastFrame: new Map(), // video id -> frame last shown (coming back to a video returns there)
};

let renaming = null; // the object whose name is being typed in its row (the list waits for it)

const frames = new Map(); // t -> Promise<ImageBitmap>, least recently used first
const masks = new Map(); // t -> Promise<{frame, masks, prompts}>, least recently used first
const maskEpoch = new Map(); // t -> bumped whenever frame t's masks change on the server
let allEpoch = 0; // bumped when every frame's masks may have changed

// ---------------------------------------------------------------------------------- helpers

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const lastFrame = () => (V.view ? V.view.num_frames - 1 : 0);
const clampFrame = (t) => Math.min(lastFrame(), Math.max(0, Math.round(t)));
const tracking = () => !!(V.job && V.job.state === "running");
const objectName = (o) => (o && o.name ? o.name : o ? `object ${o.id}` : "");

function lru(map, key, value, max) {
  map.delete(key);
  map.set(key, value);
  while (map.size > max) map.delete(map.keys().next().value);
}

function touch(map, key) {
  const hit = map.get(key);
  if (hit !== undefined) lru(map, key, hit, Infinity);
  return hit;
}

// ---------------------------------------------------------------------------------- frames and masks

function frameCacheSize() {
  const px = V.view ? V.view.width * V.view.height : 1;
  return Math.max(PREFETCH + 4, Math.min(MAX_FRAMES, Math.floor(FRAME_BUDGET / Math.max(1, px))));
}

/** Frame t's pixels, fetched once and kept a while (the least recently used go first). */
function loadFrame(t) {
  const hit = touch(frames, t);
  if (hit) return hit;
  const path = `/api/videos/${V.id}/frames/${t}`;
  const p = (async () => {
    const res = await shell.request("GET", path);
    if (!res.ok) throw await shell.errorOf(res, "GET", path);
    return createImageBitmap(await res.blob());
  })();
  lru(frames, t, p, frameCacheSize());
  p.catch(() => {
    if (frames.get(t) === p) frames.delete(t);
  });
  return p;
}

function loadMasks(t) {
  const hit = touch(masks, t);
  if (hit) return hit;
  const p = shell.api("GET", `/api/videos/${V.id}/frames/${t}/masks`);
  lru(masks, t, p, MASK_CACHE);
  p.catch(() => {
    if (masks.get(t) === p) masks.delete(t);
  });
  return p;
}

const epochOf = (t) => `${allEpoch}:${maskEpoch.get(t) || 0}`;

/** Frame t's masks as the server has them now: asked again when they changed meanwhile. */
async function freshMasks(t) {
  const gen = V.gen;
  for (;;) {
    const epoch = epochOf(t);
    const fm = await loadMasks(t);
    if (epochOf(t) === epoch || gen !== V.gen) return fm; // (another video's answers are dropped)
  }
}

function forgetMasks(t) {
  masks.delete(t);
  maskEpoch.set(t, (maskEpoch.get(t) || 0) + 1);
}

function forgetAllMasks() {
  masks.clear();
  maskEpoch.clear();
  allEpoch += 1;
}

/** Take an answer that carries frame t's masks (a prompt, a clear); its prompts too. */
async function takeFrameMasks(t, r) {
  const gen = V.gen;
  forgetMasks(t);
  // the contract promises {frame, masks}; when the frame's prompts do not come with them, ask
  let fm = r;
  if (!Array.isArray(r.prompts)) {
    const again = await shell.api("GET", `/api/videos/${V.id}/frames/${t}/masks`);
    fm = { ...r, prompts: again.prompts };
  }
  if (gen !== V.gen) return;
  masks.set(t, Promise.resolve(fm));
  if (fm.prompts.length) V.prompted.add(t);
  else V.prompted.delete(t);
  if (V.shown && V.shown.t === t) {
    V.shown = { ...V.shown, masks: fm.masks, prompts: fm.prompts };
    markStage();
    surface.invalidate();
  }
  renderTicks();
  renderPanels();
}

/** Frame t's masks changed on the server: drop them, and show the new ones if it is on screen. */
async function refreshMasks(t) {
  forgetMasks(t);
  if (!V.shown || V.shown.t !== t) return;
  const gen = V.gen;
  let fm;
  try {
    fm = await freshMasks(t);
  } catch (e) {
    if (gen === V.gen) shell.showError(e);
    return;
  }
  if (gen !== V.gen || !V.shown || V.shown.t !== t) return;
  V.shown = { ...V.shown, masks: fm.masks, prompts: fm.prompts || [] };
  markStage();
  surface.invalidate();
  renderPanels();
}

function prefetch(t) {
  for (let k = 1; k <= PREFETCH; k++) {
    const u = t + k * V.step;
    if (u < 0 || u > lastFrame()) break;
    loadFrame(u).catch(() => {});
    loadMasks(u).catch(() => {});
  }
}

// ---------------------------------------------------------------------------------- showing a frame

let showSeq = 0;

/**
 * Show frame t once its pixels and masks are here (the latest call wins). Resolves to whether
 * frame t is on screen.
 */
async function show(t) {
  t = clampFrame(t);
  const gen = V.gen;
  const seq = ++showSeq;
  V.t = t;
  V.lastFrame.set(V.id, t);
  renderTransport();
  scheduleHash();
  let bitmap;
  let fm;
  try {
    [bitmap, fm] = await Promise.all([loadFrame(t), freshMasks(t)]);
  } catch (e) {
    if (gen === V.gen && seq === showSeq) {
      pause();
      shell.showError(e);
    }
    return false;
  }
  if (gen !== V.gen || seq !== showSeq) return false;
  V.shown = { t, bitmap, masks: fm.masks, prompts: fm.prompts || [] };
  markStage();
  surface.invalidate();
  renderPanels();
  prefetch(t);
  return true;
}

/** The stage says which frame it shows and whose masks are on it ("1,2"; for the tests too). */
function markStage() {
  el.stage.dataset.frame = V.shown ? String(V.shown.t) : "";
  el.stage.dataset.masks = V.shown ? V.shown.masks.map((m) => m.obj).join(",") : "";
}

/** Go to frame t (playback stops). */
export function seekVideo(t) {
  if (!V.view) return;
  pause();
  const to = clampFrame(t);
  if (to === V.t && V.shown && V.shown.t === to) {
    renderTransport(); // already there (the field may say otherwise: it is put back)
    return;
  }
  if (to !== V.t) V.step = to > V.t ? 1 : -1;
  show(to);
}

function stepFrames(delta) {
  if (!V.view) return;
  pause();
  V.step = delta > 0 ? 1 : -1;
  show(clampFrame(V.t + delta));
}

function play() {
  if (!V.view || V.playing || lastFrame() === 0) return;
  V.playing = true;
  V.step = 1;
  renderTransport();
  const gen = V.gen;
  const fps = Math.min(MAX_FPS, V.view.fps > 0 ? V.view.fps : 24);
  const interval = 1000 / fps;
  (async () => {
    if (V.t >= lastFrame()) await show(0); // from the start again
    let due = performance.now() + interval;
    while (V.playing && gen === V.gen && V.t < lastFrame()) {
      const wait = due - performance.now();
      if (wait > 0) await sleep(wait);
      if (!V.playing || gen !== V.gen) return;
      await show(V.t + 1); // one frame at a time: it waits for the frame, the next ones are prefetched
      due = Math.max(due + interval, performance.now()); // late frames do not make a burst after them
    }
    if (gen === V.gen) pause();
  })();
}

function pause() {
  if (!V.playing) return;
  V.playing = false;
  renderTransport();
  scheduleHash();
}

function togglePlay() {
  if (V.playing) pause();
  else play();
}

let hashTimer = null;

function scheduleHash() {
  if (hashTimer) return;
  hashTimer = setTimeout(() => {
    hashTimer = null;
    if (V.id === null) return;
    const want = `#${V.id}/f${V.t}`;
    if (location.hash !== want) history.replaceState(null, "", want);
  }, HASH_MS);
}

// ---------------------------------------------------------------------------------- drawing

let surface = null; // the frame's canvas (canvas.js), made in initVideo()
let gesture = null; // its prompt gesture (gestures.js)

/** The masks changed: compose them again on the next animation frame. */
export function invalidateVideo() {
  surface.invalidate();
}

/** The frame's masks into the overlay's pixels `buf` (`w` wide; `e`: an outline's width). */
function composeMasks(buf, w, e) {
  const o = shell.opacity();
  const edgeAlpha = o > 0 ? Math.min(1, o + 0.5) : 0;
  const raster = surface.raster;
  // every object in its colour; the active one last, outlined in white
  let active = null;
  for (const m of V.shown ? V.shown.masks : []) {
    if (m.obj === V.active) {
      active = m;
      continue;
    }
    blend(buf, w, raster(m.obj, m.mask, 2 * e), hexRgb(shell.colorOf(m.obj)), o, edgeAlpha);
  }
  if (active) {
    blend(buf, w, raster(active.obj, active.mask, 2 * e), hexRgb(shell.colorOf(active.obj)),
      Math.min(1, o * 1.15), o > 0 ? 1 : 0, WHITE);
  }
}

/** The frame's prompts, ringed in their objects' colours (other objects' ones fainter); a box being dragged. */
function drawPrompts(ctx, sx, sy, dpr) {
  const s = V.shown;
  for (const p of s.prompts) drawPrompt(ctx, p, sx, sy, dpr, p.obj === V.active ? 1 : 0.6, shell.colorOf(p.obj));
  for (const p of V.pending) {
    if (p.frame === s.t) drawPrompt(ctx, p, sx, sy, dpr, 0.55, p.obj === null ? null : shell.colorOf(p.obj));
  }
  const box = gesture.box();
  if (box) drawBox(ctx, box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy, dpr, true);
}

// ---------------------------------------------------------------------------------- panels

function renderPanels() {
  renderTransport();
  renderObjects();
  renderVideoBar();
}

function renderTransport() {
  const n = V.view ? V.view.num_frames : 0;
  el.scrubber.max = String(Math.max(0, n - 1));
  if (Number(el.scrubber.value) !== V.t) el.scrubber.value = String(V.t);
  el.scrubber.disabled = !V.view;
  if (document.activeElement !== el.frameInput) el.frameInput.value = String(V.t);
  el.frameInput.max = String(Math.max(0, n - 1));
  el.frameLast.textContent = `/ ${Math.max(0, n - 1)}`;
  el.play.setAttribute("aria-pressed", String(V.playing));
  el.play.setAttribute("aria-label", V.playing ? "Pause" : "Play");
  const tracked = V.view ? V.view.tracked_frames : 0;
  el.trackedCount.textContent = V.view ? `${tracked} / ${n} frames tracked` : "";
}

function renderTicks() {
  const n = V.view ? V.view.num_frames : 0;
  const last = Math.max(1, n - 1);
  el.ticks.replaceChildren(
    ...[...V.prompted].sort((a, b) => a - b).map((t) =>
      shell.h("span", { class: "tick", "data-frame": t, style: `left:${(100 * t) / last}%` })),
  );
  el.ticks.dataset.frames = [...V.prompted].sort((a, b) => a - b).join(",");
}

let objectsDrawn = ""; // what the rows show, to leave them alone while it stays (playback)

function renderObjects() {
  if (renaming !== null) return; // the rows come back when the name is in
  el.objectsCount.textContent = String(V.objects.length);
  el.objectsEmpty.hidden = V.objects.length > 0 || !V.view;
  const here = new Set(V.shown ? V.shown.masks.map((m) => m.obj) : []);
  const prompts = new Map();
  for (const p of V.shown ? V.shown.prompts : []) prompts.set(p.obj, (prompts.get(p.obj) || 0) + 1);
  const drawn = JSON.stringify([V.objects, V.active, [...here], [...prompts]]);
  if (drawn === objectsDrawn) return;
  objectsDrawn = drawn;
  el.objects.replaceChildren(
    ...V.objects.map((o, i) => {
      const meta = [here.has(o.id) ? "mask here" : "no mask here"];
      const n = prompts.get(o.id) || 0;
      if (n) meta.push(`${n} prompt${n === 1 ? "" : "s"}`);
      if (i < 9) meta.push(`key ${i + 1}`);
      return shell.h("li", {
        "data-obj": o.id, class: o.id === V.active ? "selected" : null,
        title: "Click to make it the active object (keys 1-9); double-click the name to rename",
      },
      shell.h("span", { class: "swatch", style: `background:${shell.colorOf(o.id)}` }),
      shell.h("div", { class: "obj" },
        shell.h("div", { class: "obj-line" },
          shell.h("span", { class: o.name ? "cat" : "cat none", text: o.name || "no name" }),
          shell.h("span", { class: "aid", text: `#${o.id}` })),
        shell.metaLine(meta)),
      shell.h("button", { type: "button", class: "icon del", "data-action": "delete", title: "Delete the object, its prompts and masks (Del)", "aria-label": "Delete" }, "×"));
    }),
  );
}

function renderVideoBar() {
  const o = V.objects.find((x) => x.id === V.active);
  el.activeObject.replaceChildren(
    ...(o
      ? [shell.h("span", { class: "swatch", style: `background:${shell.colorOf(o.id)}` }),
        shell.h("span", { class: "cat", text: objectName(o) })]
      : [shell.h("span", { class: "muted", text: V.view ? "No object" : "" })]),
  );
  el.activeObject.dataset.obj = o ? String(o.id) : "";
  const mine = V.shown ? V.shown.prompts.filter((p) => p.obj === V.active).length : 0;
  const masked = !!(V.shown && V.shown.masks.some((m) => m.obj === V.active));
  let text = "";
  if (V.view) {
    if (tracking()) text = "Tracking: prompts wait for it to end";
    else if (!o) text = "Click an object to start";
    else if (mine) text = `${mine} prompt${mine === 1 ? "" : "s"} on this frame`;
    else if (masked) text = "Tracked here: click to correct";
    else text = "Click the object on this frame";
  }
  el.framePrompts.textContent = text;
  el.clearFrame.disabled = !mine || tracking();
  el.newObject.disabled = !V.view;
  renderJob();
}

function renderJob() {
  const j = V.job || { state: "idle", done: 0, total: 0 };
  const running = j.state === "running";
  el.track.disabled = !V.view || running;
  el.cancelTrack.hidden = !running;
  el.cancelTrack.disabled = V.cancelling;
  el.trackProgress.hidden = !running;
  el.trackProgress.firstElementChild.style.width = j.total ? `${(100 * j.done) / j.total}%` : "0%";
  const texts = {
    running: V.cancelling ? "Cancelling…" : j.total ? `Tracking ${j.done} / ${j.total}` : "Tracking…",
    done: `Tracked ${j.done} frame${j.done === 1 ? "" : "s"}`,
    cancelled: `Cancelled at ${j.done} / ${j.total}`,
    error: "Tracking failed",
  };
  el.trackStatus.textContent = texts[j.state] || "";
  el.trackStatus.title = j.state === "error" && j.error ? j.error : "";
  el.trackStatus.dataset.state = j.state;
  el.trackStatus.dataset.ended = String(V.ended);
  el.exportOverlay.disabled = !V.view || running || V.exporting;
  el.exportOverlay.textContent = V.exporting ? "Exporting…" : "Overlay mp4";
}

// ---------------------------------------------------------------------------------- objects

/** POST a new object and make it the active one (inside an action). */
async function createObject() {
  const gen = V.gen;
  const o = await shell.api("POST", `/api/videos/${V.id}/objects`, {});
  if (gen === V.gen) {
    V.objects = [...V.objects, o];
    V.active = o.id;
    renderPanels();
    surface.invalidate();
  }
  return o;
}

function newObject() {
  if (!V.view) return;
  const gen = V.gen;
  shell.act(async () => {
    if (gen === V.gen) await createObject();
  }, "Adding an object…");
}

function selectObject(obj) {
  if (!V.objects.some((o) => o.id === obj)) return;
  V.active = obj;
  // the rows stay (a double-click on one renames it): only the marks move
  for (const li of el.objects.querySelectorAll("li")) li.classList.toggle("selected", Number(li.dataset.obj) === obj);
  objectsDrawn = "";
  renderVideoBar();
  surface.invalidate();
}

function deleteObject(obj) {
  if (!V.view) return;
  if (obj === null || obj === undefined) {
    shell.showMessage("No object to delete.", "info");
    return;
  }
  const id = V.id;
  const gen = V.gen;
  shell.act(async () => {
    const r = await shell.api("DELETE", `/api/videos/${id}/objects/${obj}`);
    if (gen !== V.gen) return;
    const i = V.objects.findIndex((o) => o.id === r.deleted);
    V.objects = V.objects.filter((o) => o.id !== r.deleted);
    if (V.active === r.deleted) {
      const next = V.objects[Math.min(Math.max(0, i), V.objects.length - 1)];
      V.active = next ? next.id : null;
    }
    forgetAllMasks(); // its masks went from every frame
    await refreshView(gen);
    if (V.shown) await refreshMasks(V.shown.t);
    renderPanels();
    shell.refreshSummary();
  }, "Deleting the object…");
}

function renameObject(obj, name) {
  const id = V.id;
  const gen = V.gen;
  shell.act(async () => {
    const o = await shell.api("PATCH", `/api/videos/${id}/objects/${obj}`, { name: name || null });
    if (gen !== V.gen) return;
    V.objects = V.objects.map((x) => (x.id === o.id ? o : x));
    renderPanels();
  }, "Renaming…");
}

function startRename(li) {
  const obj = Number(li.dataset.obj);
  const o = V.objects.find((x) => x.id === obj);
  const span = li.querySelector(".cat");
  if (!o || !span || renaming !== null) return;
  const input = shell.h("input", { type: "text", class: "rename", value: o.name || "", spellcheck: "false", placeholder: "name" });
  renaming = obj;
  editName(span, input, (save, name) => {
    renaming = null;
    objectsDrawn = "";
    if (save && name !== (o.name || "")) renameObject(obj, name);
    else renderObjects();
  });
}

// ---------------------------------------------------------------------------------- prompts

function canPrompt() {
  return !!(V.view && V.shown);
}

/** Prompt the active object on the frame shown (with no object yet, the first one is made). */
function addPrompt(prompt) {
  if (!canPrompt()) return;
  if (tracking()) {
    shell.showMessage("The video is being tracked: wait for it to end (or Cancel), then add prompts.", "info");
    return;
  }
  pause();
  const id = V.id;
  const gen = V.gen;
  const t = V.shown.t;
  const p = { frame: t, obj: V.active, ...prompt };
  V.pending.push(p);
  renderVideoBar();
  surface.scheduleRender();
  shell.act(async () => {
    try {
      if (p.obj === null) p.obj = (await createObject()).id;
      if (gen !== V.gen) return;
      const r = await shell.api("POST", `/api/videos/${id}/prompt`, p);
      if (gen === V.gen) await takeFrameMasks(t, r);
    } finally {
      if (gen === V.gen) {
        V.pending = V.pending.filter((x) => x !== p);
        renderVideoBar();
        surface.invalidate();
      }
    }
  }, "Predicting…");
}

function clearFrame() {
  if (!canPrompt() || V.active === null) return;
  if (!V.shown.prompts.some((p) => p.obj === V.active)) return;
  if (tracking()) return;
  const id = V.id;
  const gen = V.gen;
  const t = V.shown.t;
  const obj = V.active;
  shell.act(async () => {
    const r = await shell.api("POST", `/api/videos/${id}/clear`, { frame: t, obj });
    if (gen === V.gen) await takeFrameMasks(t, r);
  }, "Clearing…");
}

// ---------------------------------------------------------------------------------- tracking

function setJob(job) {
  V.job = job;
  renderVideoBar();
}

function track() {
  if (!V.view) return;
  if (tracking()) return;
  pause();
  const id = V.id;
  const gen = V.gen;
  shell.act(async () => {
    const job = await shell.api("POST", `/api/videos/${id}/track`, { direction: "both" });
    if (gen !== V.gen) return;
    setJob(job);
    listen();
  }, "Starting tracking…");
}

function cancelTrack() {
  if (!tracking() || V.cancelling) return;
  const id = V.id;
  const gen = V.gen;
  V.cancelling = true; // until the job's end comes (the server stops after the current frame)
  renderJob();
  shell.api("POST", `/api/videos/${id}/cancel`).catch((e) => {
    if (gen !== V.gen) return;
    V.cancelling = false;
    renderJob();
    shell.showError(e);
  });
}

/** Follow the running job: its frames' masks as they come, its end. */
function listen() {
  stopListening();
  const id = V.id;
  const gen = V.gen;
  // same origin: the cookie set by /?token=... authenticates it (it cannot send headers)
  const es = new EventSource(`/api/videos/${id}/events`);
  V.events = es;
  es.addEventListener("progress", (e) => {
    if (gen !== V.gen) return;
    const p = JSON.parse(e.data);
    setJob({ ...V.job, state: "running", done: p.done, total: p.total });
    refreshMasks(p.frame);
    scheduleViewRefresh(gen);
  });
  es.addEventListener("end", (e) => {
    es.close();
    if (V.events === es) V.events = null;
    if (gen === V.gen) finishJob(JSON.parse(e.data));
  });
  es.addEventListener("error", () => {
    // the stream broke (not its end): follow the job by polling instead
    es.close();
    if (V.events === es) V.events = null;
    if (gen === V.gen) pollJob(gen);
  });
}

let viewTimer = null;

/** While a job runs, the view (its tracked count) is asked again at most once a second. */
function scheduleViewRefresh(gen) {
  if (viewTimer) return;
  viewTimer = setTimeout(() => {
    viewTimer = null;
    if (gen === V.gen && tracking()) refreshView(gen);
  }, 1000);
}

function stopListening() {
  if (V.events) V.events.close();
  V.events = null;
}

async function pollJob(gen) {
  while (gen === V.gen) {
    let job;
    try {
      job = await shell.api("GET", `/api/videos/${V.id}/job`);
    } catch (e) {
      if (gen === V.gen) shell.showError(e);
      return;
    }
    if (gen !== V.gen) return;
    if (job.state !== "running") {
      finishJob(job);
      return;
    }
    setJob(job);
    await sleep(POLL_MS);
  }
}

async function finishJob(job) {
  const gen = V.gen;
  V.cancelling = false;
  setJob(job);
  if (job.state === "error") shell.showMessage(`Tracking failed: ${job.error || "unknown error"}`);
  else if (job.state === "cancelled") {
    shell.showMessage(`Tracking cancelled after ${job.done} of ${job.total} frames; what was tracked is kept.`, "info");
  }
  forgetAllMasks();
  await refreshView(gen);
  if (gen !== V.gen) return;
  if (V.shown) await refreshMasks(V.shown.t);
  if (gen !== V.gen) return;
  V.ended += 1; // counted once the page shows the job's outcome
  renderJob();
  shell.refreshSummary();
}

/** The video view again: objects, prompted frames, tracked count. */
async function refreshView(gen) {
  let view;
  try {
    view = await shell.api("GET", `/api/videos/${V.id}`);
  } catch (e) {
    if (gen === V.gen) shell.showError(e);
    return;
  }
  if (gen !== V.gen) return;
  takeView(view);
}

function takeView(view) {
  V.view = view;
  V.objects = view.objects || [];
  if (!V.objects.some((o) => o.id === V.active)) V.active = V.objects.length ? V.objects[0].id : null;
  V.prompted = new Set(view.prompted_frames || []);
  if (!tracking() || view.job.state !== "running") V.job = view.job;
  renderTicks();
  renderPanels();
}

// ---------------------------------------------------------------------------------- export

function exportOverlay() {
  if (!V.view || V.exporting || tracking()) return;
  const id = V.id;
  const gen = V.gen;
  V.exporting = true;
  renderJob();
  // not queued: writing every frame takes a while, prompts need not wait for it
  shell.api("POST", `/api/videos/${id}/overlay`).then((r) => {
    if (gen !== V.gen) return;
    el.overlayFile.replaceChildren("Written: ", shell.h("code", { text: r.file }), " (in the annotations folder)");
    el.overlayFile.dataset.file = r.file;
    shell.showMessage(`Overlay video written: ${r.file}`, "info");
  }, shell.showError).finally(() => {
    if (gen !== V.gen) return;
    V.exporting = false;
    renderJob();
  });
}

// ---------------------------------------------------------------------------------- keys

/** A key in the video view: true when it was one of its own (then the shell stops there). */
export function videoKey(e, key) {
  if (!V.view) return false;
  const once = !e.repeat;
  const n = e.shiftKey ? 10 : 1;
  switch (key) {
    case " ": togglePlay(); return true;
    case ",":
    case "<":
    case "ArrowLeft": stepFrames(-n); return true;
    case ".":
    case ">":
    case "ArrowRight": stepFrames(n); return true;
    case "Home": seekVideo(0); return true;
    case "End": seekVideo(lastFrame()); return true;
    case "o": if (once) newObject(); return true;
    case "t": if (once) track(); return true;
    case "Escape":
      if (!gesture.cancel()) clearFrame();
      return true;
    case "Delete": if (once) deleteObject(V.active); return true;
    default:
      if (/^[1-9]$/.test(key)) {
        const o = V.objects[Number(key) - 1];
        if (o) selectObject(o.id);
        return true;
      }
      return false;
  }
}

// ---------------------------------------------------------------------------------- open and close

/** Whether a frame of the open video is on screen. */
export function videoReady() {
  return !!(V.view && V.shown);
}

/** The frame asked for (shown or loading), or null with no video open. */
export function videoFrame() {
  return V.view ? V.t : null;
}

/**
 * Open video `id` at frame `frame` (null: where it was left, else 0). Throws when the video cannot
 * be read (the shell reports it); resolves once its first frame is shown.
 */
export async function openVideo(id, frame) {
  closeVideo();
  const gen = V.gen;
  V.id = id;
  const view = await shell.api("GET", `/api/videos/${id}`);
  if (gen !== V.gen) return;
  if (!view.num_frames) throw new Error("this video has no frames");
  V.active = null;
  V.t = frame === null || frame === undefined ? V.lastFrame.get(id) || 0 : frame;
  takeView(view);
  V.t = clampFrame(V.t);
  surface.fit();
  if (tracking()) listen(); // a job started before this page (or before a reload) is still running
  await show(V.t);
}

/** Leave the video view: playback, the job's stream and the caches go. */
export function closeVideo() {
  V.gen += 1;
  pause();
  stopListening();
  gesture.cancel();
  clearTimeout(hashTimer);
  hashTimer = null;
  clearTimeout(viewTimer);
  viewTimer = null;
  Object.assign(V, {
    id: null, view: null, shown: null, objects: [], active: null, prompted: new Set(), pending: [],
    job: null, cancelling: false, exporting: false, t: 0, step: 1,
  });
  markStage();
  renaming = null;
  frames.clear();
  forgetAllMasks();
  surface.forget();
  el.canvas.hidden = true;
  el.overlayFile.textContent = el.overlayFile.dataset.help;
  delete el.overlayFile.dataset.file;
  renderTicks();
  renderPanels();
  surface.scheduleRender();
}

// ---------------------------------------------------------------------------------- start

/**
 * Bind the video view's elements. `services` are the shell's: api, request, errorOf, act, h,
 * metaLine, colorOf, opacity (0..1), showMessage, showError, refreshSummary.
 */
export function initVideo(services) {
  shell = services;
  const ids = {
    stage: "stage", canvas: "video-canvas", play: "play", framePrev: "frame-prev", frameNext: "frame-next",
    scrubber: "scrubber", ticks: "ticks", frameInput: "frame-input", frameLast: "frame-last",
    trackedCount: "tracked-count", activeObject: "active-object", framePrompts: "frame-prompts",
    trackProgress: "track-progress", trackStatus: "track-status", clearFrame: "clear-frame",
    cancelTrack: "cancel-track", track: "track", objects: "vobjects", objectsCount: "vobjects-count",
    objectsEmpty: "vobjects-empty", newObject: "new-object", exportOverlay: "export-overlay",
    overlayFile: "overlay-file",
  };
  for (const [k, id] of Object.entries(ids)) el[k] = document.getElementById(id);
  el.overlayFile.dataset.help = el.overlayFile.textContent;

  el.play.addEventListener("click", togglePlay);
  el.framePrev.addEventListener("click", (e) => stepFrames(e.shiftKey ? -10 : -1));
  el.frameNext.addEventListener("click", (e) => stepFrames(e.shiftKey ? 10 : 1));
  el.scrubber.addEventListener("input", () => seekVideo(Number(el.scrubber.value)));
  el.scrubber.addEventListener("change", () => el.scrubber.blur());
  el.frameInput.addEventListener("keydown", (e) => {
    e.stopPropagation(); // typing a number is typing
    if (e.key === "Enter" || e.key === "Escape") {
      if (e.key === "Enter" && el.frameInput.value !== "") seekVideo(Number(el.frameInput.value));
      el.frameInput.blur();
    }
  });
  el.frameInput.addEventListener("change", () => {
    if (el.frameInput.value !== "") seekVideo(Number(el.frameInput.value));
  });
  el.frameInput.addEventListener("blur", () => renderTransport());
  el.clearFrame.addEventListener("click", clearFrame);
  el.track.addEventListener("click", track);
  el.cancelTrack.addEventListener("click", cancelTrack);
  el.newObject.addEventListener("click", newObject);
  el.exportOverlay.addEventListener("click", exportOverlay);
  bindObjectRows(el.objects, "obj", { select: selectObject, remove: deleteObject, rename: startRename });
  surface = viewCanvas(el.canvas, el.stage, {
    size: () => V.view, bitmap: () => V.shown && V.shown.bitmap, compose: composeMasks, draw: drawPrompts,
  });
  gesture = attachPromptGestures(el.canvas, {
    canPrompt, size: () => V.view, prompt: addPrompt, redraw: surface.scheduleRender,
  });
  renderPanels();
}
