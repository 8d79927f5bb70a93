// The page: wires the parts together and keeps the open transcript in the URL
// (#/jobs/<id>, optionally ?segment=<id>&t=<seconds>), so a reload or a shared link
// comes back to the same place.

import { ApiError, getJson, getKey, setKey } from "./api.js";
import { Jobs } from "./jobs.js";
import { Live } from "./live.js";
import { Reader } from "./reader.js";
import { Search } from "./search.js";
import { announce, hideError, showError } from "./util.js";

const reader = new Reader({ onClose: () => go(null) });
const jobs = new Jobs({ onOpen: (id) => go(id) });
new Live();
new Search({ onPick: (hit) => go(hit.job_id, { segment: hit.segment_id, t: hit.start }) });

function go(jobId, params = {}) {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== null && value !== undefined) query.set(name, String(value));
  }
  const hash = jobId ? `#/jobs/${encodeURIComponent(jobId)}${query.size ? `?${query}` : ""}` : "";
  if (location.hash === hash) route();
  else if (hash) location.hash = hash;
  else {
    history.pushState(null, "", location.pathname + location.search);
    route();
  }
}

let routing = 0;

async function route() {
  const turn = ++routing;
  const match = /^#\/jobs\/([^?]+)(?:\?(.*))?$/.exec(location.hash);
  if (!match) {
    reader.close();
    jobs.setOpen(null);
    return;
  }
  const id = decodeURIComponent(match[1]);
  const params = new URLSearchParams(match[2] || "");
  const segment = params.has("segment") ? Number(params.get("segment")) : null;
  const time = params.has("t") ? Number(params.get("t")) : null;
  try {
    await reader.open(id, { segment, time });
    if (turn !== routing) return; // a newer navigation took over
    jobs.setOpen(id);
    hideError();
  } catch (error) {
    showError(error);
  }
}

function showKeyState() {
  document.getElementById("key-state").textContent = getKey() ? "saved" : "not set";
}

async function start() {
  showKeyState();
  try {
    await jobs.load();
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      const panel = document.getElementById("key-panel");
      panel.open = true;
      showError(getKey() ? `${error.message}: enter another API key above.`
        : "This server needs an API key: enter it above.");
      document.getElementById("api-key").focus();
      return;
    }
    showError(error);
    return;
  }
  route();
  loadModels();
}

// The model names the server knows, when it offers the OpenAI-style model list.
async function loadModels() {
  try {
    const answer = await getJson("/v1/models");
    const list = document.getElementById("model-list");
    const known = new Set([...list.options].map((option) => option.value));
    for (const model of answer.data || []) {
      if (model && model.id && !known.has(model.id)) {
        list.append(new Option(model.id, model.id));
        known.add(model.id);
      }
    }
  } catch {
    // No model list on this server: the field still takes any name.
  }
}

document.getElementById("key-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  setKey(document.getElementById("api-key").value.trim());
  document.getElementById("api-key").value = "";
  showKeyState();
  document.getElementById("key-panel").open = false;
  announce(getKey() ? "API key saved in this browser" : "No API key set");
  await start();
});
document.getElementById("key-forget").addEventListener("click", () => {
  setKey("");
  showKeyState();
  announce("API key removed from this browser");
});
window.addEventListener("hashchange", route);
start();
