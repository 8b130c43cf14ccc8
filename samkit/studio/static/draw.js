// Prompt markers on a canvas, shared by the image view and the video view: points (green with a
// cross: positive, red with a bar: negative) and boxes, in canvas pixels.

export const POSITIVE = "#22c55e";
export const NEGATIVE = "#ef4444";

/**
 * Draw prompt `p` ({type: "point", x, y, label} or {type: "box", box}) at image-to-canvas scale
 * (sx, sy). `ring`, when given, is a colour drawn around a point (the video view's object colour);
 * a box is stroked in it too.
 */
export function drawPrompt(ctx, p, sx, sy, dpr, alpha, ring = null) {
  ctx.save();
  ctx.globalAlpha = alpha;
  if (p.type === "point") {
    const x = p.x * sx;
    const y = p.y * sy;
    const r = 5.5 * dpr;
    ctx.beginPath();
    ctx.arc(x, y, r + 1.5 * dpr, 0, 2 * Math.PI);
    ctx.fillStyle = "rgba(0,0,0,0.55)";
    ctx.fill();
    if (ring) {
      ctx.beginPath();
      ctx.arc(x, y, r + 2.5 * dpr, 0, 2 * Math.PI);
      ctx.lineWidth = 2 * dpr;
      ctx.strokeStyle = ring;
      ctx.stroke();
    }
    ctx.beginPath();
    ctx.arc(x, y, r, 0, 2 * Math.PI);
    ctx.fillStyle = p.label === 1 ? POSITIVE : NEGATIVE;
    ctx.fill();
    ctx.lineWidth = 1.5 * dpr;
    ctx.strokeStyle = "#ffffff";
    ctx.stroke();
    // a bar (negative) or a cross (positive) inside, readable on any colour
    ctx.beginPath();
    const k = r * 0.5;
    ctx.moveTo(x - k, y);
    ctx.lineTo(x + k, y);
    if (p.label === 1) {
      ctx.moveTo(x, y - k);
      ctx.lineTo(x, y + k);
    }
    ctx.stroke();
  } else if (p.type === "box") {
    const [x0, y0, x1, y1] = p.box;
    drawBox(ctx, x0 * sx, y0 * sy, x1 * sx, y1 * sy, dpr, false, ring || POSITIVE);
  }
  ctx.restore();
}

/** A box in canvas pixels: solid in `color`, or dashed white (a box being dragged). */
export function drawBox(ctx, x0, y0, x1, y1, dpr, dashed, color = POSITIVE) {
  ctx.save();
  ctx.lineWidth = 3 * dpr;
  ctx.strokeStyle = "rgba(0,0,0,0.5)";
  ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
  ctx.lineWidth = 1.5 * dpr;
  ctx.strokeStyle = dashed ? "#ffffff" : color;
  if (dashed) ctx.setLineDash([6 * dpr, 4 * dpr]);
  ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
  ctx.restore();
}
