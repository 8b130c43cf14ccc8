// A view's canvas, shared by the image view and the video view: it shows a picture whole in the
// stage at its aspect ratio (following the stage's size and the device pixel ratio), the masks over
// it (composed into an overlay at display resolution, again only when they changed), then what the
// view draws on top; it draws on the next animation frame.

import { rasterize } from "./masks.js";

/**
 * The canvas `canvas` in `stage`. The hooks are the view's: size() is the {width, height} of the
 * picture (null: none, the canvas is hidden); bitmap() is the picture (null while it is not here:
 * the canvas is blank); compose(buf, w, e) blends the masks into the overlay's RGBA pixels `buf`
 * (`w` wide; `e`: an outline's width in display pixels), taking them from raster(); draw(ctx, sx, sy,
 * dpr) draws on top at image-to-canvas scale (sx, sy). Returns {fit, raster, forget, invalidate,
 * scheduleRender}.
 */
export function viewCanvas(canvas, stage, { size, bitmap, compose, draw }) {
  const disp = { cssW: 0, cssH: 0, w: 0, h: 0, dpr: 1 }; // canvas box and backing size
  const overlay = document.createElement("canvas"); // the composed masks, display resolution
  let overlayDirty = true;
  let renderQueued = false;
  const rasters = new Map(); // key -> {rle, w, h, edge, raster}

  /** Mask `rle` at display resolution with an outline `edge` wide, kept under `key` while it holds. */
  function raster(key, rle, edge) {
    const hit = rasters.get(key);
    if (hit && hit.rle === rle && hit.w === disp.w && hit.h === disp.h && hit.edge === edge) return hit.raster;
    const r = rasterize(rle, disp.w, disp.h, edge);
    rasters.set(key, { rle, w: disp.w, h: disp.h, edge, raster: r });
    return r;
  }

  /** Drop the kept rasters (another picture comes). */
  function forget() {
    rasters.clear();
  }

  /** The masks changed: compose them again on the next animation frame. */
  function invalidate() {
    overlayDirty = true;
    scheduleRender();
  }

  function scheduleRender() {
    if (renderQueued) return;
    renderQueued = true;
    requestAnimationFrame(() => {
      renderQueued = false;
      render();
    });
  }

  /** Size the canvas box so it shows the whole picture at its aspect ratio in the stage. */
  function fit() {
    const v = size();
    if (!v) {
      canvas.hidden = true;
      return;
    }
    canvas.hidden = false;
    const pad = 16;
    const aw = Math.max(50, stage.clientWidth - 2 * pad);
    const ah = Math.max(50, stage.clientHeight - 2 * pad);
    const scale = Math.min(aw / v.width, ah / v.height);
    const cssW = v.width * scale;
    const cssH = v.height * scale;
    const dpr = window.devicePixelRatio || 1;
    const w = Math.max(1, Math.round(cssW * dpr));
    const hh = Math.max(1, Math.round(cssH * dpr));
    canvas.style.width = `${cssW}px`;
    canvas.style.height = `${cssH}px`;
    Object.assign(disp, { cssW, cssH, dpr });
    if (canvas.width !== w || canvas.height !== hh || disp.w !== w || disp.h !== hh) {
      canvas.width = w;
      canvas.height = hh;
      disp.w = w;
      disp.h = hh;
      rasters.clear();
    }
    invalidate();
  }

  function composeOverlay() {
    const { w, h, dpr } = disp;
    if (overlay.width !== w || overlay.height !== h) {
      overlay.width = w;
      overlay.height = h;
    }
    const octx = overlay.getContext("2d");
    const img = octx.createImageData(w, h);
    compose(img.data, w, Math.max(1, Math.round(dpr)));
    octx.putImageData(img, 0, 0);
    overlayDirty = false;
  }

  function render() {
    const ctx = canvas.getContext("2d");
    const { w, h, dpr } = disp;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    const v = size();
    const b = v && bitmap();
    if (!b) return;
    // pixels shown as pixels once they are twice their size: the masks are per pixel too
    const upscale = w / v.width;
    ctx.imageSmoothingEnabled = upscale < 2;
    ctx.imageSmoothingQuality = "high";
    ctx.drawImage(b, 0, 0, w, h);
    if (overlayDirty) composeOverlay();
    ctx.drawImage(overlay, 0, 0);
    draw(ctx, w / v.width, h / v.height, dpr);
  }

  new ResizeObserver(() => fit()).observe(stage);
  window.addEventListener("resize", fit); // devicePixelRatio changes (zoom) come with a resize
  return { fit, raster, forget, invalidate, scheduleRender };
}
