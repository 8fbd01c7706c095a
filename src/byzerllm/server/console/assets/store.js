// The deployments list, shared by the tabs: the Deployments tab refreshes it every 2 s, the
// others when they are opened; each view subscribes to re-fill its model selects.

import { getJSON } from "./api.js";

export class DeploymentStore {
  constructor() {
    this.list = [];
    this.loaded = false;
    this.listeners = new Set();
  }

  /** GET /v1/deployments; answers the list ({name, state, tasks, input_modalities, ...} by name). */
  async refresh() {
    const body = await getJSON("/v1/deployments");
    this.list = body.data || [];
    this.loaded = true;
    for (const fn of this.listeners) fn(this.list);
    return this.list;
  }

  subscribe(fn) {
    this.listeners.add(fn);
    if (this.loaded) fn(this.list);
    return () => this.listeners.delete(fn);
  }

  /** Running deployments serving `task` (chat, embed, rerank, speech, transcription, image). */
  serving(task) {
    return this.list.filter((d) => d.state === "running" && (d.tasks || []).includes(task));
  }

  get(name) {
    return this.list.find((d) => d.name === name) || null;
  }
}
