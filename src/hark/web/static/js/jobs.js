// Uploading recordings and the live job list.

import {
  ApiError, TERMINAL, TenantFeed, getJson, jobPath, request, uploadFile, watchJob,
} from "./api.js";
import { announce, armedButton, clearError, el, formatDuration, showError } from "./util.js";

const PAGE = 100;
// What failed, for errors that a later success of the same answers (see showError).
export const LOAD_JOBS = "load-jobs";
const FEED = "job-feed";
const CHOOSE = "choose-recordings";

export class Jobs {
  constructor({ onOpen }) {
    this.onOpen = onOpen;
    this.jobs = new Map();       // id -> job, as last heard
    this.order = [];             // ids, newest first
    this.watchers = new Map();   // id -> {close()}
    // Jobs created or purged anywhere (API, CLI, OpenAI endpoint, another tab).
    this.feed = new TenantFeed({
      onEvent: (event) => this.onFeedEvent(event),
      onMissed: () => this.load().catch((error) => showError(error, LOAD_JOBS)),
      onStopped: (reason) => showError(`Live updates stopped: ${reason}`, FEED),
      onListening: () => clearError(FEED),
    });
    this.reading = new Set();    // feed events heard while a list read is in flight
    this.loads = 0;
    this.cursor = null;
    this.openId = null;
    this.list = document.getElementById("jobs");
    this.empty = document.getElementById("jobs-empty");
    this.more = document.getElementById("jobs-more");
    this.statusFilter = document.getElementById("job-status");
    this.nameFilter = document.getElementById("job-filter");
    this.statusFilter.addEventListener("change", () => this.load());
    this.nameFilter.addEventListener("input", () => this.render());
    this.more.addEventListener("click", () => this.load({ append: true }));
    document.getElementById("jobs-refresh").addEventListener("click", () => this.load());
    this.setUpUpload();
  }

  // --- the list -------------------------------------------------------------------------

  async load({ append = false } = {}) {
    // Listening before reading: a job created meanwhile is in the page or is heard.
    if (!append) await this.feed.listen();
    const turn = ++this.loads;
    const params = new URLSearchParams({ limit: String(PAGE) });
    if (this.statusFilter.value) params.set("status", this.statusFilter.value);
    if (append && this.cursor) params.set("cursor", this.cursor);
    const heard = [];
    this.reading.add(heard);
    let page;
    try {
      page = await getJson(`/api/v1/jobs?${params}`);
    } finally {
      this.reading.delete(heard);
    }
    if (turn !== this.loads) return page; // a newer read (filter, refresh) took over
    if (!append) {
      this.order = [];
      this.jobs.clear();
    }
    // Purged jobs stay in the API's list, but the page deleted them.
    for (const job of page.items) if (!job.purged) this.remember(job, { append: true });
    // The page may have been read before what was heard meanwhile happened.
    for (const event of heard) this.applyFeedEvent(event);
    for (const id of [...this.watchers.keys()]) {
      if (!this.jobs.has(id)) this.unwatch(id);
    }
    this.cursor = page.next_cursor;
    this.more.hidden = !this.cursor;
    this.render();
    clearError(LOAD_JOBS);
    return page;
  }

  remember(job, { append = false } = {}) {
    // Already known: both the feed and the upload's answer bring a new job, and the
    // later of them must not undo what the job's live events said since.
    if (this.jobs.has(job.id)) return;
    if (append) this.order.push(job.id);
    else this.order.unshift(job.id);
    this.jobs.set(job.id, job);
    if (!TERMINAL.has(job.status)) this.watch(job.id);
  }

  forget(id) {
    if (!this.jobs.has(id)) return;
    this.unwatch(id);
    this.jobs.delete(id);
    this.order = this.order.filter((known) => known !== id);
    this.renderJob(id);
    if (!this.list.children.length) this.render(); // for the empty list's note
    if (this.openId === id) this.onOpen(null);
  }

  // --- the feed ---------------------------------------------------------------------------

  onFeedEvent(event) {
    for (const heard of this.reading) heard.push(event);
    this.applyFeedEvent(event);
  }

  applyFeedEvent(event) {
    if (event.type === "created" && event.job) {
      if (this.jobs.has(event.job_id)) return;
      // Kept even when the filters hide it now: it shows once it matches them.
      this.remember(event.job);
      this.renderJob(event.job_id);
    } else if (event.type === "purged") {
      this.forget(event.job_id);
    }
  }

  watch(id) {
    if (this.watchers.has(id)) return;
    const watcher = watchJob(id, (event) => this.onEvent(id, event), (code, reason) => {
      this.watchers.delete(id);
      if (code === 4401) showError(`Live updates refused: ${reason || "an API key is needed"}`);
    });
    this.watchers.set(id, watcher);
  }

  onEvent(id, event) {
    const job = this.jobs.get(id);
    if (!job) return;
    if (event.type === "status" || event.type === "progress") {
      if (event.status) job.status = event.status;
      if (event.type === "progress") job.status = "running";
      if ("stage" in event) job.stage = event.stage;
      if (typeof event.progress === "number") job.progress = event.progress;
    } else if (event.type === "completed") {
      Object.assign(job, { status: "completed", progress: 1, stage: "done" });
      if (event.duration !== undefined) job.duration = event.duration;
      if (event.model) job.model = event.model;
      if (event.language) job.language = event.language;
      announce(`${job.filename}: transcript ready`);
    } else if (event.type === "failed") {
      Object.assign(job, { status: "failed", error: event.error });
      announce(`${job.filename}: failed`);
    } else if (event.type === "canceled") {
      job.status = "canceled";
    } else {
      return; // segments: the reader fetches the whole transcript when it is done
    }
    if (TERMINAL.has(job.status)) this.unwatch(id);
    this.renderJob(id);
  }

  unwatch(id) {
    const watcher = this.watchers.get(id);
    if (watcher) watcher.close();
    this.watchers.delete(id);
  }

  visible(job) {
    const wanted = this.nameFilter.value.trim().toLowerCase();
    const status = this.statusFilter.value;
    return (!wanted || job.filename.toLowerCase().includes(wanted))
      && (!status || job.status === status);
  }

  render() {
    const items = this.order.map((id) => this.jobs.get(id)).filter((job) => this.visible(job));
    this.list.replaceChildren(...items.map((job) => this.jobItem(job)));
    this.empty.hidden = items.length > 0;
    this.empty.textContent = this.jobs.size ? "No job matches." : "No jobs yet.";
  }

  renderJob(id) {
    const old = this.list.querySelector(`li[data-id="${CSS.escape(id)}"]`);
    const job = this.jobs.get(id);
    if (!job || !this.visible(job)) {
      if (old) old.remove();
      return;
    }
    const fresh = this.jobItem(job);
    if (old) {
      // Keep keyboard focus on the same action across the re-render.
      const focused = old.contains(document.activeElement) ? document.activeElement.dataset.action : null;
      old.replaceWith(fresh);
      if (focused) fresh.querySelector(`[data-action="${focused}"]`)?.focus();
    } else {
      // Newly shown (created elsewhere, or now matching the filters): put in its place
      // rather than redrawing the list, which would lose the keyboard focus.
      const position = this.order.indexOf(id);
      const next = [...this.list.children]
        .find((item) => this.order.indexOf(item.dataset.id) > position);
      this.list.insertBefore(fresh, next || null);
      this.empty.hidden = true;
    }
  }

  setOpen(id) {
    this.openId = id;
    for (const item of this.list.querySelectorAll("li.job")) {
      item.classList.toggle("open", item.dataset.id === id);
    }
  }

  jobItem(job) {
    const running = job.status === "running";
    const percent = Math.round((job.progress || 0) * 100);
    const stage = running ? `${job.stage || "starting"} · ${percent}%` : "";
    const meta = [formatDuration(job.duration), job.model, job.language,
      new Date(job.created_at).toLocaleString()]
      .filter(Boolean).join(" · ");
    const actions = el("div", { class: "job-actions" });
    if (job.status === "completed" && !job.purged) {
      actions.append(el("button", { type: "button", class: "small", "data-action": "open",
        "aria-label": `Open transcript of ${job.filename}`, onclick: () => this.onOpen(job.id) },
      "Open"));
    }
    if (!TERMINAL.has(job.status)) {
      actions.append(el("button", { type: "button", class: "secondary small", "data-action": "cancel",
        "aria-label": `Cancel ${job.filename}`, onclick: () => this.cancel(job) }, "Cancel"));
    }
    if (job.status === "failed" || job.status === "canceled") {
      actions.append(el("button", { type: "button", class: "secondary small", "data-action": "retry",
        "aria-label": `Retry ${job.filename}`, onclick: () => this.retry(job) }, "Retry"));
    }
    if (!job.purged) {
      const remove = el("button", { type: "button", class: "danger small", "data-action": "delete",
        "aria-label": `Delete ${job.filename} and its recording` }, "Delete");
      armedButton(remove, "Confirm delete", () => this.purge(job));
      actions.append(remove);
    }
    const error = job.status === "failed" && job.error
      ? el("p", { class: "error-text" }, job.error.error || "failed") : null;
    return el("li", { class: `job${job.id === this.openId ? " open" : ""}`, "data-id": job.id,
      "data-status": job.status },
    el("div", { class: "job-main" },
      el("span", { class: "job-name" }, job.filename),
      el("span", { class: `badge ${job.status}` }, job.status)),
    meta ? el("div", { class: "job-meta" }, meta) : null,
    running || job.status === "queued"
      ? el("progress", { max: "1", value: String(job.progress || 0),
        "aria-label": `Progress of ${job.filename}` }) : null,
    stage ? el("div", { class: "job-meta" }, stage) : null,
    error,
    actions);
  }

  async cancel(job) {
    try {
      const updated = await getJson(jobPath(job.id), { method: "DELETE" });
      this.jobs.set(job.id, { ...job, ...updated });
      this.unwatch(job.id);
      this.renderJob(job.id);
      clearError(`cancel:${job.id}`);
      announce(`${job.filename}: canceled`);
    } catch (error) {
      showError(error, `cancel:${job.id}`);
    }
  }

  async purge(job) {
    try {
      await request(jobPath(job.id, "?purge=true"), { method: "DELETE" });
      this.forget(job.id);
      clearError(`delete:${job.id}`);
      announce(`${job.filename}: deleted`);
    } catch (error) {
      showError(error, `delete:${job.id}`);
    }
  }

  async retry(job) {
    try {
      const fresh = await getJson(jobPath(job.id, "/retry"), { method: "POST" });
      this.remember(fresh);
      this.render();
      clearError(`retry:${job.id}`);
      announce(`${job.filename}: submitted again`);
    } catch (error) {
      showError(error, `retry:${job.id}`);
    }
  }

  // --- uploads --------------------------------------------------------------------------

  setUpUpload() {
    this.chosen = [];
    const form = document.getElementById("upload-form");
    const input = document.getElementById("files");
    const drop = document.getElementById("drop");
    input.addEventListener("change", () => {
      this.choose([...input.files]);
      input.value = "";
    });
    for (const name of ["dragenter", "dragover"]) {
      drop.addEventListener(name, (event) => {
        event.preventDefault();
        drop.classList.add("over");
      });
    }
    for (const name of ["dragleave", "drop"]) {
      drop.addEventListener(name, () => drop.classList.remove("over"));
    }
    drop.addEventListener("drop", (event) => {
      event.preventDefault();
      this.choose([...event.dataTransfer.files]);
    });
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.uploadAll();
    });
    const diarize = document.getElementById("opt-diarize");
    for (const id of ["opt-identify", "opt-speakers"]) {
      document.getElementById(id).addEventListener("change", (event) => {
        if (event.target.checked || (event.target.type === "number" && event.target.value)) {
          diarize.checked = true;
        }
      });
    }
  }

  choose(files) {
    this.chosen.push(...files);
    this.renderChosen();
  }

  renderChosen() {
    const list = document.getElementById("chosen");
    list.replaceChildren(...this.chosen.map((file, index) => el("li", {},
      el("span", {}, file.name),
      el("button", { type: "button", class: "secondary small", "aria-label": `Remove ${file.name}`,
        onclick: () => { this.chosen.splice(index, 1); this.renderChosen(); } }, "Remove"))));
  }

  options() {
    const fields = {};
    const model = document.getElementById("opt-model").value.trim();
    const language = document.getElementById("opt-language").value.trim();
    const speakers = document.getElementById("opt-speakers").value.trim();
    if (model) fields.model = model;
    if (language) fields.language = language;
    const identify = document.getElementById("opt-identify").checked;
    // Counting and naming speakers both need them told apart first.
    if (document.getElementById("opt-diarize").checked || identify || speakers) {
      fields.diarize = "true";
      if (speakers) fields.num_speakers = speakers;
      if (identify) fields.identify_speakers = "true";
    }
    return fields;
  }

  async uploadAll() {
    if (!this.chosen.length) {
      showError("Choose or drop at least one recording first.", CHOOSE);
      document.getElementById("files").focus();
      return;
    }
    clearError(CHOOSE);
    const files = this.chosen.splice(0);
    this.renderChosen();
    const fields = this.options();
    const list = document.getElementById("uploads");
    // One after another: parallel uploads would only share the same bandwidth.
    for (const file of files) {
      const bar = el("progress", { max: "1", value: "0", "aria-label": `Upload of ${file.name}` });
      const note = el("span", { class: "help" }, "uploading…");
      const item = el("li", {}, el("span", {}, file.name), bar, note);
      list.prepend(item);
      try {
        const job = await uploadFile(file, fields, (fraction) => {
          bar.value = fraction;
          note.textContent = `uploading… ${Math.round(fraction * 100)}%`;
        });
        bar.value = 1;
        item.remove();
        this.remember(job);
        this.render();
        clearError(`upload:${file.name}`);
        announce(`${file.name}: uploaded, job queued`);
      } catch (error) {
        let message = error instanceof ApiError ? error.describe() : String(error);
        if (!message.includes(file.name)) message = `${file.name}: ${message}`;
        note.replaceWith(el("p", { class: "error-text" }, message));
        bar.remove();
        showError(message, `upload:${file.name}`);
      }
    }
  }
}
