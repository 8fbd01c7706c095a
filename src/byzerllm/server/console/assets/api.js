// The API: the key in sessionStorage, fetch with `Authorization: Bearer <key>`, OpenAI-shaped
// errors as ApiError, the status area, and a poller that never overlaps itself.

const KEY = "byzerllm-console-key";

/** The key of this browser session: null when none was given, "" for a server without keys. */
export const apiKey = {
  get: () => sessionStorage.getItem(KEY),
  set: (key) => sessionStorage.setItem(KEY, key),
  clear: () => sessionStorage.removeItem(KEY),
};

/** An error answer: HTTP `status` (0 when the server could not be reached), OpenAI's message, type and param. */
export class ApiError extends Error {
  constructor(status, message, type = null, param = null) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.type = type;
    this.param = param;
  }
}

let session = new AbortController();
let unauthorized = () => {};

/** Call `fn` when a request answers 401: the key was revoked or the server restarted with others. */
export function onUnauthorized(fn) {
  unauthorized = fn;
}

/** Abort every request in flight (sign-out). */
export function abortAll() {
  session.abort();
  session = new AbortController();
}

function signalOf(extra) {
  if (!extra) return session.signal;
  if (AbortSignal.any) return AbortSignal.any([session.signal, extra]);
  return extra;
}

export function authHeaders(key = apiKey.get()) {
  return key ? { Authorization: `Bearer ${key}` } : {};
}

async function errorOf(res) {
  let message = `${res.status} ${res.statusText || "error"}`;
  let type = null;
  let param = null;
  try {
    const body = await res.json();
    const err = body && typeof body.error === "object" && body.error ? body.error : body;
    if (err && typeof err.message === "string") message = err.message;
    else if (body && body.detail) {
      message = Array.isArray(body.detail)
        ? body.detail.map((d) => `${(d.loc || []).join(".")}: ${d.msg}`).join("; ")
        : String(body.detail);
    }
    type = err?.type ?? null;
    param = err?.param ?? null;
  } catch {
    // not JSON: keep the status line
  }
  return new ApiError(res.status, message, type, param);
}

/**
 * fetch(path) with the key; resolves to the Response when it is 2xx, else throws ApiError.
 * Options: method, json (a body sent as JSON), form (a FormData), signal, key (try this key instead
 * of the session's, and do not treat a 401 as a sign-out: the key form's check).
 */
export async function request(path, { method = "GET", json, form, signal, key } = {}) {
  const trying = key !== undefined;
  const headers = authHeaders(trying ? key : apiKey.get());
  let body;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  } else if (form) {
    body = form;
  }
  let res;
  try {
    res = await fetch(path, { method, headers, body, signal: signalOf(signal) });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, `cannot reach the server (${err.message})`);
  }
  if (res.ok) return res;
  const error = await errorOf(res);
  if (res.status === 401 && !trying) unauthorized(error);
  throw error;
}

/** GET or send JSON, answer the parsed JSON body. */
export async function getJSON(path, options = {}) {
  const res = await request(path, options);
  return res.json();
}

export function postJSON(path, json, options = {}) {
  return getJSON(path, { ...options, method: "POST", json });
}

export const enc = encodeURIComponent;

// ---- the status area ----

let statusTimer = null;

/** Show `message` in the aria-live status area; infos fade after 6 s, errors stay until dismissed or replaced. */
export function showStatus(message, kind = "info") {
  const box = document.getElementById("status");
  const text = document.getElementById("status-text");
  if (!box || !text) return;
  clearTimeout(statusTimer);
  if (text.textContent !== message || box.dataset.kind !== kind) text.textContent = message;
  box.dataset.kind = kind;
  document.getElementById("status-dismiss").hidden = false;
  if (kind !== "error") statusTimer = setTimeout(clearStatus, 6000);
}

export function clearStatus() {
  const box = document.getElementById("status");
  const text = document.getElementById("status-text");
  if (!box || !text) return;
  clearTimeout(statusTimer);
  text.textContent = "";
  box.dataset.kind = "none";
  document.getElementById("status-dismiss").hidden = true;
}

/** Clear the status area if it still shows `message`. */
export function clearStatusIf(message) {
  const text = document.getElementById("status-text");
  if (text && message && text.textContent === message) clearStatus();
}

/**
 * Report an error in the status area and answer the message shown: aborts and 401s (the key form
 * speaks for those) are silent (null).
 */
export function showError(err, context = "") {
  if (!err || err.name === "AbortError") return null;
  if (err instanceof ApiError && err.status === 401) return null;
  const detail = err instanceof ApiError ? err.message : `${err.name || "Error"}: ${err.message || err}`;
  const message = context ? `${context}: ${detail}` : detail;
  showStatus(message, "error");
  if (!(err instanceof ApiError)) console.warn(err); // a bug of the page: keep its stack at hand
  return message;
}

/** An event handler that reports its errors instead of throwing them. */
export function guard(fn, context = "") {
  return async (...args) => {
    try {
      return await fn(...args);
    } catch (err) {
      showError(err, context);
      return undefined;
    }
  };
}

/**
 * Runs `fn` every `ms` after the previous run ended, while started. A failure is shown in the status
 * area (once: the same message is not announced again), and cleared by the next run that succeeds.
 */
export class Poller {
  constructor(fn, ms = 2000) {
    this.fn = fn;
    this.ms = ms;
    this.generation = 0;
    this.timer = null;
    this.running = false;
    this.shown = null;
  }

  start() {
    if (this.running) return;
    this.running = true;
    this.tick(++this.generation);
  }

  stop() {
    this.running = false;
    this.generation++;
    clearTimeout(this.timer);
  }

  /** Run now rather than at the next tick (when started). */
  now() {
    if (!this.running) return;
    clearTimeout(this.timer);
    this.tick(++this.generation);
  }

  async tick(generation) {
    try {
      await this.fn();
      if (this.shown) clearStatusIf(this.shown);
      this.shown = null;
    } catch (err) {
      if (generation === this.generation) this.shown = showError(err) ?? this.shown;
    }
    if (this.running && generation === this.generation) {
      this.timer = setTimeout(() => this.tick(generation), this.ms);
    }
  }
}

/** A tab whose data a `Poller` (`this.poller`) refreshes while it is shown; its uPlot chart
 * (`this.chart`), if any, is freed with it. */
export class PolledView {
  activate() {
    this.poller.start();
  }

  deactivate() {
    this.poller.stop();
  }

  destroy() {
    this.poller.stop();
    if (this.chart) this.chart.destroy();
  }
}
