// The reader's speaker list: rename a speaker everywhere in the transcript, or save
// the voice as an enrolled profile so later recordings name it automatically.

import { getJson, jobPath } from "./api.js";
import { announce, clearError, el } from "./util.js";

export class SpeakerPanel {
  constructor(reader) {
    this.reader = reader;
    this.list = document.getElementById("speakers");
  }

  render() {
    const reader = this.reader;
    const ids = reader.speakerIds();
    this.list.hidden = ids.length === 0;
    this.list.replaceChildren(...ids.map((id) => this.item(id)));
  }

  item(id) {
    const reader = this.reader;
    const speaker = reader.transcript.speakers.find((s) => s.id === id) || { id };
    const label = speaker.name || id;
    const swatch = el("span", { class: "swatch", "aria-hidden": "true" });
    swatch.style.setProperty("--c", reader.colourOf(id));
    const item = el("li", { "data-speaker": id },
      swatch,
      el("span", { class: "speaker-name" }, label),
      speaker.name ? el("span", { class: "help" }, `(${id})`) : null,
      speaker.profile_id ? el("span", { class: "badge completed" }, "enrolled voice") : null,
      el("button", { type: "button", class: "secondary small", "data-action": "rename",
        "aria-label": `Rename ${label}`, onclick: () => this.form(item, speaker, "rename") },
      "Rename"),
      el("button", { type: "button", class: "secondary small", "data-action": "enroll",
        "aria-label": `Save the voice of ${label} as a profile`,
        onclick: () => this.form(item, speaker, "enroll") }, "Save voice"));
    return item;
  }

  form(item, speaker, mode) {
    const id = speaker.id;
    const inputId = `speaker-${mode}-${id}`;
    const input = el("input", { id: inputId, value: speaker.name || "", maxlength: "200",
      autocomplete: "off", required: mode === "enroll" });
    const text = mode === "rename" ? `Name for ${id}` : `Save the voice of ${id} as`;
    const submit = mode === "rename" ? "Save name" : "Save voice profile";
    const form = el("form", { class: "speaker-form" },
      el("label", { for: inputId }, text), input,
      el("button", { type: "submit", class: "small" }, submit),
      el("button", { type: "button", class: "secondary small",
        onclick: () => this.render() }, "Cancel"));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const name = input.value.trim();
      if (mode === "rename") await this.rename(id, name);
      else if (name) await this.enroll(id, name, form);
    });
    item.replaceChildren(form);
    input.focus();
    input.select();
  }

  async rename(id, name) {
    const ok = await this.reader.save({ speakers: { [id]: name || null } },
      name ? `${id} is now “${name}”` : `${id} has its original name again`);
    if (ok) this.list.querySelector(`li[data-speaker="${CSS.escape(id)}"] button`)?.focus();
  }

  async enroll(id, name, form) {
    const reader = this.reader;
    for (const control of form.elements) control.disabled = true;
    announce(`Saving the voice of ${id}…`);
    const action = `enroll:${reader.jobId}:${id}`;
    try {
      const answer = await getJson(jobPath(reader.jobId, `/speakers/${encodeURIComponent(id)}/enroll`),
        { method: "POST", json: { name } });
      reader.update(answer.transcript);
      clearError(action);
      announce(`Voice saved as “${answer.speaker.name}”; new recordings with this voice will be `
        + "named when “Name enrolled voices” is on");
    } catch (error) {
      await reader.recover(error, action);
    }
  }
}
