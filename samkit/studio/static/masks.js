// Masks on the page: the API's run-length encoding turned into display-resolution rasters, and
// rasters blended into one RGBA overlay.
//
// A mask arrives as {"size": [H, W], "counts": [...]}: runs down the columns (column-major, as
// COCO), alternating 0-runs and 1-runs, starting with a (possibly empty) 0-run. COCO's compressed
// string form is accepted too. A mask is never expanded to full image resolution here: it is
// sampled straight from its runs onto the display grid (nearest neighbour), so a 24-megapixel
// photo costs no more than a small one.

/** Run lengths of an RLE: its list as is, or COCO's compressed string decoded. */
export function runLengths(rle) {
  const counts = rle.counts;
  if (typeof counts !== "string") return counts;
  const runs = [];
  let p = 0;
  while (p < counts.length) {
    let value = 0;
    let shift = 0;
    for (;;) {
      const c = counts.charCodeAt(p) - 48;
      p += 1;
      value |= (c & 0x1f) << shift;
      shift += 5;
      if (!(c & 0x20)) {
        if (c & 0x10) value -= 1 << shift; // sign bit of the last group
        break;
      }
      if (p >= counts.length) throw new Error("truncated compressed RLE string");
    }
    if (runs.length > 2) value += runs[runs.length - 2];
    runs.push(value);
  }
  return runs;
}

/**
 * Decode an RLE into a full H x W row-major Uint8Array (1 inside). For small masks and tests;
 * drawing uses {@link rasterize}.
 */
export function decodeRle(rle) {
  const [h, w] = rle.size;
  const out = new Uint8Array(h * w);
  const runs = runLengths(rle);
  let pos = 0;
  for (let i = 0; i < runs.length; i++) {
    const n = runs[i];
    if (i & 1) {
      for (let k = pos; k < pos + n; k++) {
        const col = Math.floor(k / h);
        out[(k - col * h) * w + col] = 1;
      }
    }
    pos += n;
  }
  return out;
}

/** For each image index 0..n, the first display index whose sample falls at or after it. */
function firstDisplayIndex(n, displayN) {
  const scale = displayN / n;
  const first = new Int32Array(n + 1);
  // display index d samples image index floor((d + 0.5) / scale)
  for (let i = 0; i <= n; i++) first[i] = Math.min(displayN, Math.max(0, Math.ceil(i * scale - 0.5)));
  return first;
}

const gridCache = new Map(); // "n:displayN" -> firstDisplayIndex

function grid(n, displayN) {
  const key = `${n}:${displayN}`;
  let g = gridCache.get(key);
  if (!g) {
    if (gridCache.size > 8) gridCache.clear();
    g = firstDisplayIndex(n, displayN);
    gridCache.set(key, g);
  }
  return g;
}

/**
 * The mask sampled onto a dispW x dispH grid, cropped to its bounding box, with its outline.
 *
 * Returns null for an empty mask, else {x0, y0, w, h, data}: data is a w x h row-major
 * Uint8Array, 0 outside, 1 inside, 2 on the outline (inside pixels within `edge` display pixels
 * of an outside one).
 */
export function rasterize(rle, dispW, dispH, edge = 1) {
  const [h, w] = rle.size;
  const runs = runLengths(rle);
  const cols = grid(w, dispW);
  const rows = grid(h, dispH);
  // pass 1: the display bounding box
  let bx0 = dispW, by0 = dispH, bx1 = -1, by1 = -1;
  let pos = 0;
  for (let i = 0; i < runs.length; i++) {
    const n = runs[i];
    if (i & 1 && n > 0) {
      const c0 = Math.floor(pos / h), c1 = Math.floor((pos + n - 1) / h);
      const r0 = c0 === c1 ? pos - c0 * h : 0;
      const r1 = c0 === c1 ? pos + n - 1 - c1 * h : h - 1;
      const dx0 = cols[c0], dx1 = cols[c1 + 1] - 1, dy0 = rows[r0], dy1 = rows[r1 + 1] - 1;
      if (dx1 >= dx0 && dy1 >= dy0) {
        if (dx0 < bx0) bx0 = dx0;
        if (dx1 > bx1) bx1 = dx1;
        if (dy0 < by0) by0 = dy0;
        if (dy1 > by1) by1 = dy1;
      }
    }
    pos += n;
  }
  if (bx1 < 0) return null;
  const rw = bx1 - bx0 + 1, rh = by1 - by0 + 1;
  const data = new Uint8Array(rw * rh);
  // pass 2: fill, one image column at a time
  pos = 0;
  for (let i = 0; i < runs.length; i++) {
    const n = runs[i];
    if (i & 1 && n > 0) {
      let k = pos;
      const end = pos + n;
      while (k < end) {
        const col = Math.floor(k / h);
        const r0 = k - col * h;
        const r1 = Math.min(h - 1, r0 + (end - k) - 1);
        const dx0 = cols[col], dx1 = cols[col + 1];
        const dy0 = rows[r0], dy1 = rows[r1 + 1];
        for (let dy = dy0; dy < dy1; dy++) {
          const base = (dy - by0) * rw - bx0;
          for (let dx = dx0; dx < dx1; dx++) data[base + dx] = 1;
        }
        k += r1 - r0 + 1;
      }
    }
    pos += n;
  }
  // the outline
  if (edge > 0) {
    for (let y = 0; y < rh; y++) {
      for (let x = 0; x < rw; x++) {
        const idx = y * rw + x;
        if (!data[idx]) continue;
        let out = false;
        for (let d = 1; d <= edge && !out; d++) {
          out = x - d < 0 || x + d >= rw || y - d < 0 || y + d >= rh ||
            !data[idx - d] || !data[idx + d] || !data[idx - d * rw] || !data[idx + d * rw];
        }
        if (out) data[idx] = 2; // 2 is still "inside" for the pixels after it
      }
    }
  }
  return { x0: bx0, y0: by0, w: rw, h: rh, data };
}

/** "#rrggbb" -> [r, g, b]. */
export function hexRgb(hex) {
  const v = parseInt(hex.slice(1), 16);
  return [(v >> 16) & 255, (v >> 8) & 255, v & 255];
}

/**
 * Blend a raster over an RGBA buffer (dispW wide, non-premultiplied, source-over):
 * `fillAlpha` inside, `edgeAlpha` on the outline, in colour `rgb` (the outline in `edgeRgb`).
 */
export function blend(buf, dispW, raster, rgb, fillAlpha, edgeAlpha, edgeRgb = rgb) {
  if (!raster) return;
  const { x0, y0, w, h, data } = raster;
  for (let y = 0; y < h; y++) {
    let o = ((y0 + y) * dispW + x0) * 4;
    let idx = y * w;
    for (let x = 0; x < w; x++, idx++, o += 4) {
      const v = data[idx];
      if (!v) continue;
      const a = v === 2 ? edgeAlpha : fillAlpha;
      if (a <= 0) continue;
      const c = v === 2 ? edgeRgb : rgb;
      const da = buf[o + 3] / 255;
      const oa = a + da * (1 - a);
      const k = da * (1 - a);
      buf[o] = (c[0] * a + buf[o] * k) / oa;
      buf[o + 1] = (c[1] * a + buf[o + 1] * k) / oa;
      buf[o + 2] = (c[2] * a + buf[o + 2] * k) / oa;
      buf[o + 3] = oa * 255;
    }
  }
}
