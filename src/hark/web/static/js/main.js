// The page: wires the parts together and keeps the open transcript in the URL
// (#/jobs/<id>, optionally ?segment=<id>&t=<seconds>), so a reload or a shared link
// comes back to the same place.

import {
  ApiError, getJson, getKey, resetPassword, resume, setKey, setUp, signIn, signOut, signedIn,
} from "./api.js";
import { Jobs, LOAD_JOBS } from "./jobs.js";
import { Live } from "./live.js";
import { Organisation } from "./organisation.js";
import { Reader } from "./reader.js";
import { Search } from "./search.js";
import { announce, clearError, showError } from "./util.js";

const reader = new Reader({ onClose: () => go(null) });
const jobs = new Jobs({ onOpen: (id) => go(id) });
new Live();
const organisation = new Organisation();
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
  const reset = /^#\/reset\/([\w-]+)$/.exec(location.hash);
  showReset(reset ? reset[1] : null);
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
    clearError(`open:${id}`);
  } catch (error) {
    showError(error, `open:${id}`);
  }
}

function showKeyState() {
  document.getElementById("key-state").textContent = getKey() ? "saved" : "not set";
  const account = signedIn();
  document.getElementById("signin-state").textContent =
    account ? account.user.email : "signed out";
  document.getElementById("signin-form").hidden = Boolean(account);
  document.getElementById("signed-in").hidden = !account;
  if (account) {
    document.getElementById("signin-who").textContent = account.user.email;
    document.getElementById("signin-role").textContent = account.role;
    document.getElementById("signin-org").textContent = account.organisation;
  }
}

let resetToken = null;

function showReset(token) {
  resetToken = token;
  document.getElementById("reset-form").hidden = !token;
  if (token) {
    document.getElementById("signin-panel").open = true;
    document.getElementById("reset-password").focus();
  }
}

// Offer single sign-on where the server has a provider.
async function showProviders() {
  try {
    const answer = await fetch("/api/v1/auth/providers");
    const body = answer.ok ? await answer.json() : {};
    document.getElementById("signin-sso").hidden = !body.oidc;
    document.getElementById("setup-form").hidden = !body.setup;
    if (body.setup) document.getElementById("signin-panel").open = true;
  } catch {
    // Without the list, the password form is still there.
  }
}

async function start() {
  if (!signedIn()) await resume(); // a sign-in kept by the refresh cookie
  showKeyState();
  try {
    await jobs.load();
  } catch (error) {
    organisation.hide();
    if (error instanceof ApiError && error.status === 401) {
      document.getElementById("signin-panel").open = true;
      showError(signedIn() || getKey() ? `${error.message}: sign in again.`
        : "This server needs you to sign in (or an API key, below).", LOAD_JOBS);
      document.getElementById("signin-email").focus();
      route();
      return;
    }
    showError(error, LOAD_JOBS);
    return;
  }
  route();
  loadModels();
  organisation.load();
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
document.getElementById("signin-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const email = document.getElementById("signin-email");
  const password = document.getElementById("signin-password");
  try {
    await signIn(email.value.trim(), password.value);
  } catch (error) {
    showError(error, "sign-in");
    return;
  } finally {
    password.value = "";
  }
  document.getElementById("signin-panel").open = false;
  clearError("sign-in");
  announce(`Signed in as ${signedIn().user.email}`);
  await start();
});
document.getElementById("setup-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const password = document.getElementById("setup-password");
  try {
    await setUp(document.getElementById("setup-email").value.trim(), password.value);
  } catch (error) {
    showError(error, "set-up");
    return;
  } finally {
    password.value = "";
  }
  document.getElementById("setup-form").hidden = true;
  document.getElementById("signin-panel").open = false;
  clearError("set-up");
  announce(`Owner account made; signed in as ${signedIn().user.email}`);
  await start();
});
document.getElementById("signout").addEventListener("click", async () => {
  try {
    await signOut();
    clearError("sign-out");
  } catch (error) {
    showError(error, "sign-out");
  }
  showKeyState();
  announce("Signed out");
  await start();
});
document.getElementById("reset-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const password = document.getElementById("reset-password");
  try {
    await resetPassword(resetToken, password.value);
  } catch (error) {
    showError(error, "reset-password");
    return;
  } finally {
    password.value = "";
  }
  clearError("reset-password");
  announce("Password set: sign in with it");
  go(null);
  document.getElementById("signin-email").focus();
});
window.addEventListener("hashchange", route);
showProviders();
start();
