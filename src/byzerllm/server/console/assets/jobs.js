// The Jobs tab: training jobs (every 2 s); the selected one's loss curve, log tail, Cancel and Resume.

import { Poller, PolledView, enc, getJSON, guard, postJSON, showStatus } from "./api.js";
import { LineChart } from "./charts.js";
import { duration, h, num } from "./dom.js";

const ACTIVE = ["pending", "running", "exporting"];

function stepText(j) {
  const total = j.total_steps ?? j.total;
  if (j.step === undefined || j.step === null) return "—";
  return total ? `${j.step}/${total}` : String(j.step);
}

export class JobsView extends PolledView {
  constructor(panel) {
    super();
    this.panel = panel;
    this.jobs = [];
    this.selected = null;
    this.chart = null;
    this.poller = new Poller(() => this.refresh(), 2000);
    this.build();
  }

  build() {
    this.tbody = h("tbody");
    this.empty = h(
      "p",
      { class: "empty", hidden: true, testid: "jobs-empty" },
      "No training jobs: start one with byzerllm train.",
    );
    this.title = h("h3", { id: "job-title" }, "");
    this.detailState = h("p", { class: "help", testid: "job-detail-state", role: "status" });
    this.chartBox = h("div", { class: "chart", testid: "job-loss-chart", role: "img", "aria-label": "Loss by step" });
    this.chartNote = h("p", { class: "help", testid: "job-loss-note" });
    this.log = h("pre", { class: "log", testid: "job-log", role: "region", tabindex: "0", "aria-label": "Log tail" });
    this.cancel = h(
      "button",
      { type: "button", class: "danger", testid: "job-cancel", onclick: guard(() => this.act("cancel"), "Cancel") },
      "Cancel job",
    );
    this.resume = h(
      "button",
      { type: "button", class: "primary", testid: "job-resume", onclick: guard(() => this.act("resume"), "Resume") },
      "Resume",
    );
    this.detail = h(
      "section",
      { class: "card", testid: "job-detail", hidden: true, "aria-labelledby": "job-title" },
      h(
        "div",
        { class: "card-head" },
        this.title,
        h(
          "div",
          { class: "actions" },
          this.cancel,
          this.resume,
          h(
            "button",
            { type: "button", class: "secondary", testid: "job-detail-close", onclick: () => this.select(null) },
            "Close",
          ),
        ),
      ),
      this.detailState,
      this.chartBox,
      this.chartNote,
      h("h4", {}, "Log"),
      this.log,
    );
    this.panel.append(
      h("h2", {}, "Jobs"),
      h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          { class: "data", testid: "jobs-table" },
          h("caption", { class: "visually-hidden" }, "Training jobs"),
          h(
            "thead",
            {},
            h(
              "tr",
              {},
              ["Name", "Kind", "State", "Step", "Loss", "Tokens/s", "ETA"].map((t) => h("th", { scope: "col" }, t)),
            ),
          ),
          this.tbody,
        ),
      ),
      this.empty,
      this.detail,
    );
  }

  async refresh() {
    const body = await getJSON("/v1/jobs");
    this.jobs = body.data || [];
    const focused = document.activeElement?.dataset?.testid;
    this.tbody.replaceChildren(
      ...this.jobs.map((j) =>
        h(
          "tr",
          { testid: `job-row-${j.name}`, class: j.name === this.selected ? "selected" : null },
          h(
            "th",
            { scope: "row" },
            h(
              "button",
              {
                type: "button",
                class: "link",
                testid: `select-job-${j.name}`,
                "aria-pressed": String(j.name === this.selected),
                onclick: () => this.select(j.name === this.selected ? null : j.name),
              },
              j.name,
            ),
          ),
          h("td", {}, j.kind || "—"),
          h(
            "td",
            { class: "state" },
            h("span", { class: "badge", "data-state": j.state, testid: `job-${j.name}-state` }, j.state),
            j.error ? h("span", { class: "error-text", testid: `job-${j.name}-error` }, j.error) : null,
          ),
          h("td", { class: "num", testid: `job-${j.name}-step` }, stepText(j)),
          h("td", { class: "num", testid: `job-${j.name}-loss` }, num(j.loss ?? null, 4)),
          h("td", { class: "num", testid: `job-${j.name}-tokens-per-s` }, num(j.tokens_per_s ?? null, 1)),
          h("td", { class: "num", testid: `job-${j.name}-eta` }, ACTIVE.includes(j.state) ? duration(j.eta_s) : "—"),
        ),
      ),
    );
    if (focused) this.tbody.querySelector(`[data-testid="${CSS.escape(focused)}"]`)?.focus();
    this.empty.hidden = this.jobs.length > 0;
    if (this.selected && !this.jobs.some((j) => j.name === this.selected)) this.select(null);
    if (this.selected) await this.refreshDetail();
  }

  select(name) {
    this.selected = name;
    for (const tr of this.tbody.children) {
      const on = tr.dataset.testid === `job-row-${name}`;
      tr.classList.toggle("selected", on);
      tr.querySelector("button")?.setAttribute("aria-pressed", String(on));
    }
    if (this.chart) {
      this.chart.destroy();
      this.chart = null;
      this.chartBox.replaceChildren();
    }
    this.detail.hidden = !name;
    if (!name) return;
    this.title.textContent = name;
    this.log.textContent = "";
    this.chartNote.textContent = "Loading…";
    this.chart = new LineChart(this.chartBox, {
      time: false,
      xLabel: "step",
      series: [
        { label: "loss", scale: "loss", digits: 4, spanGaps: true },
        { label: "eval loss", scale: "loss", digits: 4, spanGaps: true, points: true },
      ],
      axes: [{ scale: "loss", label: "loss", fromZero: false }],
    });
    guard(() => this.refreshDetail(), `Job ${name}`)();
  }

  async refreshDetail() {
    const name = this.selected;
    const job = await getJSON(`/v1/jobs/${enc(name)}`);
    if (name !== this.selected || !this.chart) return;
    const curve = job.loss_curve || [];
    this.chartNote.textContent = curve.length
      ? `${curve.length} points; last step ${curve[curve.length - 1].step}.`
      : "No loss logged yet.";
    if (curve.length)
      this.chart.setData([
        curve.map((p) => p.step),
        curve.map((p) => p.loss ?? null),
        curve.map((p) => p.eval_loss ?? null),
      ]);
    const atBottom = this.log.scrollTop + this.log.clientHeight >= this.log.scrollHeight - 4;
    const text = (job.log_tail || []).join("\n");
    if (this.log.textContent !== text) {
      this.log.textContent = text;
      if (atBottom) this.log.scrollTop = this.log.scrollHeight;
    }
    const active = ACTIVE.includes(job.state);
    this.cancel.disabled = !active || this.busy;
    this.resume.disabled = !["failed", "cancelled"].includes(job.state) || this.busy;
    this.detailState.textContent = `${job.state}${job.error ? `: ${job.error}` : ""}; step ${stepText(job)}, ETA ${active ? duration(job.eta_s) : "—"}.`;
  }

  async act(what) {
    const name = this.selected;
    if (!name) return;
    this.busy = true;
    this.cancel.disabled = true;
    this.resume.disabled = true;
    showStatus(what === "cancel" ? `Cancelling ${name}: it stops after its current step…` : `Resuming ${name}…`);
    try {
      const status = await postJSON(`/v1/jobs/${enc(name)}/${what}`, {});
      showStatus(`${name} is ${status.state}.`);
    } finally {
      this.busy = false;
      this.poller.now();
    }
  }
}
