// samkit studio: the page. Everything goes through the JSON API of docs/studio/API.md.
//
// One entry of the list is open at a time (its id in location.hash: "#<id>" for an image,
// "#<id>/f<frame>" for a video). This file is the shell (the list, the top bar, messages, the
// request queue, keys) and the image view; a video opens the video view of video.js instead. The
// server owns all state: the object in progress (per client and image), the accepted annotations,
// the proposals; the page keeps a copy of what the last responses said and redraws from it.
// Requests that change state run one after another (a queue), so fast clicks reach the server in
// the order they were made.

import { viewCanvas } from "./canvas.js";
import { drawBox, drawPrompt } from "./draw.js";
import { attachPromptGestures } from "./gestures.js";
import { bindObjectRows, editName } from "./lists.js";
import { blend, hexRgb } from "./masks.js";
import { closeVideo, initVideo, invalidateVideo, openVideo, seekVideo, videoFrame, videoKey, videoReady } from "./video.js";

// ---------------------------------------------------------------------------------- constants

// Colour of object or annotation `id`: PALETTE[(id - 1) % PALETTE.length], so ids 1..20 have the
// colours of samkit's own pictures (samkit.visualize.OBJECT_COLORS, the same list: a test compares
// them); neighbouring ids are far apart. No cyan (the object in progress), amber (the focused
// proposal) or white (proposals).
const PALETTE = [
  "#e6194b", "#3cb44b", "#4363d8", "#f99379", "#dcd300", "#008080", "#b3446c", "#000075", "#bcf60c", "#c2b280",
  "#875692", "#800000", "#808000", "#e6beff", "#f032e6", "#654522", "#aaffc3", "#0067a5", "#e25822", "#008856",
];
const CURRENT_RGB = hexRgb("#1ad1ff"); // the object in progress
const PROPOSAL_RGB = hexRgb("#ffffff"); // pending proposals
const FOCUS_RGB = hexRgb("#ffb000"); // the focused proposal
const WHITE = [255, 255, 255];
const POLL_MS = 500; // proposals polling period
const CLIENT_KEY = "samkit-studio-client";
const TOKEN_KEY = "samkit-studio-token";

export function colorOf(id) {
  return PALETTE[(((id - 1) % PALETTE.length) + PALETTE.length) % PALETTE.length];
}

// ---------------------------------------------------------------------------------- session

function randomId(n = 20) {
  const chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  const bytes = new Uint8Array(n);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => chars[b % chars.length]).join("");
}

function storage() {
  try {
    return window.sessionStorage;
  } catch {
    return null; // storage disabled: the ids then live as long as the page
  }
}

// The tab's client id: kept in sessionStorage, so a reload keeps the object in progress.
const clientId = (() => {
  const store = storage();
  let id = store && store.getItem(CLIENT_KEY);
  if (!id || !/^[A-Za-z0-9_-]{1,64}$/.test(id)) {
    id = randomId();
    if (store) store.setItem(CLIENT_KEY, id);
  }
  return id;
})();

// The token, from /?token=... (then kept in sessionStorage and taken out of the address bar).
const token = (() => {
  const store = storage();
  const params = new URLSearchParams(location.search);
  let t = params.get("token");
  if (t) {
    if (store) store.setItem(TOKEN_KEY, t);
    params.delete("token");
    const query = params.toString();
    history.replaceState(null, "", location.pathname + (query ? `?${query}` : "") + location.hash);
  } else {
    t = store && store.getItem(TOKEN_KEY);
  }
  return t || null;
})();

// ---------------------------------------------------------------------------------- API

class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

function headers(json) {
  const h = { "X-Studio-Client": clientId };
  if (token) h["X-Studio-Token"] = token;
  if (json) h["Content-Type"] = "application/json";
  return h;
}

async function request(method, path, body) {
  let res;
  try {
    res = await fetch(path, {
      method,
      headers: headers(body !== undefined),
      body: body !== undefined ? JSON.stringify(body) : undefined,
      credentials: "same-origin",
      cache: "no-store",
    });
  } catch {
    throw new ApiError("The studio server cannot be reached: is `samkit studio` still running?", 0);
  }
  return res;
}

async function errorOf(res, method, path) {
  let message = `${method} ${path}: HTTP ${res.status}`;
  try {
    const data = await res.json();
    if (data && data.error) message = data.error;
  } catch {
    // not JSON: keep the status line
  }
  if (res.status === 401) {
    message += " — open the address `samkit studio` printed (it ends in ?token=…).";
  }
  return new ApiError(message, res.status);
}

async function api(method, path, body) {
  const res = await request(method, path, body);
  if (!res.ok) throw await errorOf(res, method, path);
  return res.status === 204 ? null : res.json();
}

// ---------------------------------------------------------------------------------- state

const S = {
  mode: "image", // the view on screen: "image" or "video" (document.body's data-view)
  info: null,
  images: [], // [{id, name, kind, status, annotations}] in the server's order
  byId: new Map(), // id -> entry of images
  wantedId: null, // the image the hash asks for
  imageId: null, // the image on screen (or loading)
  gen: 0, // bumped on every image change: responses for an older one are dropped
  view: null, // the `image` view of the open image
  bitmap: null,
  loadError: null,
  annotations: [],
  current: null,
  pending: [], // prompts sent, not answered yet (drawn faintly)
  proposals: { state: "none", error: null, proposals: [] },
  focusedPid: null,
  selectedAid: null,
  opacity: 0.5,
  categories: new Set(),
};

let queue = Promise.resolve();
let inFlight = 0;

/** Run `fn` after every action queued before it; its errors go to the message bar. */
function act(fn, label = "Working…") {
  const run = async () => {
    inFlight += 1;
    setBusy(label);
    try {
      await fn();
    } catch (e) {
      showError(e);
    } finally {
      inFlight -= 1;
      setBusy(label);
    }
  };
  queue = queue.then(run, run);
  return queue;
}

// ---------------------------------------------------------------------------------- DOM helpers

const $ = (sel) => document.querySelector(sel);
const el = {};

function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k === "style") node.style.cssText = v;
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

function fmt(v, digits = 2) {
  return v === null || v === undefined || Number.isNaN(v) ? "–" : Number(v).toFixed(digits);
}

function fmtArea(n) {
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)}M px`;
  if (n >= 1e4) return `${Math.round(n / 1e3)}k px`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)}k px`;
  return `${n} px`;
}

let messageTimer = null;

function showMessage(text, kind = "error") {
  el.messageText.textContent = text;
  el.message.dataset.kind = kind;
  el.message.hidden = false;
  clearTimeout(messageTimer);
  messageTimer = setTimeout(hideMessage, kind === "error" ? 12000 : 3000);
}

function hideMessage() {
  el.message.hidden = true;
}

function showError(e) {
  console.error(e);
  showMessage(e instanceof ApiError ? e.message : `Unexpected error: ${e && e.message ? e.message : e}`);
}

let busyTimer = null;

function setBusy(label) {
  if (inFlight > 0) {
    el.busyText.textContent = label;
    if (!busyTimer && el.busy.hidden) {
      busyTimer = setTimeout(() => {
        busyTimer = null;
        if (inFlight > 0) el.busy.hidden = false;
      }, 200);
    }
  } else {
    clearTimeout(busyTimer);
    busyTimer = null;
    el.busy.hidden = true;
  }
}

// ---------------------------------------------------------------------------------- drawing

let surface = null; // the image's canvas (canvas.js), made in bind()
let gesture = null; // its prompt gesture (gestures.js)

function pendingProposals() {
  return S.proposals.proposals.filter((p) => p.status === "pending");
}

/** The masks into the overlay's pixels `buf` (`w` wide; `e`: an outline's width). */
function composeMasks(buf, w, e) {
  const o = S.opacity;
  const edgeAlpha = o > 0 ? Math.min(1, o + 0.5) : 0; // outlines stay readable at low opacity
  const raster = surface.raster;
  // pending proposals: a light fill and a white outline; the focused one in amber, on top
  let focused = null;
  for (const p of pendingProposals()) {
    if (p.id === S.focusedPid) {
      focused = p;
      continue;
    }
    blend(buf, w, raster(`p${p.id}`, p.mask, e), PROPOSAL_RGB, o * 0.25, Math.min(1, o * 0.6 + 0.15));
  }
  if (focused) {
    blend(buf, w, raster(`p${focused.id}`, focused.mask, 2 * e), FOCUS_RGB, o * 0.7, o > 0 ? 1 : 0);
  }
  // accepted objects in their colours; the selected one last, outlined in white
  let selected = null;
  for (const a of S.annotations) {
    if (a.id === S.selectedAid) {
      selected = a;
      continue;
    }
    blend(buf, w, raster(`a${a.id}`, a.mask, 2 * e), hexRgb(colorOf(a.id)), o, edgeAlpha);
  }
  if (selected) {
    blend(buf, w, raster(`a${selected.id}`, selected.mask, 3 * e), hexRgb(colorOf(selected.id)),
      Math.min(1, o * 1.3), o > 0 ? 1 : 0, WHITE);
  }
  // the object in progress
  if (S.current && S.current.mask) {
    blend(buf, w, raster("current", S.current.mask, e), CURRENT_RGB, o, o > 0 ? Math.min(1, o + 0.45) : 0, WHITE);
  }
}

/** The prompts over the image: the answered ones, then the ones on their way; a box being dragged. */
function drawPrompts(ctx, sx, sy, dpr) {
  const prompts = S.current ? S.current.prompts : [];
  for (const p of prompts) drawPrompt(ctx, p, sx, sy, dpr, 1);
  for (const p of S.pending) drawPrompt(ctx, p, sx, sy, dpr, 0.55);
  const box = gesture.box();
  if (box) drawBox(ctx, box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy, dpr, true);
}

// ---------------------------------------------------------------------------------- panels

function statusText(s) {
  return { done: "done", partial: "partly done", untouched: "untouched", error: "unreadable" }[s] || s;
}

const isVideo = (id) => {
  const im = S.byId.get(id);
  return !!im && im.kind === "video";
};

function entryTitle(im) {
  return `${im.name} — ${im.kind === "video" ? "video, " : ""}${statusText(im.status)}`;
}

/** A small film strip (videos in the list). */
function filmIcon() {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 16 16");
  svg.setAttribute("class", "kind");
  svg.setAttribute("aria-label", "video");
  const path = document.createElementNS(ns, "path");
  path.setAttribute("fill-rule", "evenodd");
  path.setAttribute("d", "M2 2h12v12H2zM3 3.5v1.5h1.5V3.5zm0 3.5v2h1.5V7zm0 3.5v2h1.5v-2zM11.5 3.5v1.5H13V3.5zm0 3.5v2H13V7zm0 3.5v2H13v-2zM5.5 3.5v9h5v-9z");
  svg.append(path);
  return svg;
}

function renderImages() {
  el.images.replaceChildren(
    ...S.images.map((im) =>
      h("li", { "data-id": im.id, "data-status": im.status, "data-kind": im.kind || "image", title: entryTitle(im) },
        h("span", { class: "dot", "aria-hidden": "true" }),
        im.kind === "video" ? filmIcon() : null,
        h("span", { class: "name", text: im.name }),
        h("span", { class: "count", text: im.annotations ? String(im.annotations) : "" }))),
  );
  markOpenImage();
  renderCounts();
}

function updateImageRow(id) {
  const im = S.byId.get(id);
  const li = el.images.querySelector(`li[data-id="${id}"]`);
  if (!im || !li) return;
  li.dataset.status = im.status;
  li.title = entryTitle(im);
  li.querySelector(".count").textContent = im.annotations ? String(im.annotations) : "";
  renderCounts();
}

function markOpenImage() {
  for (const li of el.images.querySelectorAll("li.open")) li.classList.remove("open");
  const li = el.images.querySelector(`li[data-id="${S.imageId}"]`);
  if (li) {
    li.classList.add("open");
    li.scrollIntoView({ block: "nearest" });
  }
}

function renderCounts() {
  const n = { done: 0, partial: 0, untouched: 0 };
  for (const im of S.images) if (im.status in n) n[im.status] += 1;
  el.countDone.textContent = n.done;
  el.countPartial.textContent = n.partial;
  el.countUntouched.textContent = S.images.length - n.done - n.partial;
  el.imagesCount.textContent = String(S.images.length);
}

function renderStats(st) {
  el.statMasks.textContent = st.masks ?? 0;
  el.statPrompts.textContent = fmt(st.prompts_per_mask, 1);
  el.statSeconds.textContent = fmt(st.seconds_per_mask, 1);
}

function renderTitle() {
  const im = S.byId.get(S.imageId);
  el.imageName.textContent = im ? im.name : "—";
  const idx = S.images.findIndex((x) => x.id === S.imageId);
  el.imageIndex.textContent = idx >= 0 ? `${idx + 1} / ${S.images.length}` : "";
  const status = S.loadError ? "error" : im ? im.status : "untouched";
  el.status.dataset.status = status;
  el.status.textContent = statusText(status);
  const done = !!(S.view && S.view.done);
  el.done.setAttribute("aria-pressed", String(done));
  el.done.textContent = done ? "Done ✓" : "Mark done";
  el.done.disabled = !S.view;
  el.propose.disabled = !S.view;
  el.prev.disabled = idx <= 0;
  el.next.disabled = idx < 0 || idx >= S.images.length - 1;
  const video = S.mode === "video";
  el.prev.title = video ? "Previous in the list (P)" : "Previous image (P, ←)";
  el.next.title = video ? "Next in the list (N)" : "Next image (N, →)";
  el.stage.dataset.imageId = S.imageId ?? "";
  el.stage.dataset.loaded = (video ? videoReady() : S.view && S.bitmap) ? "1" : "0";
  document.title = im ? `${im.name} — samkit studio` : "samkit studio";
}

function renderObjectBar() {
  const c = S.current;
  el.candidates.replaceChildren(
    ...(c && c.candidates && c.candidates.length === 3
      ? c.candidates.map((cand, i) =>
        h("button", {
          type: "button", class: i === c.chosen ? "candidate chosen" : "candidate", "data-candidate": i,
          "aria-pressed": String(i === c.chosen), title: `Candidate ${i + 1} (key ${i + 1})`,
        }, h("kbd", { text: String(i + 1) }), ` ${fmt(cand.iou)}`))
      : []),
  );
  el.iou.textContent = c && c.iou !== null && c.iou !== undefined ? `IoU ${fmt(c.iou)}` : "";
  el.iou.dataset.iou = c && c.iou !== null && c.iou !== undefined ? String(c.iou) : "";
  const n = c ? c.prompts.length : 0;
  el.promptCount.textContent = n ? `${n} prompt${n === 1 ? "" : "s"}` : S.view ? "Click an object to start" : "";
  el.accept.disabled = !(c && c.mask);
  el.clear.disabled = !c && !S.pending.length;
}

/** A line of small facts, wrapping between them (never inside one). */
function metaLine(items) {
  const line = h("div", { class: "obj-meta" });
  items.forEach((m, i) => {
    if (i) line.append(" · ");
    line.append(h("span", { text: m }));
  });
  return line;
}

function renderObjects() {
  el.objectsCount.textContent = String(S.annotations.length);
  el.objectsEmpty.hidden = S.annotations.length > 0 || !S.view;
  el.objects.replaceChildren(
    ...S.annotations.map((a) => {
      const meta = [a.source, `IoU ${fmt(a.predicted_iou)}`];
      if (a.source !== "auto" || a.num_prompts) meta.push(`${a.num_prompts} prompt${a.num_prompts === 1 ? "" : "s"}`);
      if (a.seconds !== null && a.seconds !== undefined) meta.push(`${fmt(a.seconds, 1)}\u00a0s`);
      return h("li", {
        "data-aid": a.id, "data-source": a.source, class: a.id === S.selectedAid ? "selected" : null,
        title: "Click to select (Del deletes it); double-click the name to rename",
      },
      h("span", { class: "swatch", style: `background:${colorOf(a.id)}` }),
      h("div", { class: "obj" },
        h("div", { class: "obj-line" },
          h("span", { class: a.category ? "cat" : "cat none", text: a.category || "no category" }),
          h("span", { class: "aid", text: `#${a.id}` })),
        metaLine(meta)),
      h("button", { type: "button", class: "icon del", "data-action": "delete", title: "Delete (Del)", "aria-label": "Delete" }, "×"));
    }),
  );
  for (const a of S.annotations) if (a.category) S.categories.add(a.category);
  const known = new Set(Array.from(el.categories.options, (o) => o.value));
  for (const c of S.categories) if (!known.has(c)) el.categories.append(h("option", { value: c }));
}

function renderProposals() {
  const p = S.proposals;
  const pend = pendingProposals();
  let stateText = "";
  if (p.state === "queued" || p.state === "running") stateText = "running…";
  else if (p.state === "error") stateText = "failed";
  else if (p.state === "ready") {
    const accepted = p.proposals.filter((x) => x.status === "accepted").length;
    const rejected = p.proposals.filter((x) => x.status === "rejected").length;
    stateText = `${pend.length} pending` + (accepted ? ` · ${accepted} accepted` : "") + (rejected ? ` · ${rejected} rejected` : "");
  }
  el.proposalState.textContent = stateText;
  el.proposalState.dataset.state = p.state;
  el.propose.hidden = p.state !== "none" && p.state !== "error";
  el.proposalsHelp.hidden = pend.length === 0;
  el.proposals.replaceChildren(
    ...pend.map((x) =>
      h("li", { "data-pid": x.id, "data-status": x.status, class: x.id === S.focusedPid ? "focused" : null, title: "Click to focus" },
        h("span", { class: "swatch outline" }),
        h("div", { class: "obj" },
          h("div", { class: "obj-line" }, h("span", { class: "cat", text: `Proposal ${x.id}` })),
          metaLine([`IoU ${fmt(x.predicted_iou)}`, `stability ${fmt(x.stability_score)}`, fmtArea(x.area)])),
        h("button", { type: "button", class: "icon ok", "data-action": "accept", title: "Accept (A)", "aria-label": "Accept" }, "✓"),
        h("button", { type: "button", class: "icon del", "data-action": "reject", title: "Reject (X)", "aria-label": "Reject" }, "×"))),
  );
  const li = el.proposals.querySelector("li.focused");
  if (li) li.scrollIntoView({ block: "nearest" });
}

function renderStageNote() {
  let note = "";
  if (!S.images.length && S.info) note = "No images found in the images folder.";
  else if (S.loadError) note = `This ${S.mode === "video" ? "video" : "image"} cannot be opened: ${S.loadError}`;
  else if (S.imageId !== null && !(S.mode === "video" ? videoReady() : S.view)) note = "Loading…";
  el.stageNote.textContent = note;
  el.stageNote.hidden = !note;
  el.stageNote.dataset.kind = S.loadError ? "error" : "info";
}

function renderAll() {
  renderTitle();
  renderObjectBar();
  renderObjects();
  renderProposals();
  renderStageNote();
  surface.invalidate();
}

// ---------------------------------------------------------------------------------- summary

let summaryTimer = null;

/** Refresh the image list's statuses and the stats soon (several changes, one refresh). */
function refreshSummary() {
  clearTimeout(summaryTimer);
  summaryTimer = setTimeout(async () => {
    try {
      const [list, stats] = await Promise.all([api("GET", "/api/images"), api("GET", "/api/stats")]);
      for (const im of list.images) {
        const mine = S.byId.get(im.id);
        if (mine && mine.status !== "error") { // an unreadable image keeps its red dot until it opens
          mine.status = im.status;
          mine.annotations = im.annotations;
          updateImageRow(im.id);
        }
      }
      renderStats(stats);
      renderTitle();
    } catch (e) {
      showError(e);
    }
  }, 150);
}

function setImageStatus(status) {
  const im = S.byId.get(S.imageId);
  if (!im) return;
  if (status) im.status = status;
  im.annotations = S.annotations.length;
  updateImageRow(im.id);
  renderTitle();
}

// ---------------------------------------------------------------------------------- images

const bitmaps = new Map(); // id -> Promise<ImageBitmap>, a few recent ones

function loadBitmap(id) {
  let p = bitmaps.get(id);
  if (!p) {
    p = (async () => {
      const path = `/api/images/${id}/file`;
      const res = await request("GET", path);
      if (!res.ok) throw await errorOf(res, "GET", path);
      return createImageBitmap(await res.blob());
    })();
    bitmaps.set(id, p);
    p.catch(() => bitmaps.delete(id));
    while (bitmaps.size > 4) {
      const [oldest] = bitmaps.keys();
      if (oldest === id || oldest === S.imageId) break;
      const old = bitmaps.get(oldest);
      bitmaps.delete(oldest);
      old.then((b) => b.close(), () => {});
    }
  }
  return p;
}

/** Open entry `id` (a video at `frame`; null: where it was left). */
function requestOpen(id, frame = null) {
  S.wantedId = id;
  if (isVideo(id)) act(() => openVideoEntry(id, frame), "Opening video…");
  else act(() => openImage(id), "Opening image…");
}

/** Leave the entry on screen for `id` in view `mode`: returns the new generation. */
function switchTo(id, mode) {
  const gen = ++S.gen;
  if (S.mode === "video") closeVideo();
  S.mode = mode;
  document.body.dataset.view = mode;
  Object.assign(S, {
    imageId: id, view: null, bitmap: null, loadError: null, annotations: [], current: null, pending: [],
    proposals: { state: "none", error: null, proposals: [] }, focusedPid: null, selectedAid: null,
  });
  gesture.cancel();
  surface.forget();
  if (el.message.dataset.kind === "error") hideMessage(); // it was about the entry left
  markOpenImage();
  surface.fit();
  renderAll();
  return gen;
}

function showLoadError(id, e) {
  S.loadError = e.message || String(e);
  const im = S.byId.get(id);
  if (im) {
    im.status = "error";
    updateImageRow(id);
  }
  renderAll();
  surface.fit();
  showError(e);
}

async function openVideoEntry(id, frame) {
  if (id !== S.wantedId) return; // a later request replaced this one
  const gen = switchTo(id, "video");
  try {
    await openVideo(id, frame);
  } catch (e) {
    if (gen === S.gen) showLoadError(id, e);
    return;
  }
  if (gen === S.gen) renderAll();
}

async function openImage(id) {
  if (id !== S.wantedId) return; // a later request replaced this one
  const gen = switchTo(id, "image");
  const bitmapP = loadBitmap(id);
  bitmapP.catch(() => {}); // reported below, once
  let view;
  let bitmap;
  try {
    view = await api("GET", `/api/images/${id}`);
    bitmap = await bitmapP;
  } catch (e) {
    if (gen === S.gen) showLoadError(id, e);
    return;
  }
  if (gen !== S.gen) return;
  Object.assign(S, { view, bitmap, annotations: view.annotations || [], current: view.current || null });
  const im = S.byId.get(id);
  if (im) {
    im.status = view.status;
    im.annotations = S.annotations.length;
    updateImageRow(id);
  }
  surface.fit();
  renderAll();
  pollProposals(gen, S.info && S.info.propose);
  // the next image is likely next: fetch its pixels now (the server embeds it ahead too)
  const idx = S.images.findIndex((x) => x.id === id);
  if (idx >= 0 && idx + 1 < S.images.length && !isVideo(S.images[idx + 1].id)) {
    loadBitmap(S.images[idx + 1].id).catch(() => {});
  }
}

function navigate(delta) {
  if (!S.images.length) return;
  const idx = S.images.findIndex((x) => x.id === (S.wantedId ?? S.imageId));
  const next = Math.min(S.images.length - 1, Math.max(0, (idx < 0 ? 0 : idx) + delta));
  if (next === idx) {
    showMessage(delta > 0 ? "This is the last one in the list." : "This is the first one in the list.", "info");
    return;
  }
  location.hash = `#${S.images[next].id}`; // hashchange opens it
}

/** {id, frame} from "#<id>" or "#<id>/f<frame>"; null when the hash is neither. */
function parseHash() {
  const m = /^#(\d+)(?:\/f(\d+))?$/.exec(location.hash);
  return m ? { id: Number(m[1]), frame: m[2] === undefined ? null : Number(m[2]) } : null;
}

function onHashChange() {
  const at = parseHash();
  if (at === null || !S.byId.has(at.id)) {
    if (S.imageId !== null) {
      const frame = S.mode === "video" ? videoFrame() : null;
      history.replaceState(null, "", frame === null ? `#${S.imageId}` : `#${S.imageId}/f${frame}`);
    }
    return;
  }
  if (at.id !== S.wantedId) requestOpen(at.id, at.frame);
  else if (S.mode === "video" && at.frame !== null && at.frame !== videoFrame()) seekVideo(at.frame);
}

// ---------------------------------------------------------------------------------- prompts

function canPrompt() {
  return S.view && S.bitmap && !S.loadError;
}

function addPrompt(prompt) {
  const id = S.imageId;
  const gen = S.gen;
  S.pending.push(prompt);
  renderObjectBar();
  surface.scheduleRender();
  act(async () => {
    try {
      const current = await api("POST", `/api/images/${id}/prompt`, prompt);
      if (gen === S.gen) S.current = current;
    } finally {
      if (gen === S.gen) {
        S.pending = S.pending.filter((p) => p !== prompt);
        renderObjectBar();
        surface.invalidate();
      }
    }
  }, "Predicting…");
}

// ---------------------------------------------------------------------------------- actions

function category() {
  const v = el.category.value.trim();
  return v ? v : null;
}

function accept() {
  if (!canPrompt()) return;
  if (!(S.current && S.current.mask) && !S.pending.length) {
    const hint = pendingProposals().length ? " (A accepts the focused proposal)" : "";
    showMessage(`Nothing to accept: click an object first${hint}.`, "info");
    return;
  }
  const id = S.imageId;
  const gen = S.gen;
  const body = { category: category() };
  act(async () => {
    const r = await api("POST", `/api/images/${id}/accept`, body);
    if (gen !== S.gen) return;
    S.annotations = [...S.annotations, r.annotation];
    S.current = null;
    if (r.annotation.category) S.categories.add(r.annotation.category);
    setImageStatus(r.status);
    renderObjectBar();
    renderObjects();
    surface.invalidate();
    refreshSummary();
  }, "Accepting…");
}

function undo() {
  if (!canPrompt()) return;
  const id = S.imageId;
  const gen = S.gen;
  act(async () => {
    const r = await api("POST", `/api/images/${id}/undo`);
    if (gen !== S.gen) return;
    S.current = r.current;
    S.annotations = r.annotations;
    if (!S.annotations.some((a) => a.id === S.selectedAid)) S.selectedAid = null;
    if (r.undone === null) showMessage("Nothing to undo.", "info");
    else if (r.undone === "accept") showMessage("The last accepted object is back in progress.", "info");
    setImageStatus(null);
    renderObjectBar();
    renderObjects();
    surface.invalidate();
    if (r.undone === "accept") {
      refreshSummary();
      if (S.proposals.state !== "none") pollProposals(gen, false); // an accepted proposal may be back
    }
  }, "Undoing…");
}

function clearCurrent() {
  if (gesture.cancel()) return;
  if (!canPrompt()) return;
  if (!S.current && !S.pending.length) {
    if (S.selectedAid !== null) selectObject(null);
    return;
  }
  const id = S.imageId;
  const gen = S.gen;
  act(async () => {
    const r = await api("POST", `/api/images/${id}/clear`);
    if (gen !== S.gen) return;
    S.current = r.current;
    renderObjectBar();
    surface.invalidate();
  }, "Clearing…");
}

function choose(i) {
  const c = S.current;
  if (!canPrompt() || !c || !c.candidates || c.candidates.length !== 3 || i === c.chosen) return;
  const id = S.imageId;
  const gen = S.gen;
  act(async () => {
    const r = await api("POST", `/api/images/${id}/choose`, { candidate: i });
    if (gen !== S.gen) return;
    S.current = r;
    renderObjectBar();
    surface.invalidate();
  }, "Choosing…");
}

function selectObject(aid) {
  S.selectedAid = aid;
  for (const li of el.objects.querySelectorAll("li")) li.classList.toggle("selected", Number(li.dataset.aid) === aid);
  surface.invalidate();
}

function deleteObject(aid) {
  if (!canPrompt()) return;
  if (aid === null || aid === undefined) {
    showMessage("Select an object in the list first (click its row), then press Delete.", "info");
    return;
  }
  const id = S.imageId;
  const gen = S.gen;
  act(async () => {
    const r = await api("DELETE", `/api/images/${id}/annotations/${aid}`);
    if (gen !== S.gen) return;
    S.annotations = S.annotations.filter((a) => a.id !== r.deleted);
    if (S.selectedAid === r.deleted) S.selectedAid = null;
    setImageStatus(r.status);
    renderObjects();
    surface.invalidate();
    refreshSummary();
  }, "Deleting…");
}

function renameObject(aid, name) {
  const id = S.imageId;
  const gen = S.gen;
  act(async () => {
    const a = await api("PATCH", `/api/images/${id}/annotations/${aid}`, { category: name || null });
    if (gen !== S.gen) return;
    S.annotations = S.annotations.map((x) => (x.id === a.id ? a : x));
    renderObjects();
  }, "Renaming…");
}

function startRename(li) {
  const aid = Number(li.dataset.aid);
  const a = S.annotations.find((x) => x.id === aid);
  const span = li.querySelector(".cat");
  if (!a || !span) return;
  const input = h("input", { type: "text", class: "rename", value: a.category || "", list: "categories", spellcheck: "false" });
  editName(span, input, (save, name) => {
    if (save && name !== (a.category || "")) renameObject(aid, name);
    else renderObjects();
  });
}

function toggleDone() {
  if (!canPrompt()) return;
  const id = S.imageId;
  const gen = S.gen;
  const done = !S.view.done;
  act(async () => {
    const r = await api("POST", `/api/images/${id}/done`, { done });
    if (gen !== S.gen) return;
    S.view.done = r.done;
    setImageStatus(r.status);
    refreshSummary();
  }, "Saving…");
}

// ---------------------------------------------------------------------------------- proposals

let pollTimer = null;

function setProposals(p, gen) {
  if (gen !== S.gen) return;
  S.proposals = { state: p.state, error: p.error ?? null, proposals: p.proposals || [] };
  const pend = pendingProposals();
  if (!pend.some((x) => x.id === S.focusedPid)) S.focusedPid = pend.length ? pend[0].id : null;
  renderProposals();
  surface.invalidate();
}

/** Show the image's proposals; while they are being made, ask again every POLL_MS. */
async function pollProposals(gen, keepWaiting) {
  clearTimeout(pollTimer);
  if (gen !== S.gen) return;
  const id = S.imageId;
  let p;
  try {
    p = await api("GET", `/api/images/${id}/proposals`);
  } catch (e) {
    if (gen === S.gen) showError(e);
    return;
  }
  if (gen !== S.gen) return;
  const prev = S.proposals.state;
  setProposals(p, gen);
  if (p.state === "queued" || p.state === "running" || (p.state === "none" && keepWaiting)) {
    // with --propose the server starts them when the image opens; "none" may come first
    pollTimer = setTimeout(() => pollProposals(gen, keepWaiting && p.state === "none" ? false : keepWaiting), POLL_MS);
  } else if (p.state === "error" && prev !== "error") {
    showMessage(`Proposals failed: ${p.error || "unknown error"}`);
  }
}

function propose() {
  if (!canPrompt()) return;
  const id = S.imageId;
  const gen = S.gen;
  act(async () => {
    const p = await api("POST", `/api/images/${id}/proposals`);
    if (gen !== S.gen) return;
    setProposals(p, gen);
    if (p.state !== "ready") pollProposals(gen, true);
  }, "Starting proposals…");
}

function focusProposal(pid) {
  S.focusedPid = pid;
  renderProposals();
  surface.invalidate();
}

function moveProposalFocus(delta) {
  const pend = pendingProposals();
  if (!pend.length) return false;
  const i = pend.findIndex((x) => x.id === S.focusedPid);
  const next = i < 0 ? 0 : (i + delta + pend.length) % pend.length;
  focusProposal(pend[next].id);
  return true;
}

function markProposal(pid, status) {
  S.proposals.proposals = S.proposals.proposals.map((x) => (x.id === pid ? { ...x, status } : x));
  if (S.focusedPid === pid) {
    // focus moves to the next pending one in the list's order
    const all = S.proposals.proposals;
    const at = all.findIndex((x) => x.id === pid);
    const after = all.slice(at + 1).concat(all.slice(0, at)).find((x) => x.status === "pending");
    S.focusedPid = after ? after.id : null;
  }
}

function acceptProposal(pid = S.focusedPid) {
  if (!canPrompt() || pid === null || pid === undefined) return;
  const id = S.imageId;
  const gen = S.gen;
  const body = { category: category() };
  act(async () => {
    const r = await api("POST", `/api/images/${id}/proposals/${pid}/accept`, body);
    if (gen !== S.gen) return;
    S.annotations = [...S.annotations, r.annotation];
    if (r.annotation.category) S.categories.add(r.annotation.category);
    markProposal(pid, "accepted");
    setImageStatus(r.status);
    renderObjects();
    renderProposals();
    surface.invalidate();
    refreshSummary();
  }, "Accepting proposal…");
}

function rejectProposal(pid = S.focusedPid) {
  if (!canPrompt() || pid === null || pid === undefined) return;
  const id = S.imageId;
  const gen = S.gen;
  act(async () => {
    await api("POST", `/api/images/${id}/proposals/${pid}/reject`);
    if (gen !== S.gen) return;
    markProposal(pid, "rejected");
    renderProposals();
    surface.invalidate();
  }, "Rejecting proposal…");
}

// ---------------------------------------------------------------------------------- keys

function isTextEntry(t) {
  if (!t || !t.tagName) return false;
  if (t.isContentEditable || t.tagName === "TEXTAREA" || t.tagName === "SELECT") return true;
  return t.tagName === "INPUT" && !["range", "checkbox", "radio", "button", "submit"].includes(t.type);
}

function onKey(e) {
  const t = e.target;
  if (t === el.category) {
    // typing a category is typing: only Enter (accept) and Escape (leave the field) act
    if (e.key === "Enter" && !e.isComposing) {
      e.preventDefault();
      if (!e.repeat) accept();
    } else if (e.key === "Escape") {
      el.category.blur();
    }
    return;
  }
  if (isTextEntry(t)) return;
  if (t && t.tagName === "BUTTON" && (e.key === "Enter" || e.key === " ")) return; // the button's own click
  if (e.altKey) return;
  const key = e.key.length === 1 ? e.key.toLowerCase() : e.key;
  if (e.ctrlKey || e.metaKey) {
    if (key === "z" && !e.shiftKey) {
      e.preventDefault();
      undo();
    }
    return;
  }
  if (t && t.type === "range" && key.startsWith("Arrow")) return; // the slider's own keys
  if (S.mode === "video") {
    // the video view's keys, then the list's
    if (videoKey(e, key)) e.preventDefault();
    else if (key === "n" || key === "p") {
      e.preventDefault();
      navigate(key === "n" ? 1 : -1);
    }
    return;
  }
  const once = !e.repeat;
  let handled = true;
  switch (key) {
    case "Enter": if (once) accept(); break;
    case "z": undo(); break;
    case "Escape": clearCurrent(); break;
    case "Delete":
    case "Backspace": if (once) deleteObject(S.selectedAid); break;
    case "n":
    case "ArrowRight": navigate(1); break;
    case "p":
    case "ArrowLeft": navigate(-1); break;
    case "d": if (once) toggleDone(); break;
    case "1":
    case "2":
    case "3": choose(Number(key) - 1); break;
    case "a": if (once) acceptProposal(); break;
    case "x": if (once) rejectProposal(); break;
    case "j": moveProposalFocus(1); break;
    case "k": moveProposalFocus(-1); break;
    case "Tab":
      // Tab walks the proposals while there are some; otherwise it moves the keyboard focus
      handled = moveProposalFocus(e.shiftKey ? -1 : 1);
      break;
    default: handled = false;
  }
  if (handled) e.preventDefault();
}

// ---------------------------------------------------------------------------------- start

function bind() {
  const ids = {
    message: "message", messageText: "message-text", messageClose: "message-close", images: "images",
    imagesCount: "images-count", countDone: "count-done", countPartial: "count-partial",
    countUntouched: "count-untouched", statMasks: "stat-masks", statPrompts: "stat-prompts",
    statSeconds: "stat-seconds", model: "model", prev: "prev", next: "next", imageName: "image-name",
    imageIndex: "image-index", status: "status", opacity: "opacity", done: "done", stage: "stage",
    canvas: "canvas", stageNote: "stage-note", busy: "busy", busyText: "busy-text", candidates: "candidates",
    iou: "iou", promptCount: "prompt-count", category: "category", categories: "categories", accept: "accept",
    undo: "undo", clear: "clear", objects: "objects", objectsCount: "objects-count",
    objectsEmpty: "objects-empty", proposalState: "proposal-state", propose: "propose", proposals: "proposals",
    proposalsHelp: "proposals-help",
  };
  for (const [k, id] of Object.entries(ids)) el[k] = document.getElementById(id);

  // buttons taken by the mouse do not keep the keyboard focus (Enter then still accepts)
  for (const b of document.querySelectorAll("button")) b.addEventListener("mousedown", (e) => e.preventDefault());
  el.messageClose.addEventListener("click", hideMessage);
  el.prev.addEventListener("click", () => navigate(-1));
  el.next.addEventListener("click", () => navigate(1));
  el.done.addEventListener("click", toggleDone);
  el.accept.addEventListener("click", accept);
  el.undo.addEventListener("click", undo);
  el.clear.addEventListener("click", clearCurrent);
  el.propose.addEventListener("click", propose);
  el.opacity.addEventListener("input", () => {
    S.opacity = Number(el.opacity.value) / 100;
    if (S.mode === "video") invalidateVideo();
    else surface.invalidate();
  });
  el.opacity.addEventListener("change", () => el.opacity.blur());
  el.candidates.addEventListener("mousedown", (e) => e.preventDefault());
  el.candidates.addEventListener("click", (e) => {
    const b = e.target.closest("button[data-candidate]");
    if (b) choose(Number(b.dataset.candidate));
  });
  el.images.addEventListener("click", (e) => {
    const li = e.target.closest("li[data-id]");
    if (li) location.hash = `#${li.dataset.id}`;
  });
  bindObjectRows(el.objects, "aid", {
    select: (aid) => selectObject(S.selectedAid === aid ? null : aid), remove: deleteObject, rename: startRename,
  });
  el.proposals.addEventListener("mousedown", (e) => e.preventDefault());
  el.proposals.addEventListener("click", (e) => {
    const li = e.target.closest("li[data-pid]");
    if (!li) return;
    const pid = Number(li.dataset.pid);
    const action = e.target.closest("[data-action]");
    if (action && action.dataset.action === "accept") acceptProposal(pid);
    else if (action && action.dataset.action === "reject") rejectProposal(pid);
    else focusProposal(pid);
  });
  surface = viewCanvas(el.canvas, el.stage, {
    size: () => (S.loadError ? null : S.view), bitmap: () => S.bitmap, compose: composeMasks, draw: drawPrompts,
  });
  gesture = attachPromptGestures(el.canvas, {
    canPrompt, size: () => S.view, prompt: addPrompt, redraw: surface.scheduleRender,
  });
  el.stage.addEventListener("contextmenu", (e) => e.preventDefault());
  document.addEventListener("keydown", onKey);
  window.addEventListener("hashchange", onHashChange);
  initVideo({
    api, request, errorOf, act, h, metaLine, colorOf, showMessage, showError, refreshSummary,
    opacity: () => S.opacity,
  });
}

async function start() {
  bind();
  renderAll();
  try {
    const [info, list, stats] = await Promise.all([
      api("GET", "/api/info"), api("GET", "/api/images"), api("GET", "/api/stats"),
    ]);
    S.info = info;
    S.images = list.images.map((im) => ({ ...im }));
    S.byId = new Map(S.images.map((im) => [im.id, im]));
    el.model.textContent = info.model || "";
    el.model.title = info.model ? `Model: ${info.model}` : "";
    renderImages();
    renderStats(stats);
  } catch (e) {
    showError(e);
    renderStageNote();
    return;
  }
  renderStageNote();
  if (!S.images.length) return;
  let at = parseHash();
  if (at === null || !S.byId.has(at.id)) {
    const firstOpen = S.images.find((im) => im.status !== "done") || S.images[0];
    at = { id: firstOpen.id, frame: null };
    history.replaceState(null, "", `#${at.id}`);
  }
  requestOpen(at.id, at.frame);
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
else start();
