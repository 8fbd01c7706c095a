// The Playground tab: streamed chat (one model, or two side by side), with the chosen deployment's
// other tasks: image input, speech, transcription and image generation.

import { ApiError, Poller, guard, postJSON, request, showError, showStatus } from "./api.js";
import { clearFieldErrors, field, h, num, setFieldError, setOptions } from "./dom.js";

const TASKS = ["chat", "speech", "transcription", "image"];

/**
 * Read a `text/event-stream` body: calls onData(data) for each event's data ("[DONE]" ends it).
 * Events are separated by a blank line; an event's several `data:` lines are joined by "\n".
 */
export async function readSSE(body, onData) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let lines = [];
  const dispatch = () => {
    if (!lines.length) return false;
    const data = lines.join("\n");
    lines = [];
    if (data === "[DONE]") return true;
    onData(data);
    return false;
  };
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let nl;
      while ((nl = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, nl).replace(/\r$/, "");
        buffer = buffer.slice(nl + 1);
        if (line === "") {
          if (dispatch()) return;
        } else if (line.startsWith("data:")) {
          lines.push(line.slice(line[5] === " " ? 6 : 5));
        }
      }
    }
    if (buffer.startsWith("data:")) lines.push(buffer.slice(buffer[5] === " " ? 6 : 5));
    dispatch();
  } finally {
    reader.cancel().catch(() => {});
  }
}

/** One output column: the streamed text and its numbers (TTFT, tokens/s, prompt/completion tokens). */
class OutputPane {
  constructor(suffix, title) {
    const t = (k) => `playground-${k}${suffix}`;
    this.title = h("h3", { testid: t("title") }, title);
    this.reasoning = h("pre", { class: "reasoning", testid: t("reasoning"), hidden: true });
    this.text = document.createTextNode("");
    this.output = h(
      "pre",
      {
        class: "output",
        testid: t("output"),
        role: "region",
        "aria-label": suffix ? "Second answer" : "Answer",
        tabindex: "0",
      },
      this.text,
    );
    this.numbers = {
      ttft: h("span", { testid: t("ttft") }, "—"),
      tps: h("span", { testid: t("tokens-per-s") }, "—"),
      prompt: h("span", { testid: t("prompt-tokens") }, "—"),
      completion: h("span", { testid: t("completion-tokens") }, "—"),
      // empty until the stream ends: then its finish_reason, "error" or "stopped"
      finish: h("span", { testid: t("finish") }, ""),
    };
    this.state = h("p", { class: "pane-state", testid: t("state"), role: "status" }, "");
    const n = this.numbers;
    this.el = h(
      "section",
      { class: "pane", testid: t("pane") },
      this.title,
      h(
        "dl",
        { class: "numbers" },
        h("div", {}, h("dt", {}, "TTFT (ms)"), h("dd", {}, n.ttft)),
        h("div", {}, h("dt", {}, "tokens/s"), h("dd", {}, n.tps)),
        h("div", {}, h("dt", {}, "prompt tokens"), h("dd", {}, n.prompt)),
        h("div", {}, h("dt", {}, "completion tokens"), h("dd", {}, n.completion)),
        h("div", {}, h("dt", {}, "finish"), h("dd", {}, n.finish)),
      ),
      this.reasoning,
      this.output,
      this.state,
    );
  }

  reset(model) {
    this.title.textContent = model;
    this.text.data = "";
    this.reasoning.textContent = "";
    this.reasoning.hidden = true;
    this.output.classList.remove("failed");
    for (const el of Object.values(this.numbers)) el.textContent = "—";
    this.numbers.finish.textContent = "";
    this.state.textContent = "Waiting for the first token…";
  }

  append(piece) {
    this.text.appendData(piece);
    this.output.scrollTop = this.output.scrollHeight;
  }

  /** Stream `body` to /v1/chat/completions into this pane; answers when the stream ends. */
  async run(body, signal) {
    this.reset(body.model);
    const start = performance.now();
    let first = null;
    let usage = null;
    let finish = null;
    try {
      const res = await request("/v1/chat/completions", { method: "POST", json: body, signal });
      await readSSE(res.body, (data) => {
        let chunk;
        try {
          chunk = JSON.parse(data);
        } catch {
          return;
        }
        if (chunk.error) {
          const e = chunk.error;
          throw new ApiError(e.code || 500, e.message || "the stream failed", e.type, e.param);
        }
        for (const choice of chunk.choices || []) {
          const delta = choice.delta || {};
          const thought = delta.reasoning_content ?? delta.reasoning;
          if (thought) {
            first ??= performance.now();
            this.reasoning.hidden = false;
            this.reasoning.append(thought);
          }
          if (delta.content) {
            if (first === null) {
              first = performance.now();
              this.numbers.ttft.textContent = String(Math.round(first - start));
              this.state.textContent = "Streaming…";
            }
            this.append(delta.content);
          }
          if (choice.finish_reason) finish = choice.finish_reason;
        }
        if (chunk.usage) usage = chunk.usage;
      });
      const end = performance.now();
      if (first !== null) this.numbers.ttft.textContent = String(Math.round(first - start));
      if (usage) {
        this.numbers.prompt.textContent = num(usage.prompt_tokens);
        this.numbers.completion.textContent = num(usage.completion_tokens);
        // decode speed: the tokens after the first over the time after the first
        const tokens = usage.completion_tokens || 0;
        const seconds = first !== null && tokens > 1 ? (end - first) / 1000 : (end - start) / 1000;
        const counted = first !== null && tokens > 1 ? tokens - 1 : tokens;
        if (seconds > 0) this.numbers.tps.textContent = (counted / seconds).toFixed(1);
      }
      this.state.textContent = `Done in ${((end - start) / 1000).toFixed(2)} s.`;
      this.numbers.finish.textContent = finish || "done"; // last: a test waits for it, then reads the numbers
    } catch (err) {
      if (err.name === "AbortError") {
        this.state.textContent = "Stopped.";
        this.numbers.finish.textContent = "stopped";
        return;
      }
      this.numbers.finish.textContent = "error";
      this.output.classList.add("failed");
      this.state.textContent = `Failed: ${err.message}`;
      showError(err, body.model);
    }
  }
}

export class PlaygroundView {
  constructor(panel, store) {
    this.panel = panel;
    this.store = store;
    this.images = []; // data URLs
    this.controller = null;
    this.poller = new Poller(() => store.refresh(), 5000); // deployments that come up or go meanwhile
    this.build();
    this.unsubscribe = store.subscribe(() => this.fillModels());
  }

  build() {
    const input = (id, attrs = {}) => h("input", { id, testid: id, ...attrs });
    this.model = h("select", { id: "playground-model", testid: "playground-model", onchange: () => this.showTasks() });
    this.modelB = h("select", { id: "playground-model-b", testid: "playground-model-b" });
    this.compare = input("playground-compare", { type: "checkbox", onchange: () => this.showCompare() });
    this.noModels = h(
      "p",
      { class: "empty", testid: "playground-empty", hidden: true },
      "No running deployment serves chat, speech, transcription or images: deploy one on the Deployments tab.",
    );
    this.taskNote = h("p", { class: "help", testid: "playground-tasks" }, "");
    this.compareField = field("Second model", this.modelB, "chat deployments; the message goes to both at once");

    // chat
    this.system = h("textarea", {
      id: "playground-system",
      testid: "playground-system",
      rows: 2,
      placeholder: "You are a helpful assistant.",
    });
    this.temperature = input("playground-temperature", { type: "number", min: 0, max: 2, step: 0.1, value: "0.7" });
    this.maxTokens = input("playground-max-tokens", { type: "number", min: 1, step: 1, value: "512" });
    this.schema = h("textarea", {
      id: "playground-schema",
      testid: "playground-schema",
      rows: 3,
      class: "mono",
      spellcheck: "false",
      placeholder: '{"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}',
    });
    this.message = h("textarea", {
      id: "playground-input",
      testid: "playground-input",
      rows: 4,
      placeholder: "Ask something…",
      onkeydown: (e) => {
        if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
          e.preventDefault();
          this.chatForm.requestSubmit();
        }
      },
    });
    this.imageInput = input("playground-image", {
      type: "file",
      accept: "image/*",
      multiple: true,
      onchange: guard(() => this.readImages(), "Images"),
    });
    this.thumbs = h("div", { class: "thumbs", testid: "playground-image-previews" });
    this.imageField = h(
      "div",
      { hidden: true, testid: "playground-image-field" },
      field("Images", this.imageInput, "sent as image_url parts (data URLs); this model reads images"),
      this.thumbs,
    );
    this.send = h("button", { type: "submit", class: "primary", testid: "playground-send" }, "Send");
    this.stop = h(
      "button",
      {
        type: "button",
        class: "secondary",
        testid: "playground-stop",
        disabled: true,
        onclick: () => this.controller?.abort(),
      },
      "Stop",
    );
    this.paneA = new OutputPane("", "—");
    this.paneB = new OutputPane("-b", "—");
    this.paneB.el.hidden = true;
    this.chatForm = h(
      "form",
      {
        class: "card",
        testid: "playground-chat",
        "aria-labelledby": "playground-chat-title",
        novalidate: true,
        onsubmit: (e) => {
          e.preventDefault();
          guard(() => this.sendChat(), "Chat")();
        },
      },
      h("h3", { id: "playground-chat-title" }, "Chat"),
      h(
        "div",
        { class: "grid" },
        field("System prompt", this.system),
        field("Temperature", this.temperature, "0 to 2"),
        field("Max tokens", this.maxTokens),
        field(
          "JSON schema (optional)",
          this.schema,
          "sent as response_format json_schema: the answer is JSON of this shape",
        ),
      ),
      this.imageField,
      field("Message", this.message, "Ctrl+Enter sends"),
      h("div", { class: "actions" }, this.send, this.stop),
      h("div", { class: "panes" }, this.paneA.el, this.paneB.el),
    );

    this.panel.append(
      h("h2", {}, "Playground"),
      h(
        "div",
        { class: "card grid", testid: "playground-models" },
        field("Model", this.model, "running deployments serving chat, speech, transcription or images"),
        (this.compareBox = h(
          "div",
          {},
          field("Compare with a second model", this.compare, null, { inline: true }),
          this.compareField,
        )),
      ),
      this.taskNote,
      this.noModels,
      this.chatForm,
      this.buildSpeech(),
      this.buildTranscription(),
      this.buildImages(),
    );
    this.compareField.hidden = true;
    this.showTasks();
  }

  activate() {
    this.poller.start();
  }

  deactivate() {
    this.poller.stop();
  }

  destroy() {
    this.poller.stop();
    this.unsubscribe();
    this.controller?.abort();
    this.stopRecording(true);
  }

  fillModels() {
    const usable = this.store.list.filter(
      (d) => d.state === "running" && TASKS.some((t) => (d.tasks || []).includes(t)),
    );
    const changed = setOptions(
      this.model,
      usable.map((d) => ({ value: d.name })),
    );
    setOptions(
      this.modelB,
      this.store.serving("chat").map((d) => ({ value: d.name })),
    );
    this.noModels.hidden = usable.length > 0;
    if (changed || !this.shown) this.showTasks();
  }

  current() {
    return this.store.get(this.model.value);
  }

  /** Show the forms of the tasks the chosen deployment serves. */
  showTasks() {
    const d = this.current();
    this.shown = d ? d.name : null;
    const tasks = d ? d.tasks || [] : [];
    const chat = tasks.includes("chat");
    this.chatForm.hidden = !chat;
    this.speechForm.hidden = !tasks.includes("speech");
    this.transcriptionForm.hidden = !tasks.includes("transcription");
    this.imagesForm.hidden = !tasks.includes("image");
    const images = chat && (d.input_modalities || []).includes("image");
    this.imageField.hidden = !images;
    this.compareBox.hidden = !chat;
    if (!images) this.clearImages();
    this.taskNote.textContent = d
      ? `${d.name} serves ${tasks.join(", ") || "nothing"}; reads ${(d.input_modalities || ["text"]).join(", ")}.`
      : "";
  }

  showCompare() {
    this.compareField.hidden = !this.compare.checked;
    this.paneB.el.hidden = !this.compare.checked;
  }

  // ---- chat ----

  async readImages() {
    const files = [...this.imageInput.files];
    this.images = await Promise.all(
      files.map(
        (f) =>
          new Promise((resolve, reject) => {
            const reader = new FileReader();
            reader.onload = () => resolve(reader.result);
            reader.onerror = () => reject(reader.error || new Error(`cannot read ${f.name}`));
            reader.readAsDataURL(f);
          }),
      ),
    );
    this.thumbs.replaceChildren(
      ...this.images.map((url, i) =>
        h("img", { src: url, alt: files[i].name, testid: `playground-image-preview-${i}` }),
      ),
    );
  }

  clearImages() {
    this.images = [];
    this.imageInput.value = "";
    this.thumbs.replaceChildren();
  }

  /** The request body for `model`, or null after showing what is wrong in the form. */
  chatBody(model) {
    const text = this.message.value.trim();
    const messages = [];
    if (this.system.value.trim()) messages.push({ role: "system", content: this.system.value.trim() });
    const content = this.images.length
      ? [{ type: "text", text }, ...this.images.map((url) => ({ type: "image_url", image_url: { url } }))]
      : text;
    messages.push({ role: "user", content });
    const body = { model, messages, stream: true, stream_options: { include_usage: true } };
    if (this.temperature.value !== "") body.temperature = Number(this.temperature.value);
    if (this.maxTokens.value !== "") body.max_tokens = Number(this.maxTokens.value);
    const schemaText = this.schema.value.trim();
    if (schemaText) {
      const schema = JSON.parse(schemaText);
      const named = schema && typeof schema.schema === "object" && typeof schema.name === "string";
      body.response_format = { type: "json_schema", json_schema: named ? schema : { name: "response", schema } };
    }
    return body;
  }

  async sendChat() {
    clearFieldErrors(this.chatForm);
    const models = [this.model.value];
    if (this.compare.checked) models.push(this.modelB.value);
    if (!models[0]) return showStatus("Choose a model first.", "error");
    if (models.length > 1 && !models[1]) return setFieldError("playground-model-b", "Choose the second model.");
    if (!this.message.value.trim() && !this.images.length) return setFieldError("playground-input", "Write a message.");
    const temp = Number(this.temperature.value);
    if (this.temperature.value !== "" && !(temp >= 0 && temp <= 2))
      return setFieldError("playground-temperature", "Between 0 and 2.");
    const maxTokens = Number(this.maxTokens.value);
    if (this.maxTokens.value !== "" && !(Number.isInteger(maxTokens) && maxTokens >= 1))
      return setFieldError("playground-max-tokens", "A whole number of at least 1.");
    let bodies;
    try {
      bodies = models.map((m) => this.chatBody(m));
    } catch (err) {
      return setFieldError("playground-schema", `Not JSON: ${err.message}`);
    }
    this.controller = new AbortController();
    this.send.disabled = true;
    this.stop.disabled = false;
    try {
      const panes = [this.paneA, this.paneB];
      await Promise.all(bodies.map((b, i) => panes[i].run(b, this.controller.signal)));
    } finally {
      this.send.disabled = false;
      this.stop.disabled = true;
      this.controller = null;
    }
  }

  // ---- speech ----

  buildSpeech() {
    this.speechText = h("textarea", {
      id: "speech-input",
      testid: "speech-input",
      rows: 3,
      placeholder: "Text to speak",
    });
    this.voice = h("input", { id: "speech-voice", testid: "speech-voice", placeholder: "(the deployment's default)" });
    this.speechFormat = h(
      "select",
      { id: "speech-format", testid: "speech-format", value: "wav" },
      ["wav", "mp3", "opus", "flac"].map((f) => h("option", { value: f }, f)),
    );
    this.audio = h("audio", { controls: true, testid: "speech-audio", hidden: true });
    this.speechForm = h(
      "form",
      {
        class: "card",
        testid: "speech-form",
        "aria-labelledby": "speech-title",
        novalidate: true,
        hidden: true,
        onsubmit: (e) => {
          e.preventDefault();
          guard(() => this.speak(e.submitter), "Speech")();
        },
      },
      h("h3", { id: "speech-title" }, "Speech"),
      h(
        "div",
        { class: "grid" },
        field("Text", this.speechText),
        field("Voice", this.voice, "a voice name; empty for the default"),
        field("Format", this.speechFormat),
      ),
      h(
        "div",
        { class: "actions" },
        h("button", { type: "submit", class: "primary", testid: "speech-submit" }, "Speak"),
      ),
      this.audio,
    );
    return this.speechForm;
  }

  async speak(button) {
    clearFieldErrors(this.speechForm);
    const input = this.speechText.value.trim();
    if (!input) return setFieldError("speech-input", "Write something to speak.");
    const body = { model: this.model.value, input, response_format: this.speechFormat.value };
    if (this.voice.value.trim()) body.voice = this.voice.value.trim();
    if (button) button.disabled = true;
    try {
      const res = await request("/v1/audio/speech", { method: "POST", json: body });
      const blob = await res.blob();
      if (this.audio.src) URL.revokeObjectURL(this.audio.src);
      this.audio.src = URL.createObjectURL(blob);
      this.audio.hidden = false;
      showStatus(`Speech: ${(blob.size / 1024).toFixed(1)} KiB of ${this.speechFormat.value}.`);
      await this.audio.play().catch(() => {}); // a browser may refuse to play without a gesture; the controls stay
    } finally {
      if (button) button.disabled = false;
    }
  }

  // ---- transcription ----

  buildTranscription() {
    this.audioFile = h("input", {
      id: "transcription-file",
      testid: "transcription-file",
      type: "file",
      accept: "audio/*",
    });
    this.language = h("input", {
      id: "transcription-language",
      testid: "transcription-language",
      placeholder: "en",
      size: 4,
    });
    const canRecord = typeof MediaRecorder !== "undefined" && navigator.mediaDevices?.getUserMedia;
    this.recordButton = h(
      "button",
      {
        type: "button",
        class: "secondary",
        testid: "transcription-record",
        "aria-pressed": "false",
        hidden: !canRecord,
        onclick: guard(() => this.toggleRecording(), "Recording"),
      },
      "Record",
    );
    this.transcript = h("pre", {
      class: "output",
      testid: "transcription-output",
      role: "region",
      tabindex: "0",
      "aria-label": "Transcript",
    });
    this.transcriptInfo = h("p", { class: "help", testid: "transcription-info", role: "status" });
    this.transcriptionForm = h(
      "form",
      {
        class: "card",
        testid: "transcription-form",
        "aria-labelledby": "transcription-title",
        novalidate: true,
        hidden: true,
        onsubmit: (e) => {
          e.preventDefault();
          guard(() => this.transcribeFile(), "Transcription")();
        },
      },
      h("h3", { id: "transcription-title" }, "Transcription"),
      h(
        "div",
        { class: "grid" },
        field("Audio file", this.audioFile, "wav, mp3, flac, ogg, m4a or webm"),
        field("Language (optional)", this.language, "ISO 639-1 code"),
      ),
      h(
        "div",
        { class: "actions" },
        h("button", { type: "submit", class: "primary", testid: "transcription-submit" }, "Transcribe"),
        this.recordButton,
        canRecord
          ? null
          : h(
              "span",
              { class: "help" },
              "Recording needs a browser with MediaRecorder and a secure page (https or localhost).",
            ),
      ),
      this.transcriptInfo,
      this.transcript,
    );
    return this.transcriptionForm;
  }

  async transcribeFile() {
    clearFieldErrors(this.transcriptionForm);
    const file = this.audioFile.files[0];
    if (!file) return setFieldError("transcription-file", "Choose an audio file, or record.");
    await this.transcribe(file, file.name);
  }

  async transcribe(blob, filename) {
    const form = new FormData();
    form.append("file", blob, filename);
    form.append("model", this.model.value);
    form.append("response_format", "verbose_json");
    if (this.language.value.trim()) form.append("language", this.language.value.trim());
    this.transcriptInfo.textContent = "Transcribing…";
    this.transcript.textContent = "";
    try {
      const res = await request("/v1/audio/transcriptions", { method: "POST", form });
      const out = await res.json();
      this.transcript.textContent = out.text ?? "";
      const bits = [
        out.language && `language ${out.language}`,
        out.duration != null && `${num(out.duration)} s of audio`,
        out.segments && `${out.segments.length} segments`,
      ];
      this.transcriptInfo.textContent = bits.filter(Boolean).join(", ") || "Done.";
    } catch (err) {
      this.transcriptInfo.textContent = `Failed: ${err.message}`;
      throw err;
    }
  }

  async toggleRecording() {
    if (this.recorder) return this.stopRecording(false);
    const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    const chunks = [];
    const recorder = new MediaRecorder(stream);
    recorder.ondataavailable = (e) => e.data.size && chunks.push(e.data);
    recorder.onstop = () => {
      for (const track of stream.getTracks()) track.stop();
      if (recorder.discard) return;
      const type = recorder.mimeType || "audio/webm";
      const ext = type.includes("ogg") ? "ogg" : type.includes("mp4") ? "m4a" : "webm";
      guard(() => this.transcribe(new Blob(chunks, { type }), `recording.${ext}`), "Transcription")();
    };
    recorder.start();
    this.recorder = recorder;
    this.recordButton.textContent = "Stop recording";
    this.recordButton.setAttribute("aria-pressed", "true");
    this.transcriptInfo.textContent = "Recording… press Stop recording to transcribe.";
  }

  stopRecording(discard) {
    const recorder = this.recorder;
    if (!recorder) return;
    this.recorder = null;
    recorder.discard = discard;
    if (recorder.state !== "inactive") recorder.stop();
    this.recordButton.textContent = "Record";
    this.recordButton.setAttribute("aria-pressed", "false");
  }

  // ---- image generation ----

  buildImages() {
    this.imagePrompt = h("textarea", {
      id: "image-prompt",
      testid: "image-prompt",
      rows: 2,
      placeholder: "a lighthouse at dusk, watercolour",
    });
    this.imageSize = h(
      "select",
      { id: "image-size", testid: "image-size", value: "512x512" },
      ["256x256", "512x512", "768x768", "1024x1024"].map((s) => h("option", { value: s }, s)),
    );
    this.generated = h("div", { class: "generated", testid: "image-output" });
    this.imagesForm = h(
      "form",
      {
        class: "card",
        testid: "image-form",
        "aria-labelledby": "image-title",
        novalidate: true,
        hidden: true,
        onsubmit: (e) => {
          e.preventDefault();
          guard(() => this.generate(e.submitter), "Image generation")();
        },
      },
      h("h3", { id: "image-title" }, "Image generation"),
      h("div", { class: "grid" }, field("Prompt", this.imagePrompt), field("Size", this.imageSize)),
      h(
        "div",
        { class: "actions" },
        h("button", { type: "submit", class: "primary", testid: "image-submit" }, "Generate"),
      ),
      this.generated,
    );
    return this.imagesForm;
  }

  async generate(button) {
    clearFieldErrors(this.imagesForm);
    const prompt = this.imagePrompt.value.trim();
    if (!prompt) return setFieldError("image-prompt", "Describe the image.");
    if (button) button.disabled = true;
    showStatus("Generating the image…");
    try {
      const out = await postJSON("/v1/images/generations", {
        model: this.model.value,
        prompt,
        size: this.imageSize.value,
        n: 1,
        response_format: "b64_json",
      });
      this.generated.replaceChildren(
        ...(out.data || []).map((img, i) =>
          h("img", {
            src: img.b64_json ? `data:image/png;base64,${img.b64_json}` : img.url,
            alt: img.revised_prompt || prompt,
            testid: `image-output-${i}`,
          }),
        ),
      );
      showStatus("Image generated.");
    } finally {
      if (button) button.disabled = false;
    }
  }
}
