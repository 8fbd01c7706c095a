// The Documents tab: the storage tables, search (vector, fulltext, hybrid), and RAG indexes
// (build with progress, ask with numbered sources).

import { ApiError, Poller, getJSON, guard, postJSON, showStatus } from "./api.js";
import { clearFieldErrors, field, h, num, setFieldError, setOptions } from "./dom.js";

/** A cell value: long float vectors as their size, objects as JSON, the rest as text. */
function cellText(v) {
  if (v === null || v === undefined) return "—";
  if (Array.isArray(v) && v.length > 8 && v.every((x) => typeof x === "number")) return `[${v.length} numbers]`;
  if (typeof v === "number") return Number.isInteger(v) ? String(v) : v.toFixed(4);
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}

/** Long text clipped to three lines; hover or focus (it is tabbable then) shows it whole. */
function clipped(text) {
  return h("div", { class: "clip", tabindex: text.length > 160 ? "0" : null }, text);
}

/** "3/10 files, 42 chunks, reading a.md" from a build's progress (files_done, files_total, chunks, file). */
export function progressText(p) {
  if (!p || typeof p !== "object") return "";
  const done = p.files_done ?? p.done ?? null;
  const total = p.files_total ?? p.total ?? null;
  const bits = [];
  if (done !== null && total !== null) bits.push(`${done}/${total} files`);
  if (p.chunks !== undefined && p.chunks !== null) bits.push(`${p.chunks} chunks`);
  if (p.file) bits.push(`reading ${p.file}`);
  const known = ["files_done", "done", "files_total", "total", "chunks", "file"];
  for (const [k, v] of Object.entries(p)) {
    if (!known.includes(k) && v !== null && v !== undefined)
      bits.push(`${k} ${typeof v === "object" ? JSON.stringify(v) : v}`);
  }
  return bits.join(", ");
}

function progressRatio(p) {
  if (!p) return null;
  const done = p.files_done ?? p.done;
  const total = p.files_total ?? p.total;
  return typeof done === "number" && typeof total === "number" && total > 0 ? [done, total] : null;
}

export class DocumentsView {
  constructor(panel, store) {
    this.panel = panel;
    this.store = store;
    this.tables = [];
    this.indexes = [];
    this.indexPoller = new Poller(() => this.refreshIndexes(), 2000);
    this.build();
    this.unsubscribe = store.subscribe(() => this.fillModels());
  }

  build() {
    // tables
    this.tablesBody = h("tbody");
    this.tablesEmpty = h(
      "p",
      { class: "empty", hidden: true, testid: "storage-tables-empty" },
      "No tables in the store yet.",
    );
    const tablesCard = h(
      "section",
      { class: "card", "aria-labelledby": "tables-title" },
      h(
        "div",
        { class: "card-head" },
        h("h3", { id: "tables-title" }, "Tables"),
        h(
          "button",
          {
            type: "button",
            class: "secondary",
            testid: "storage-refresh",
            onclick: guard(() => this.refreshTables(), "Tables"),
          },
          "Refresh",
        ),
      ),
      h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          { class: "data", testid: "storage-tables" },
          h(
            "thead",
            {},
            h(
              "tr",
              {},
              ["Database", "Table", "Rows", "Vector fields (dim)", "Text fields"].map((t) =>
                h("th", { scope: "col" }, t),
              ),
            ),
          ),
          this.tablesBody,
        ),
      ),
      this.tablesEmpty,
    );

    // search
    this.searchTable = h("select", { id: "search-table", testid: "search-table" });
    this.searchMode = h(
      "select",
      { id: "search-mode", testid: "search-mode", value: "hybrid" },
      ["vector", "fulltext", "hybrid"].map((m) => h("option", { value: m }, m)),
    );
    this.searchQuery = h("input", {
      id: "search-query",
      testid: "search-query",
      type: "search",
      placeholder: "what to look for",
    });
    this.searchLimit = h("input", {
      id: "search-limit",
      testid: "search-limit",
      type: "number",
      min: 1,
      max: 100,
      step: 1,
      value: "10",
    });
    // a text input offering the embedding deployments (a datalist): any deployment name can be typed
    this.embList = h("datalist", { id: "emb-deployments" });
    this.searchEmb = h("input", {
      id: "search-emb_model",
      testid: "search-emb-model",
      list: "emb-deployments",
      autocomplete: "off",
      placeholder: "(none)",
    });
    this.searchResults = h("div", { class: "table-wrap", testid: "search-results", "aria-live": "polite" });
    this.searchForm = h(
      "form",
      {
        class: "card",
        testid: "search-form",
        "aria-labelledby": "search-title",
        novalidate: true,
        onsubmit: (e) => {
          e.preventDefault();
          guard(() => this.search(e.submitter), "Search")();
        },
      },
      h("h3", { id: "search-title" }, "Search"),
      h(
        "div",
        { class: "grid" },
        field("Table", this.searchTable),
        field("Mode", this.searchMode, "vector: by meaning; fulltext: by words; hybrid: both"),
        field("Query", this.searchQuery),
        field("Results", this.searchLimit),
        field("Embedding deployment", this.searchEmb, "for vector and hybrid search"),
      ),
      h(
        "div",
        { class: "actions" },
        h("button", { type: "submit", class: "primary", testid: "search-submit" }, "Search"),
      ),
      this.searchResults,
    );

    // RAG indexes
    this.indexesBody = h("tbody");
    this.indexesEmpty = h(
      "p",
      { class: "empty", hidden: true, testid: "rag-indexes-empty" },
      "No RAG index yet: build one below.",
    );
    const indexesCard = h(
      "section",
      { class: "card", "aria-labelledby": "rag-title" },
      h(
        "div",
        { class: "card-head" },
        h("h3", { id: "rag-title" }, "RAG indexes"),
        h(
          "button",
          {
            type: "button",
            class: "secondary",
            testid: "rag-refresh",
            onclick: guard(() => this.refreshIndexes(), "RAG indexes"),
          },
          "Refresh",
        ),
      ),
      h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          { class: "data", testid: "rag-indexes" },
          h(
            "thead",
            {},
            h(
              "tr",
              {},
              ["Name", "State", "Files", "Chunks", "Embedding", "Folder"].map((t) => h("th", { scope: "col" }, t)),
            ),
          ),
          this.indexesBody,
        ),
      ),
      this.indexesEmpty,
    );

    this.ragEmb = h("input", {
      id: "rag-emb_model",
      testid: "rag-emb-model",
      list: "emb-deployments",
      autocomplete: "off",
    });
    this.buildForm = h(
      "form",
      {
        class: "card",
        testid: "rag-build-form",
        "aria-labelledby": "rag-build-title",
        novalidate: true,
        onsubmit: (e) => {
          e.preventDefault();
          guard(() => this.buildIndex(e.submitter), "Build")();
        },
      },
      h("h3", { id: "rag-build-title" }, "Build an index"),
      h(
        "div",
        { class: "grid" },
        field("Name", h("input", { id: "rag-name", testid: "rag-name", autocomplete: "off" })),
        field(
          "Folder",
          h("input", { id: "rag-source_dir", testid: "rag-folder", placeholder: "/data/docs" }),
          "a folder on the server's machine",
        ),
        field("Embedding deployment", this.ragEmb),
      ),
      h(
        "div",
        { class: "actions" },
        h("button", { type: "submit", class: "primary", testid: "rag-build-submit" }, "Build"),
      ),
    );

    this.askIndex = h("select", { id: "rag-index", testid: "rag-index" });
    this.askModel = h("select", { id: "rag-model", testid: "rag-model" });
    this.answer = h("div", { class: "answer", testid: "rag-answer", "aria-live": "polite" });
    this.sources = h("ol", { class: "sources", testid: "rag-sources" });
    this.askForm = h(
      "form",
      {
        class: "card",
        testid: "rag-ask-form",
        "aria-labelledby": "rag-ask-title",
        novalidate: true,
        onsubmit: (e) => {
          e.preventDefault();
          guard(() => this.ask(e.submitter), "Ask")();
        },
      },
      h("h3", { id: "rag-ask-title" }, "Ask"),
      h(
        "div",
        { class: "grid" },
        field("Index", this.askIndex),
        field("Chat model", this.askModel),
        field("Question", h("textarea", { id: "rag-question", testid: "rag-question", rows: 2 })),
      ),
      h(
        "div",
        { class: "actions" },
        h("button", { type: "submit", class: "primary", testid: "rag-ask-submit" }, "Ask"),
      ),
      this.answer,
      this.sources,
    );

    this.panel.append(
      h("h2", {}, "Documents"),
      tablesCard,
      this.searchForm,
      indexesCard,
      h("div", { class: "two" }, this.buildForm, this.askForm),
      this.embList,
    );
    this.fillModels();
  }

  activate() {
    this.active = true;
    guard(() => this.refreshTables(), "Tables")();
    guard(() => this.refreshIndexes(), "RAG indexes")();
    guard(() => this.store.refresh(), "Deployments")();
  }

  deactivate() {
    this.active = false;
    this.indexPoller.stop();
  }

  destroy() {
    this.indexPoller.stop();
    this.unsubscribe();
  }

  fillModels() {
    const emb = this.store.serving("embed").map((d) => ({ value: d.name }));
    this.embList.replaceChildren(...emb.map((d) => h("option", { value: d.value })));
    if (emb.length && !this.embFilled) {
      // once: the first embedding deployment, so that vector search works without a choice
      this.embFilled = true;
      if (!this.searchEmb.value) this.searchEmb.value = emb[0].value;
      if (!this.ragEmb.value) this.ragEmb.value = emb[0].value;
    }
    setOptions(
      this.askModel,
      this.store.serving("chat").map((d) => ({ value: d.name })),
      { placeholder: "(the server's default)" },
    );
  }

  // ---- tables and search ----

  async refreshTables() {
    const body = await getJSON("/v1/storage/tables");
    this.tables = body.data || [];
    this.tablesBody.replaceChildren(
      ...this.tables.map((t) =>
        h(
          "tr",
          { testid: `storage-row-${t.database}.${t.table}` },
          h("td", {}, t.database),
          h("th", { scope: "row" }, t.table),
          h("td", { class: "num", testid: `storage-rows-${t.database}.${t.table}` }, num(t.rows)),
          h("td", {}, (t.vector_fields || []).map((v) => `${v.name} (${v.dim})`).join(", ") || "—"),
          h("td", {}, (t.text_fields || []).join(", ") || "—"),
        ),
      ),
    );
    this.tablesEmpty.hidden = this.tables.length > 0;
    setOptions(
      this.searchTable,
      this.tables.map((t) => ({ value: JSON.stringify([t.database, t.table]), label: `${t.database}.${t.table}` })),
    );
  }

  async search(button) {
    clearFieldErrors(this.searchForm);
    if (!this.searchTable.value) return setFieldError("search-table", "No table to search.");
    const query = this.searchQuery.value.trim();
    if (!query) return setFieldError("search-query", "Write a query.");
    const [database, table] = JSON.parse(this.searchTable.value);
    const body = {
      database,
      table,
      query,
      mode: this.searchMode.value,
      limit: Number(this.searchLimit.value) || 10,
      emb_model: this.searchEmb.value.trim() || null,
    };
    if (button) button.disabled = true;
    try {
      const out = await postJSON("/v1/storage/search", body);
      this.showResults(out.data || []);
    } catch (err) {
      const param = {
        database: "table",
        table: "table",
        query: "query",
        mode: "mode",
        limit: "limit",
        emb_model: "emb_model",
      }[err.param];
      if (err instanceof ApiError && err.status === 400 && param) {
        setFieldError(`search-${param}`, err.message);
        showStatus(`Search refused: ${err.message}`, "error");
      } else throw err;
    } finally {
      if (button) button.disabled = false;
    }
  }

  showResults(rows) {
    if (!rows.length) {
      this.searchResults.replaceChildren(h("p", { class: "empty", testid: "search-results-empty" }, "No results."));
      return;
    }
    const keys = ["_score"];
    for (const r of rows) for (const k of Object.keys(r)) if (!keys.includes(k)) keys.push(k);
    this.searchResults.replaceChildren(
      h(
        "table",
        { class: "data results" },
        h("caption", {}, `${rows.length} results`),
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            keys.map((k) => h("th", { scope: "col" }, k === "_score" ? "score" : k)),
          ),
        ),
        h(
          "tbody",
          {},
          rows.map((r, i) =>
            h(
              "tr",
              { testid: `search-result-${i}` },
              keys.map((k) =>
                k === "_score" ? h("td", { class: "num" }, cellText(r[k])) : h("td", {}, clipped(cellText(r[k]))),
              ),
            ),
          ),
        ),
      ),
    );
  }

  // ---- RAG ----

  async refreshIndexes() {
    const body = await getJSON("/v1/rag/indexes");
    this.indexes = body.data || [];
    this.indexesBody.replaceChildren(
      ...this.indexes.map((ix) => {
        const ratio = progressRatio(ix.progress);
        const state = h(
          "td",
          { class: "state" },
          h("span", { class: "badge", "data-state": ix.state, testid: `rag-state-${ix.name}` }, ix.state),
        );
        if (ix.state === "building") {
          if (ratio)
            state.append(h("progress", { value: ratio[0], max: ratio[1], "aria-label": `${ix.name} build progress` }));
          state.append(h("span", { class: "help", testid: `rag-progress-${ix.name}` }, progressText(ix.progress)));
        }
        if (ix.error) state.append(h("span", { class: "error-text", testid: `rag-error-${ix.name}` }, ix.error));
        return h(
          "tr",
          { testid: `rag-row-${ix.name}` },
          h("th", { scope: "row" }, ix.name),
          state,
          h("td", { class: "num" }, num(ix.files)),
          h("td", { class: "num" }, num(ix.chunks)),
          h("td", {}, ix.emb_model || "—"),
          h("td", {}, ix.source_dir || "—"),
        );
      }),
    );
    this.indexesEmpty.hidden = this.indexes.length > 0;
    setOptions(
      this.askIndex,
      this.indexes.filter((ix) => ix.state === "ready").map((ix) => ({ value: ix.name })),
    );
    if (this.active && this.indexes.some((ix) => ix.state === "building")) this.indexPoller.start();
    else this.indexPoller.stop();
  }

  async buildIndex(button) {
    clearFieldErrors(this.buildForm);
    const body = {
      name: document.getElementById("rag-name").value.trim(),
      source_dir: document.getElementById("rag-source_dir").value.trim(),
      emb_model: this.ragEmb.value.trim(),
    };
    let bad = false;
    if (!body.name) bad = setFieldError("rag-name", "A name is required.");
    if (!body.source_dir) bad = setFieldError("rag-source_dir", "A folder is required.") || bad;
    if (!body.emb_model) bad = setFieldError("rag-emb_model", "Name an embedding deployment.") || bad;
    if (bad) return;
    if (button) button.disabled = true;
    try {
      const ix = await postJSON("/v1/rag/indexes", body);
      showStatus(`Building ${ix.name || body.name}…`);
      await this.refreshIndexes();
    } catch (err) {
      if (
        err instanceof ApiError &&
        err.status === 400 &&
        err.param &&
        setFieldError(`rag-${err.param}`, err.message)
      ) {
        showStatus(`Build refused: ${err.message}`, "error");
      } else throw err;
    } finally {
      if (button) button.disabled = false;
    }
  }

  async ask(button) {
    clearFieldErrors(this.askForm);
    const question = document.getElementById("rag-question").value.trim();
    if (!this.askIndex.value) return setFieldError("rag-index", "No ready index.");
    if (!question) return setFieldError("rag-question", "Write a question.");
    if (button) button.disabled = true;
    this.answer.textContent = "Thinking…";
    this.sources.replaceChildren();
    try {
      const out = await postJSON("/v1/rag/ask", {
        index: this.askIndex.value,
        question,
        model: this.askModel.value || null,
        top_k: 5,
        mode: "hybrid",
      });
      this.answer.textContent = out.answer ?? "";
      this.sources.replaceChildren(
        ...(out.sources || []).map((s) =>
          h(
            "li",
            { value: s.n, testid: `rag-source-${s.n}` },
            h(
              "details",
              {},
              h("summary", {}, `[${s.n}] ${s.source} `, h("span", { class: "help" }, `score ${num(s.score, 3)}`)),
              h("p", { class: "source-text" }, s.text),
            ),
          ),
        ),
      );
    } catch (err) {
      this.answer.textContent = "";
      const id = { index: "rag-index", question: "rag-question", model: "rag-model" }[err.param];
      if (err instanceof ApiError && err.status === 400 && id && setFieldError(id, err.message)) {
        showStatus(`Ask refused: ${err.message}`, "error");
      } else throw err;
    } finally {
      if (button) button.disabled = false;
    }
  }
}
