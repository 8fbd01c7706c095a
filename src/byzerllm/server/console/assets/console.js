// The Byzer-LLM web console: a single page over the server's JSON API (docs/console.md lists the endpoints).
// Plain ES modules, no build step; uPlot (assets/vendor/uplot) draws the charts.
//
// data-testid attributes the browser tests use (<name> is a deployment, job, index or "db.table"):
//   key form       key-form, key-input, key-submit, key-none (continue without a key), key-message
//   page           app, status, status-text, status-dismiss, sign-out,
//                  tab-deployments, tab-playground, tab-documents, tab-jobs,
//                  panel-deployments, panel-playground, panel-documents, panel-jobs
//   deployments    deployments-table, deployments-empty, deployment-row-<name>, select-<name>,
//                  state-<name>, error-<name>, backend-<name>, tasks-<name>, workers-<name>,
//                  stat-<name>-busy, stat-<name>-idle, stat-<name>-queued, stat-<name>-requests,
//                  stat-<name>-prompt-tokens, stat-<name>-completion-tokens, stat-<name>-failed,
//                  undeploy-<name>, confirm-dialog, confirm-cancel, confirm-undeploy,
//                  deployment-detail, deployment-chart, deployment-chart-note, chart-requests-per-s,
//                  chart-tokens-per-s, deployment-detail-close,
//                  deploy-form, deploy-name, deploy-model_path, deploy-backend, deploy-pretrained_model_type,
//                  deploy-num_workers, deploy-worker_concurrency, deploy-cpus_per_worker,
//                  deploy-gpus_per_worker, deploy-options, deploy-backend-description,
//                  deploy-opt-<option>, deploy-error, deploy-submit
//                  (a field's error line is the element with id "<control id>-error")
//   playground     playground-model, playground-compare, playground-model-b, playground-empty,
//                  playground-tasks, playground-chat, playground-system, playground-temperature,
//                  playground-max-tokens, playground-schema, playground-image-field, playground-image,
//                  playground-image-previews, playground-input, playground-send, playground-stop,
//                  playground-output, playground-ttft, playground-tokens-per-s, playground-prompt-tokens,
//                  playground-completion-tokens, playground-state, playground-reasoning,
//                  playground-finish (empty while a reply streams; then its finish_reason, "error" or "stopped")
//                  (the second model's: the same with -b: playground-output-b, playground-ttft-b, ...),
//                  speech-form, speech-input, speech-voice, speech-format, speech-submit, speech-audio,
//                  transcription-form, transcription-file, transcription-language, transcription-submit,
//                  transcription-record, transcription-info, transcription-output,
//                  image-form, image-prompt, image-size, image-submit, image-output, image-output-<i>
//   documents      storage-tables, storage-row-<db.table>, storage-rows-<db.table>, storage-refresh,
//                  search-form, search-table (a select: options labelled "db.table"), search-mode,
//                  search-query, search-limit, search-emb-model (a text input offering the embedding deployments),
//                  search-submit, search-results, search-result-<i>, search-results-empty,
//                  rag-indexes, rag-row-<name>, rag-state-<name>, rag-progress-<name>, rag-error-<name>,
//                  rag-refresh, rag-build-form, rag-name, rag-folder, rag-emb-model (text input), rag-build-submit,
//                  rag-ask-form, rag-index, rag-model, rag-question, rag-ask-submit, rag-answer,
//                  rag-sources, rag-source-<n>
//   jobs           jobs-table, jobs-empty, job-row-<name>, select-job-<name>, job-<name>-state,
//                  job-<name>-error, job-<name>-step, job-<name>-loss, job-<name>-tokens-per-s, job-<name>-eta,
//                  job-detail, job-detail-state, job-loss-chart, job-loss-note, job-log, job-cancel,
//                  job-resume, job-detail-close

import { ApiError, abortAll, apiKey, clearStatus, onUnauthorized, request, showError } from "./api.js";
import { DeploymentsView } from "./deployments.js";
import { DocumentsView } from "./documents.js";
import { JobsView } from "./jobs.js";
import { PlaygroundView } from "./playground.js";
import { DeploymentStore } from "./store.js";

const TABS = [
  ["deployments", DeploymentsView],
  ["playground", PlaygroundView],
  ["documents", DocumentsView],
  ["jobs", JobsView],
];

const $ = (id) => document.getElementById(id);

let views = null; // tab name -> view, while signed in
let active = null;

// ---- the key ----

function showKeyForm(message = "") {
  unmount();
  $("app").hidden = true;
  $("key-view").hidden = false;
  $("key-message").textContent = message;
  $("key-input").value = "";
  $("key-input").focus();
  probeOpenServer();
}

/** Offer "no key" when the server answers /v1/models without one. */
async function probeOpenServer() {
  const button = $("key-none");
  button.hidden = true;
  try {
    await request("/v1/models", { key: "" });
    button.hidden = false;
  } catch {
    // keys are required (401) or the server is down: the form says so when a key is tried
  }
}

async function tryKey(key) {
  const submit = $("key-submit");
  submit.disabled = true;
  $("key-message").textContent = "Checking…";
  try {
    await request("/v1/models", { key });
    apiKey.set(key);
    $("key-message").textContent = "";
    mount();
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      $("key-message").textContent = "Wrong key: the server refused it (401).";
      $("key-input").select();
    } else {
      $("key-message").textContent = `Cannot check the key: ${err.message}`;
    }
  } finally {
    submit.disabled = false;
  }
}

function signOut(message = "Signed out.") {
  apiKey.clear();
  abortAll();
  clearStatus();
  showKeyForm(message);
}

// ---- the app ----

function mount() {
  unmount();
  const store = new DeploymentStore();
  views = {};
  for (const [name, View] of TABS) {
    const panel = $(`panel-${name}`);
    panel.replaceChildren();
    views[name] = new View(panel, store);
  }
  $("key-view").hidden = true;
  $("app").hidden = false;
  $("sign-out-hint").textContent = apiKey.get() ? "" : "(no key)";
  const fromHash = location.hash.slice(1);
  select(TABS.some(([n]) => n === fromHash) ? fromHash : "deployments");
}

function unmount() {
  if (!views) return;
  for (const view of Object.values(views)) {
    try {
      view.destroy();
    } catch (err) {
      console.warn(err);
    }
  }
  views = null;
  active = null;
  for (const [name] of TABS) $(`panel-${name}`).replaceChildren(); // no cluster data left in the page
}

function select(name, { focus = false } = {}) {
  if (!views) return;
  if (active && active !== name) views[active].deactivate();
  for (const [n] of TABS) {
    const on = n === name;
    const tab = $(`tab-${n}`);
    tab.setAttribute("aria-current", on ? "page" : "false");
    $(`panel-${n}`).hidden = !on;
  }
  const changed = active !== name;
  active = name;
  if (location.hash.slice(1) !== name) history.replaceState(null, "", `${location.pathname}${location.search}#${name}`);
  if (!document.hidden) views[name].activate();
  if (focus && changed) $(`panel-${name}`).focus();
}

function init() {
  onUnauthorized(() => signOut("Your key was refused (401): enter it again."));
  $("key-form").addEventListener("submit", (e) => {
    e.preventDefault();
    tryKey($("key-input").value.trim());
  });
  $("key-none").addEventListener("click", () => tryKey(""));
  $("sign-out").addEventListener("click", () => signOut());
  $("status-dismiss").addEventListener("click", clearStatus);
  $("skip").addEventListener("click", (e) => {
    e.preventDefault(); // the <base> would turn "#main" into a navigation
    $("main").focus();
  });
  for (const [name] of TABS) $(`tab-${name}`).addEventListener("click", () => select(name, { focus: false }));
  $("tabs").addEventListener("keydown", (e) => {
    // arrows move between the tab buttons as well as Tab does
    const i = TABS.findIndex(([n]) => `tab-${n}` === document.activeElement.id);
    if (i < 0 || !["ArrowLeft", "ArrowRight", "Home", "End"].includes(e.key)) return;
    e.preventDefault();
    const j =
      e.key === "Home"
        ? 0
        : e.key === "End"
          ? TABS.length - 1
          : (i + (e.key === "ArrowRight" ? 1 : TABS.length - 1)) % TABS.length;
    $(`tab-${TABS[j][0]}`).focus();
  });
  document.addEventListener("visibilitychange", () => {
    if (!views || !active) return;
    if (document.hidden) views[active].deactivate();
    else views[active].activate();
  });
  window.addEventListener("unhandledrejection", (e) => showError(e.reason, "Unexpected error"));

  if (apiKey.get() === null) showKeyForm();
  else mount();
}

init();
