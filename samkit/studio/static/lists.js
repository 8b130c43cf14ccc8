// The rows of an objects list, shared by the image view (accepted objects, by category) and the
// video view (objects to track, by name): the mouse on them, and typing a name in one.

/**
 * The mouse on `list`, whose rows are li[data-<key>] (the object's id, a number): a click on a row's
 * delete button is remove(id), elsewhere on the row select(id); a double-click on its name (.cat)
 * is rename(li). The mouse leaves the keyboard focus where it is, but in a row's text field.
 */
export function bindObjectRows(list, key, { select, remove, rename }) {
  list.addEventListener("mousedown", (e) => {
    if (!e.target.closest("input")) e.preventDefault();
  });
  list.addEventListener("click", (e) => {
    const li = e.target.closest(`li[data-${key}]`);
    if (!li || e.target.closest("input")) return;
    const id = Number(li.dataset[key]);
    if (e.target.closest("[data-action=delete]")) remove(id);
    else select(id);
  });
  list.addEventListener("dblclick", (e) => {
    const li = e.target.closest(`li[data-${key}]`);
    if (li && e.target.closest(".cat")) rename(li);
  });
}

/**
 * Put the text field `input` in the place of `span` and let the name be typed there. Enter or
 * leaving the field ends it with done(true, name), Escape with done(false, name), once; `name` is
 * what was typed, trimmed. The keys typed stay in the field (the page's keys do not see them).
 */
export function editName(span, input, done) {
  let finished = false;
  const finish = (save) => {
    if (finished) return;
    finished = true;
    done(save, input.value.trim());
  };
  input.addEventListener("keydown", (e) => {
    e.stopPropagation();
    if (e.key === "Enter") finish(true);
    else if (e.key === "Escape") finish(false);
  });
  input.addEventListener("blur", () => finish(true));
  span.replaceWith(input);
  input.focus();
  input.select();
}
