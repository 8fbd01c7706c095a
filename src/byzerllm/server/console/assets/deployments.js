// The Deployments tab: the table of deployments with their live stats (every 2 s), the chart of the
// selected one, undeploy with a confirmation dialog, and the deploy form built from /v1/backends.

import { ApiError, Poller, PolledView, enc, getJSON, guard, postJSON, request, showError, showStatus } from "./api.js";
import { LineChart, rates } from "./charts.js";
import { clearFieldErrors, field, h, jsonEqual, num, setFieldError } from "./dom.js";

const STAT_CELLS = [
  ["busy", "Busy", (s) => s.busy_workers],
  ["idle", "Idle", (s) => s.idle_workers],
  ["queued", "Queued", (s) => s.queued_requests],
  ["requests", "Requests", (s) => totalRequests(s.total_requests)],
  ["prompt-tokens", "Prompt tokens", (s) => s.prompt_tokens],
  ["completion-tokens", "Completion tokens", (s) => s.completion_tokens],
  ["failed", "Failed", (s) => s.failed_requests],
];

function totalRequests(value) {
  if (Array.isArray(value)) return value.reduce((a, b) => a + (Number(b) || 0), 0);
  return value ?? null;
}

function stateText(d) {
  if (d.state === "starting" && d.progress) return `starting ${d.progress.ready}/${d.progress.total} workers`;
  return d.state;
}

export class DeploymentsView extends PolledView {
  constructor(panel, store) {
    super();
    this.panel = panel;
    this.store = store;
    this.rows = new Map(); // name -> {tr, cells}
    this.selected = null;
    this.chart = null;
    this.backends = [];
    this.poller = new Poller(() => this.refresh(), 2000);
    this.build();
    this.loadBackends();
  }

  build() {
    this.tbody = h("tbody");
    this.empty = h(
      "p",
      { class: "empty", testid: "deployments-empty", hidden: true },
      "No deployments yet: deploy one below.",
    );
    const head = ["Name", "State", "Backend", "Tasks", "Workers (node/pid)", ...STAT_CELLS.map((c) => c[1])];
    this.table = h(
      "table",
      { class: "data", testid: "deployments-table" },
      h("caption", { class: "visually-hidden" }, "Deployments and their live stats"),
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          head.map((t) => h("th", { scope: "col" }, t)),
          h("th", { scope: "col" }, h("span", { class: "visually-hidden" }, "Actions")),
        ),
      ),
      this.tbody,
    );

    this.chartTitle = h("h3", { id: "deployment-chart-title" }, "");
    this.chartBox = h("div", {
      class: "chart",
      testid: "deployment-chart",
      role: "img",
      "aria-labelledby": "deployment-chart-title",
    });
    this.chartNote = h("p", { class: "help", testid: "deployment-chart-note" }, "");
    this.rpsOut = h("span", { testid: "chart-requests-per-s" }, "—");
    this.tpsOut = h("span", { testid: "chart-tokens-per-s" }, "—");
    this.chartPanel = h(
      "section",
      { class: "card", testid: "deployment-detail", hidden: true, "aria-labelledby": "deployment-chart-title" },
      h(
        "div",
        { class: "card-head" },
        this.chartTitle,
        h(
          "button",
          { type: "button", class: "secondary", testid: "deployment-detail-close", onclick: () => this.select(null) },
          "Close",
        ),
      ),
      h(
        "p",
        { class: "latest" },
        "Latest: ",
        this.rpsOut,
        " requests/s, ",
        this.tpsOut,
        " tokens/s (prompt + completion)",
      ),
      this.chartBox,
      this.chartNote,
    );

    this.dialogText = h("p", { id: "confirm-undeploy-text" }, "");
    this.dialog = h(
      "dialog",
      {
        testid: "confirm-dialog",
        "aria-labelledby": "confirm-undeploy-title",
        "aria-describedby": "confirm-undeploy-text",
      },
      h(
        "form",
        { method: "dialog" },
        h("h3", { id: "confirm-undeploy-title" }, "Undeploy?"),
        this.dialogText,
        h(
          "div",
          { class: "actions" },
          h("button", { value: "cancel", class: "secondary", testid: "confirm-cancel", autofocus: true }, "Cancel"),
          h("button", { value: "confirm", class: "danger", testid: "confirm-undeploy" }, "Undeploy"),
        ),
      ),
    );

    this.panel.append(
      h("h2", {}, "Deployments"),
      h("div", { class: "table-wrap" }, this.table),
      this.empty,
      this.chartPanel,
      this.buildDeployForm(),
      this.dialog,
    );
  }

  // ---- the table ----

  async refresh() {
    const list = await this.store.refresh();
    const names = new Set(list.map((d) => d.name));
    for (const [name, row] of this.rows) {
      if (!names.has(name)) {
        row.tr.remove();
        this.rows.delete(name);
      }
    }
    list.forEach((d, i) => {
      let row = this.rows.get(d.name);
      if (!row) {
        row = this.makeRow(d.name);
        this.rows.set(d.name, row);
      }
      if (this.tbody.children[i] !== row.tr) this.tbody.insertBefore(row.tr, this.tbody.children[i] || null);
      this.fillRow(row, d);
    });
    this.empty.hidden = list.length > 0;
    if (this.selected && !names.has(this.selected)) this.select(null);
    await Promise.all([
      ...list.filter((d) => d.state === "running").map((d) => this.refreshStat(d.name)),
      this.selected ? this.refreshChart() : null,
    ]);
  }

  makeRow(name) {
    const cell = (key) => h("td", { class: "num", testid: `stat-${name}-${key}` }, "—");
    const cells = {
      name: h(
        "button",
        {
          type: "button",
          class: "link",
          testid: `select-${name}`,
          "aria-pressed": "false",
          onclick: () => this.select(this.selected === name ? null : name),
        },
        name,
      ),
      state: h("span", { class: "badge", testid: `state-${name}` }),
      error: h("span", { class: "error-text", testid: `error-${name}`, hidden: true }),
      backend: h("td", { testid: `backend-${name}` }),
      tasks: h("td", { testid: `tasks-${name}` }),
      workers: h("td", { testid: `workers-${name}`, class: "workers" }),
      stats: Object.fromEntries(STAT_CELLS.map(([key]) => [key, cell(key)])),
      undeploy: h(
        "button",
        {
          type: "button",
          class: "danger small",
          testid: `undeploy-${name}`,
          "aria-label": `Undeploy ${name}`,
          onclick: () => this.confirmUndeploy(name),
        },
        "Undeploy",
      ),
    };
    const tr = h(
      "tr",
      { testid: `deployment-row-${name}` },
      h("th", { scope: "row" }, cells.name),
      h("td", { class: "state" }, cells.state, cells.error),
      cells.backend,
      cells.tasks,
      cells.workers,
      Object.values(cells.stats),
      h("td", {}, cells.undeploy),
    );
    return { tr, cells };
  }

  fillRow(row, d) {
    const c = row.cells;
    c.state.textContent = stateText(d);
    c.state.dataset.state = d.state;
    c.error.textContent = d.error || "";
    c.error.hidden = !d.error;
    c.backend.textContent = d.backend || "—";
    c.tasks.textContent = (d.tasks || []).join(", ") || "—";
    const workers = (d.workers || []).map((w) => `${w.node ?? "?"}/${w.pid ?? "?"}`);
    c.workers.textContent = workers.join("\n") || "—";
    if (d.state !== "running") for (const td of Object.values(c.stats)) td.textContent = "—";
    row.tr.classList.toggle("selected", this.selected === d.name);
    c.name.setAttribute("aria-pressed", String(this.selected === d.name));
  }

  async refreshStat(name) {
    let stat;
    try {
      stat = await getJSON(`/v1/deployments/${enc(name)}/stat`);
    } catch (err) {
      if (err instanceof ApiError && (err.status === 404 || err.status === 503)) return; // removed or stopping meanwhile
      throw err;
    }
    const row = this.rows.get(name);
    if (!row) return;
    for (const [key, , pick] of STAT_CELLS) row.cells.stats[key].textContent = num(pick(stat));
  }

  // ---- the chart of the selected deployment ----

  select(name) {
    this.selected = name;
    for (const [n, row] of this.rows) {
      row.tr.classList.toggle("selected", n === name);
      row.cells.name.setAttribute("aria-pressed", String(n === name));
    }
    if (this.chart) {
      this.chart.destroy();
      this.chart = null;
      this.chartBox.replaceChildren();
    }
    this.chartPanel.hidden = !name;
    if (!name) return;
    this.chartTitle.textContent = `${name}: requests/s and tokens/s, last 10 minutes`;
    this.rpsOut.textContent = "—";
    this.tpsOut.textContent = "—";
    this.chartNote.textContent = "Loading…";
    this.chart = new LineChart(this.chartBox, {
      window: 600,
      series: [
        { label: "requests/s", scale: "rps" },
        { label: "tokens/s", scale: "tps", digits: 1 },
      ],
      axes: [
        { scale: "rps", label: "requests/s" },
        { scale: "tps", label: "tokens/s" },
      ],
    });
    guard(() => this.refreshChart(), `History of ${name}`)();
  }

  async refreshChart() {
    const name = this.selected;
    if (!name) return;
    let history;
    try {
      history = await getJSON(`/v1/deployments/${enc(name)}/history`);
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 404)) throw err;
      history = { points: [] }; // not sampled (yet): a deployment that failed or is starting
    }
    if (name !== this.selected || !this.chart) return;
    const points = history.points || [];
    const now = points.length ? points[points.length - 1].time : Date.now() / 1000;
    const recent = points.filter((p) => p.time >= now - 600);
    const data = rates(recent);
    const [xs, rps, tps] = data;
    const last = (ys) => [...ys].reverse().find((v) => v !== null);
    this.rpsOut.textContent = num(last(rps) ?? null);
    this.tpsOut.textContent = num(last(tps) ?? null);
    this.chartNote.textContent =
      xs.length > 0
        ? `${recent.length} samples, every ${num(history.interval ?? 2)} s.`
        : "Not enough samples yet: the server samples every 2 s.";
    this.chart.setData(data);
  }

  // ---- undeploy ----

  confirmUndeploy(name) {
    const d = this.store.get(name);
    this.dialogText.textContent =
      d && d.state === "failed"
        ? `Forget the failed deployment ${name}?`
        : `Undeploy ${name}? Its workers stop and requests to it fail from now on.`;
    this.dialog.returnValue = "";
    this.dialog.addEventListener(
      "close",
      () => {
        if (this.dialog.returnValue === "confirm") guard(() => this.undeploy(name), `Undeploy ${name}`)();
        else this.rows.get(name)?.cells.undeploy.focus();
      },
      { once: true },
    );
    this.dialog.showModal();
  }

  async undeploy(name) {
    showStatus(`Undeploying ${name}…`);
    await request(`/v1/deployments/${enc(name)}`, { method: "DELETE" });
    showStatus(`Undeployed ${name}.`);
    if (this.selected === name) this.select(null);
    this.poller.now();
  }

  // ---- the deploy form ----

  buildDeployForm() {
    const input = (id, attrs) => h("input", { id, name: id.replace("deploy-", ""), testid: id, ...attrs });
    this.backendSelect = h(
      "select",
      { id: "deploy-backend", testid: "deploy-backend", onchange: () => this.renderOptions() },
      h("option", { value: "" }, "(the model's default)"),
    );
    this.optionsBox = h("fieldset", { class: "options", testid: "deploy-options" });
    this.formError = h("p", { class: "field-error", testid: "deploy-error", role: "alert", hidden: true });
    this.deployForm = h(
      "form",
      {
        class: "card",
        testid: "deploy-form",
        "aria-labelledby": "deploy-title",
        novalidate: true,
        onsubmit: (e) => this.submitDeploy(e),
      },
      h("h3", { id: "deploy-title" }, "Deploy a model"),
      h(
        "div",
        { class: "grid" },
        field(
          "Name",
          input("deploy-name", { required: true, autocomplete: "off", placeholder: "chat" }),
          "letters, digits, - and _",
        ),
        field(
          "Model path",
          input("deploy-model_path", { value: "builtin:smollm2", required: true }),
          "a GGUF file, a Hugging Face folder, or builtin:<name>",
        ),
        field("Backend", this.backendSelect, "the backend that runs the model; its options appear below"),
        field(
          "Pretrained model type",
          input("deploy-pretrained_model_type", { value: "custom/auto" }),
          "custom/auto, or saas/<provider> for a SaaS model",
        ),
        field("Workers", input("deploy-num_workers", { type: "number", min: 1, step: 1, value: "1" })),
        field(
          "Requests per worker",
          input("deploy-worker_concurrency", { type: "number", min: 1, step: 1, value: "1" }),
          "worker_concurrency",
        ),
        field(
          "CPUs per worker",
          input("deploy-cpus_per_worker", { type: "number", min: 0, step: "any", value: "0.001" }),
        ),
        field("GPUs per worker", input("deploy-gpus_per_worker", { type: "number", min: 0, step: "any", value: "0" })),
      ),
      this.optionsBox,
      this.formError,
      h(
        "div",
        { class: "actions" },
        h("button", { type: "submit", class: "primary", testid: "deploy-submit" }, "Deploy"),
      ),
    );
    this.renderOptions();
    return this.deployForm;
  }

  async loadBackends() {
    try {
      const body = await getJSON("/v1/backends");
      this.backends = body.data || [];
    } catch (err) {
      showError(err, "Backends");
      return;
    }
    const current = this.backendSelect.value;
    this.backendSelect.replaceChildren(
      h("option", { value: "" }, "(the model's default)"),
      ...this.backends.map((b) => h("option", { value: b.name }, `${b.name} (${(b.tasks || []).join(", ")})`)),
    );
    this.backendSelect.value = current;
    this.renderOptions();
  }

  renderOptions() {
    const backend = this.backends.find((b) => b.name === this.backendSelect.value);
    this.optionsBox.replaceChildren(h("legend", {}, backend ? `${backend.name} options` : "Backend options"));
    if (!backend) {
      this.optionsBox.append(
        h(
          "p",
          { class: "help" },
          "Choose a backend to set its options; the model's default backend takes its defaults.",
        ),
      );
      return;
    }
    if (backend.description)
      this.optionsBox.append(h("p", { class: "help", testid: "deploy-backend-description" }, backend.description));
    if (!(backend.options || []).length)
      this.optionsBox.append(h("p", { class: "help" }, "This backend has no options."));
    const grid = h("div", { class: "grid" });
    for (const opt of backend.options || []) grid.append(optionField(opt));
    this.optionsBox.append(grid);
  }

  async submitDeploy(event) {
    event.preventDefault();
    clearFieldErrors(this.deployForm);
    this.formError.hidden = true;
    const value = (n) => document.getElementById(`deploy-${n}`).value.trim();
    const body = {
      name: value("name"),
      model_path: value("model_path"),
      backend: this.backendSelect.value || null,
      pretrained_model_type: value("pretrained_model_type") || "custom/auto",
      num_workers: Number(value("num_workers") || 1),
      worker_concurrency: Number(value("worker_concurrency") || 1),
      cpus_per_worker: Number(value("cpus_per_worker") || 0.001),
      gpus_per_worker: Number(value("gpus_per_worker") || 0),
      options: {},
    };
    let bad = false;
    if (!body.name) bad = setFieldError("deploy-name", "A name is required.");
    if (!body.model_path) bad = setFieldError("deploy-model_path", "A model path is required.") || bad;
    const backend = this.backends.find((b) => b.name === body.backend);
    for (const opt of backend?.options || []) {
      try {
        const v = readOption(opt);
        if (v !== undefined) body.options[opt.name] = v;
      } catch (err) {
        setFieldError(`deploy-opt-${opt.name}`, err.message);
        bad = true;
      }
    }
    if (bad) {
      this.deployForm.querySelector("[aria-invalid]")?.focus();
      return;
    }
    const submit = this.deployForm.querySelector("[type=submit]");
    submit.disabled = true;
    try {
      const d = await postJSON("/v1/deployments", body);
      showStatus(`Deploy of ${d.name || body.name} started: its row shows the workers loading.`);
      document.getElementById("deploy-name").value = "";
      this.poller.now();
    } catch (err) {
      if (err instanceof ApiError && err.status >= 400 && err.status < 500 && err.status !== 401)
        this.showDeployError(err);
      else showError(err, "Deploy");
    } finally {
      submit.disabled = false;
    }
  }

  /** A 400/409's message next to the field that `error.param` names (a top-level field or an option), else under the form. */
  showDeployError(err) {
    const param = String(err.param || (err.status === 409 ? "name" : ""));
    const candidates = [
      param,
      param
        .replace(/^options[.[]/, "")
        .replace(/]$/, "")
        .split(".")[0],
    ];
    for (const c of candidates) {
      if (c && (setFieldError(`deploy-${c}`, err.message) || setFieldError(`deploy-opt-${c}`, err.message))) {
        const control = document.getElementById(`deploy-${c}`) || document.getElementById(`deploy-opt-${c}`);
        control?.focus();
        showStatus(`Deploy refused: ${err.message}`, "error");
        return;
      }
    }
    this.formError.textContent = err.message;
    this.formError.hidden = false;
    showStatus(`Deploy refused: ${err.message}`, "error");
  }
}

// ---- a backend option as a form control ----

function boundsText(opt) {
  const parts = [];
  if (opt.minimum !== null && opt.minimum !== undefined) parts.push(`≥ ${opt.minimum}`);
  if (opt.exclusive_minimum !== null && opt.exclusive_minimum !== undefined) parts.push(`> ${opt.exclusive_minimum}`);
  if (opt.maximum !== null && opt.maximum !== undefined) parts.push(`≤ ${opt.maximum}`);
  if (opt.exclusive_maximum !== null && opt.exclusive_maximum !== undefined) parts.push(`< ${opt.exclusive_maximum}`);
  return parts.join(", ");
}

function helpText(opt) {
  const notes = [];
  const bounds = boundsText(opt);
  if (bounds) notes.push(bounds);
  if (opt.default !== null && opt.default !== undefined && !opt.secret)
    notes.push(`default ${JSON.stringify(opt.default)}`);
  const tail = notes.length ? ` (${notes.join("; ")})` : "";
  return `${opt.description || ""}${tail}`.trim();
}

export function optionField(opt) {
  const id = `deploy-opt-${opt.name}`;
  const common = { id, name: opt.name, testid: id };
  const label = opt.name;
  const def = opt.default;
  if (opt.enum && opt.enum.length) {
    const choices = opt.enum.map((v, i) => h("option", { value: String(i) }, String(v)));
    if (opt.nullable) choices.unshift(h("option", { value: "" }, "(not set)"));
    const at = opt.enum.findIndex((v) => jsonEqual(v, def));
    const select = h("select", { ...common, value: at >= 0 ? String(at) : "" }, choices);
    return field(label, select, helpText(opt));
  }
  if (opt.type === "boolean") {
    if (opt.nullable && (def === null || def === undefined)) {
      const select = h(
        "select",
        { ...common, value: "" },
        h("option", { value: "" }, "(not set)"),
        h("option", { value: "true" }, "true"),
        h("option", { value: "false" }, "false"),
      );
      return field(label, select, helpText(opt));
    }
    return field(label, h("input", { ...common, type: "checkbox", checked: Boolean(def) }), helpText(opt), {
      inline: true,
    });
  }
  if (opt.type === "integer" || opt.type === "number") {
    const int = opt.type === "integer";
    let min = opt.minimum ?? null;
    let max = opt.maximum ?? null;
    if (opt.exclusive_minimum !== null && opt.exclusive_minimum !== undefined)
      min = int ? opt.exclusive_minimum + 1 : opt.exclusive_minimum;
    if (opt.exclusive_maximum !== null && opt.exclusive_maximum !== undefined)
      max = int ? opt.exclusive_maximum - 1 : opt.exclusive_maximum;
    const input = h("input", {
      ...common,
      type: "number",
      min,
      max,
      step: int ? 1 : "any",
      placeholder: opt.nullable ? "(not set)" : null,
      value: def === null || def === undefined ? "" : String(def),
    });
    return field(label, input, helpText(opt));
  }
  if (opt.type === "array" || opt.type === "object") {
    const area = h("textarea", {
      ...common,
      rows: 2,
      spellcheck: "false",
      class: "mono",
      placeholder: opt.type === "array" ? '["…"]  (JSON)' : '{"key": "value"}  (JSON)',
      value: def === null || def === undefined ? "" : JSON.stringify(def),
    });
    return field(label, area, helpText(opt));
  }
  const input = h("input", {
    ...common,
    type: opt.secret ? "password" : "text",
    autocomplete: opt.secret ? "new-password" : "off",
    placeholder: opt.nullable ? "(not set)" : null,
    value: opt.secret || def === null || def === undefined ? "" : String(def),
  });
  return field(label, input, helpText(opt));
}

/** The value of option `opt` in the form, or undefined when it is its default (not sent); throws Error for a bad value. */
export function readOption(opt) {
  const el = document.getElementById(`deploy-opt-${opt.name}`);
  if (!el) return undefined;
  let value;
  const raw = el.type === "checkbox" ? null : el.value.trim();
  if (opt.enum && opt.enum.length) {
    value = raw === "" ? null : opt.enum[Number(raw)];
  } else if (opt.type === "boolean") {
    value = el.type === "checkbox" ? el.checked : raw === "" ? null : raw === "true";
  } else if (opt.type === "integer" || opt.type === "number") {
    if (raw === "") value = null;
    else {
      value = Number(raw);
      if (!Number.isFinite(value)) throw new Error("Not a number.");
      if (opt.type === "integer" && !Number.isInteger(value)) throw new Error("A whole number is required.");
    }
  } else if (opt.type === "array" || opt.type === "object") {
    if (raw === "") value = null;
    else {
      try {
        value = JSON.parse(raw);
      } catch (err) {
        throw new Error(`Not JSON: ${err.message}`);
      }
      if (opt.type === "array" && !Array.isArray(value))
        throw new Error('A JSON array is required, such as ["a", "b"].');
      if (opt.type === "object" && (value === null || typeof value !== "object" || Array.isArray(value)))
        throw new Error('A JSON object is required, such as {"key": "value"}.');
    }
  } else {
    value = raw === "" && (opt.nullable || opt.default === null || opt.default === undefined) ? null : raw;
  }
  if (value === null && !opt.nullable && opt.default !== null && opt.default !== undefined) {
    throw new Error("A value is required.");
  }
  const def = opt.default ?? null;
  return jsonEqual(value, def) ? undefined : value;
}
