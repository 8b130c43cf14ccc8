// The prompt gesture on a canvas, shared by the image view and the video view: a click adds a
// positive point, a Shift+click or a right-click a negative one, a drag with the left button a box.

const DRAG_PX = 5; // a mouse move longer than this (CSS px) is a box, not a click

/** Client coordinates on `canvas` to pixels of the `size` ({width, height}) it shows, clamped. */
function toImage(canvas, size, clientX, clientY) {
  const r = canvas.getBoundingClientRect();
  const fx = (clientX - r.left) / r.width;
  const fy = (clientY - r.top) / r.height;
  const x = Math.min(size.width, Math.max(0, fx * size.width));
  const y = Math.min(size.height, Math.max(0, fy * size.height));
  return [Math.round(x * 100) / 100, Math.round(y * 100) / 100];
}

/**
 * Take prompts from the mouse on `canvas`. The hooks are the view's: canPrompt() says whether it
 * takes prompts now; size() is the {width, height} of the picture shown; prompt(p) gets
 * {type: "point", x, y, label} or {type: "box", box} in its pixels; redraw() is called when the box
 * being dragged moves or goes. Returns {box, cancel}: box() is that box ([x0, y0, x1, y1] in the
 * picture's pixels; null while no drag is on), cancel() drops the drag (false when there was none).
 */
export function attachPromptGestures(canvas, { canPrompt, size, prompt, redraw }) {
  let drag = null;

  function dragBox(d) {
    const [ax, ay] = toImage(canvas, size(), d.startX, d.startY);
    const [bx, by] = toImage(canvas, size(), d.x, d.y);
    return [Math.min(ax, bx), Math.min(ay, by), Math.max(ax, bx), Math.max(ay, by)];
  }

  function onMouseDown(e) {
    if (!canPrompt()) return;
    if (e.button !== 0 && e.button !== 2) return;
    e.preventDefault();
    if (document.activeElement && document.activeElement !== document.body) document.activeElement.blur();
    drag = { button: e.button, startX: e.clientX, startY: e.clientY, x: e.clientX, y: e.clientY, shift: e.shiftKey, moved: false };
    window.addEventListener("mousemove", onMouseMove);
    window.addEventListener("mouseup", onMouseUp);
  }

  function onMouseMove(e) {
    const d = drag;
    if (!d) return;
    d.x = e.clientX;
    d.y = e.clientY;
    if (d.button === 0 && Math.hypot(d.x - d.startX, d.y - d.startY) > DRAG_PX) d.moved = true;
    if (d.moved) redraw();
  }

  function onMouseUp(e) {
    const d = drag;
    if (!d || e.button !== d.button) return;
    window.removeEventListener("mousemove", onMouseMove);
    window.removeEventListener("mouseup", onMouseUp);
    drag = null;
    if (!canPrompt()) return;
    d.x = e.clientX;
    d.y = e.clientY;
    if (d.moved) {
      const box = dragBox(d);
      redraw();
      if (box[2] - box[0] < 1 || box[3] - box[1] < 1) return;
      prompt({ type: "box", box });
      return;
    }
    const [x, y] = toImage(canvas, size(), d.startX, d.startY);
    const negative = d.button === 2 || d.shift || e.shiftKey;
    prompt({ type: "point", x, y, label: negative ? 0 : 1 });
  }

  function cancel() {
    if (!drag) return false;
    window.removeEventListener("mousemove", onMouseMove);
    window.removeEventListener("mouseup", onMouseUp);
    drag = null;
    redraw();
    return true;
  }

  canvas.addEventListener("mousedown", onMouseDown);
  canvas.addEventListener("contextmenu", (e) => e.preventDefault());
  return {
    box: () => (drag && drag.moved ? dragBox(drag) : null),
    cancel,
  };
}
