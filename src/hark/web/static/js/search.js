// Full-text search across the tenant's transcripts; a result opens the transcript at
// that moment.

import { getJson } from "./api.js";
import { announce, clearError, el, formatTime, showError } from "./util.js";

export class Search {
  constructor({ onPick }) {
    this.onPick = onPick;
    this.form = document.getElementById("search-form");
    this.input = document.getElementById("search-q");
    this.results = document.getElementById("search-results");
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.run();
    });
  }

  async run() {
    const query = this.input.value.trim();
    if (!query) return;
    try {
      const answer = await getJson(`/api/v1/search?${new URLSearchParams({ q: query, limit: "50" })}`);
      this.results.replaceChildren(...answer.items.map((hit) => this.item(hit)));
      clearError("search");
      announce(answer.items.length
        ? `${answer.items.length} ${answer.items.length === 1 ? "match" : "matches"} for “${query}”`
        : `Nothing found for “${query}”`);
    } catch (error) {
      showError(error, "search");
    }
  }

  item(hit) {
    const where = `${hit.filename} · ${formatTime(hit.start)}${hit.speaker ? ` · ${hit.speaker}` : ""}`;
    return el("li", {}, el("button", { type: "button", class: "hit", "data-job": hit.job_id,
      "data-segment": String(hit.segment_id), "data-start": String(hit.start),
      onclick: () => this.onPick(hit) },
    el("span", { class: "hit-where" }, where),
    el("span", { class: "hit-text" }, ...marked(hit.snippet, hit.highlights))));
  }
}

// The snippet as text nodes and <mark> elements, from the server's highlight offsets.
function marked(text, spans) {
  const parts = [];
  let at = 0;
  for (const [start, end] of spans) {
    if (start > at) parts.push(text.slice(at, start));
    parts.push(el("mark", {}, text.slice(start, end)));
    at = end;
  }
  if (at < text.length) parts.push(text.slice(at));
  return parts;
}
