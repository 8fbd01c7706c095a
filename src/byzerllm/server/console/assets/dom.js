// Small DOM helpers: element building, number and time formatting, field errors.

/**
 * h("button", {class: "primary", testid: "x", onclick: fn}, "text", child, [more]) builds an element.
 * Attributes: `class`, `testid` (data-testid), `on<event>` (listener), `value` / `checked` (set as
 * properties after the children, so a <select>'s value picks among its options), anything else as an
 * attribute (`true` as present, `null` / `false` / `undefined` left out). Children: nodes, strings
 * (as text), arrays (flattened), null (skipped).
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  const late = {};
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "testid") el.dataset.testid = v;
    else if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "value" || k === "checked") late[k] = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, children);
  for (const [k, v] of Object.entries(late)) el[k] = v;
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : String(c));
  }
}

/** An integer or float as plain digits (no grouping, so tests and screen readers read it whole). */
export function num(v, digits = null) {
  if (v === null || v === undefined || Number.isNaN(v)) return "—";
  if (typeof v !== "number") return String(v);
  if (digits !== null) return v.toFixed(digits);
  return Number.isInteger(v) ? String(v) : v.toFixed(2);
}

/** Seconds as "1h 02m", "3m 05s", "42s"; "—" for none. */
export function duration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "—";
  const s = Math.max(0, Math.round(seconds));
  const hours = Math.floor(s / 3600);
  const minutes = Math.floor((s % 3600) / 60);
  const secs = s % 60;
  if (hours) return `${hours}h ${String(minutes).padStart(2, "0")}m`;
  if (minutes) return `${minutes}m ${String(secs).padStart(2, "0")}s`;
  return `${secs}s`;
}

/** A form field: label, control, help text and an error line, wired with for / aria-describedby. */
export function field(label, control, help = null, { inline = false } = {}) {
  const id = control.id;
  const helpEl = help ? h("p", { class: "help", id: `${id}-help` }, help) : null;
  const errEl = h("p", { class: "field-error", id: `${id}-error`, hidden: true });
  control.setAttribute("aria-describedby", [helpEl && helpEl.id, errEl.id].filter(Boolean).join(" "));
  const labelEl = h("label", { for: id }, label);
  const cls = inline ? "field inline" : "field";
  return h("div", { class: cls }, inline ? [control, labelEl] : [labelEl, control], helpEl, errEl);
}

/** Show `message` under the control with id `id` (or clear it with null). */
export function setFieldError(id, message) {
  const control = document.getElementById(id);
  const err = document.getElementById(`${id}-error`);
  if (!control || !err) return false;
  err.textContent = message || "";
  err.hidden = !message;
  if (message) control.setAttribute("aria-invalid", "true");
  else control.removeAttribute("aria-invalid");
  return true;
}

/** Clear every field error inside `root`. */
export function clearFieldErrors(root) {
  for (const err of root.querySelectorAll(".field-error")) {
    err.textContent = "";
    err.hidden = true;
  }
  for (const c of root.querySelectorAll("[aria-invalid]")) c.removeAttribute("aria-invalid");
}

/** Replace the options of `select` with `items` ([{value, label}]), keeping the selection when it is still offered. */
export function setOptions(select, items, { placeholder = null } = {}) {
  const before = select.value;
  const opts = items.map((it) => h("option", { value: it.value }, it.label ?? it.value));
  if (placeholder !== null) opts.unshift(h("option", { value: "" }, placeholder));
  const same =
    select.options.length === opts.length &&
    opts.every((o, i) => select.options[i].value === o.value && select.options[i].textContent === o.textContent);
  if (same) return false;
  select.replaceChildren(...opts);
  if ([...select.options].some((o) => o.value === before)) select.value = before;
  return true;
}

/** A deep equality of JSON values. */
export function jsonEqual(a, b) {
  return JSON.stringify(a) === JSON.stringify(b);
}
