// Talking to Hark's API: the key, JSON requests, uploads with progress, live job events.

const KEY_NAME = "hark.apiKey";
export const TERMINAL = new Set(["completed", "failed", "canceled"]);

export function getKey() {
  try {
    return localStorage.getItem(KEY_NAME) || "";
  } catch {
    return "";
  }
}

export function setKey(value) {
  if (value) localStorage.setItem(KEY_NAME, value);
  else localStorage.removeItem(KEY_NAME);
}

// A signed-in person: the access token lives in memory only; the refresh token is an
// HttpOnly cookie the page never sees, which renews the access token before it expires
// and after a reload.
let account = null;
let renewal = null;

export function signedIn() {
  return account;
}

// What requests authenticate with: the signed-in person, else a saved API key.
export function credential() {
  return account ? account.access_token : getKey();
}

// Who is calling, steady across token renewals (a socket is kept while it holds).
export function identity() {
  return account ? `user:${account.user.id}` : getKey();
}

function adopt(body) {
  account = body;
  clearTimeout(renewal);
  renewal = setTimeout(resume, Math.max(5, body.expires_in - 60) * 1000);
}

async function postAuth(path, json) {
  let response;
  try {
    response = await fetch(`/api/v1/auth/${path}`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(json),
    });
  } catch {
    throw errorFromBody(0, "", null);
  }
  if (!response.ok) throw await failure(response);
  return response.status === 204 ? null : response.json();
}

export async function signIn(email, password) {
  adopt(await postAuth("login", { email, password, cookie: true }));
  return account;
}

// Back to the sign-in the cookie holds, if there is one; whether there was.
export async function resume() {
  try {
    adopt(await postAuth("refresh", { cookie: true }));
    return true;
  } catch {
    account = null;
    clearTimeout(renewal);
    return false;
  }
}

export async function signOut() {
  try {
    await postAuth("logout", {});
  } finally {
    account = null;
    clearTimeout(renewal);
  }
}

// The first owner of a server on loopback with nobody yet.
export async function setUp(email, password) {
  adopt(await postAuth("setup", { email, password }));
  return account;
}

export async function resetPassword(token, newPassword) {
  await postAuth("reset", { token, new_password: newPassword });
}

export class ApiError extends Error {
  constructor(status, message, code, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details || {};
  }

  // What a person reads: the API's message, and the field it is about.
  describe() {
    const field = this.details && this.details.field;
    return field ? `${this.message} (${field})` : this.message;
  }
}

function authHeaders(extra) {
  const headers = new Headers(extra || {});
  const key = credential();
  if (key) headers.set("Authorization", `Bearer ${key}`);
  return headers;
}

// The ApiError of a response that is not ok, from its body when it has one.
async function failure(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  return errorFromBody(response.status, response.statusText, body);
}

// The error envelope of /api/v1 ({error, error_code, details}) or OpenAI's shape.
export function errorFromBody(status, statusText, body) {
  if (body && typeof body.error === "string") {
    return new ApiError(status, body.error, body.error_code || `HTTP_${status}`, body.details);
  }
  if (body && body.error && typeof body.error.message === "string") {
    return new ApiError(status, body.error.message, body.error.code || `HTTP_${status}`, {});
  }
  const message = status === 0 ? "Cannot reach the Hark server" : `${status} ${statusText}`;
  return new ApiError(status, message, status === 0 ? "NETWORK" : `HTTP_${status}`, {});
}

export async function request(path, options = {}) {
  try {
    return await send(path, options);
  } catch (error) {
    // An access token that expired in a sleeping tab: renew it once and try again.
    if (error instanceof ApiError && error.status === 401 && account && await resume()) {
      return send(path, options);
    }
    throw error;
  }
}

async function send(path, { method = "GET", json, signal } = {}) {
  const init = { method, headers: authHeaders(), signal };
  if (json !== undefined) {
    init.body = JSON.stringify(json);
    init.headers.set("Content-Type", "application/json");
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw errorFromBody(0, "", null);
  }
  if (!response.ok) throw await failure(response);
  return response;
}

export async function getJson(path, options) {
  return (await request(path, options)).json();
}

// A multipart upload through XMLHttpRequest, the one browser API that reports upload
// progress. Resolves with the new job; rejects with an ApiError.
export function uploadFile(file, fields, onProgress) {
  return new Promise((resolve, reject) => {
    const form = new FormData();
    for (const [name, value] of Object.entries(fields)) form.append(name, value);
    form.append("file", file, file.name);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/api/v1/jobs/upload");
    const key = credential();
    if (key) xhr.setRequestHeader("Authorization", `Bearer ${key}`);
    xhr.responseType = "json";
    xhr.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) onProgress(event.loaded / event.total);
    });
    xhr.addEventListener("load", () => {
      if (xhr.status === 202 || xhr.status === 200) resolve(xhr.response);
      else reject(errorFromBody(xhr.status, xhr.statusText, xhr.response));
    });
    xhr.addEventListener("error", () => reject(errorFromBody(0, "", null)));
    xhr.addEventListener("abort", () => reject(new ApiError(0, "Upload canceled", "ABORTED")));
    xhr.send(form);
  });
}

export function jobPath(id, rest = "") {
  return `/api/v1/jobs/${encodeURIComponent(id)}${rest}`;
}

// The recording for <audio>/<video>: the element cannot send the key in a header, and
// a key never goes into a URL, so the page asks (with the key) for a signed link that
// opens this one recording for a while. The answer's URL is absolute; the page plays it
// from its own origin, which is the only one its content policy allows media from.
export async function mediaLink(id) {
  const { url } = await getJson(jobPath(id, "/media/link"));
  const link = new URL(url, location.href);
  return link.pathname + link.search;
}

// A WebSocket of the API that comes back after a drop: reconnects after growing,
// jittered delays (1 s doubling to 30 s; jitter spreads the reconnects of many pages
// after a server restart) until it is closed, refused (4400-4499) or finished. The
// key rides in the URL: browsers cannot set headers on a WebSocket.
function liveSocket(path, { onEvent, onRefused, onDown }) {
  let socket = null;
  let stopped = false;
  let delay = 1000;
  let timer = null;
  const control = {
    healthy() { delay = 1000; },
    finish() { stopped = true; },
    close() {
      stopped = true;
      clearTimeout(timer);
      if (socket) socket.close();
    },
  };
  const open = () => {
    const url = new URL(path, location.href);
    url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    const key = credential();
    if (key) url.searchParams.set("api_key", key);
    socket = new WebSocket(url);
    socket.addEventListener("message", (message) => {
      let event;
      try {
        event = JSON.parse(message.data);
      } catch {
        return;
      }
      onEvent(event, control);
    });
    socket.addEventListener("close", (closing) => {
      if (stopped) return;
      if (closing.code >= 4400 && closing.code < 4500) {
        stopped = true;
        if (onRefused) onRefused(closing.code, closing.reason);
        return;
      }
      if (onDown) onDown();
      timer = setTimeout(open, delay * (0.5 + Math.random() / 2));
      delay = Math.min(delay * 2, 30000);
    });
  };
  open();
  return control;
}

// Live events of one job over its WebSocket (no polling). A late subscriber gets the
// current state first; the server closes after the final event. Returns {close()}.
export function watchJob(id, onEvent, onRefused) {
  return liveSocket(jobPath(id, "/ws"), {
    onEvent: (event, socket) => {
      socket.healthy();
      if (TERMINAL.has(event.type)) socket.finish();
      onEvent(event);
    },
    onRefused,
  });
}

// The tenant's job feed over one WebSocket: "created" and "purged" events of every job
// of the key's tenant, wherever it was submitted. `listen()` opens it (again, when the
// saved key changed) and resolves once it listens, is refused, drops, or after
// `waitMs`. After a reconnect `onMissed()` is called: what happened while it was away
// was not heard. `onStopped(reason)`: refused after it had been listening (a revoked key).
// `onListening()`: it listens (again), each time it does.
export class TenantFeed {
  constructor({ onEvent, onMissed, onStopped, onListening = () => {}, waitMs = 3000 }) {
    Object.assign(this, { onEvent, onMissed, onStopped, onListening, waitMs });
    this.socket = null;
    this.key = null;
    this.ready = null;
  }

  listen() {
    const key = identity();
    if (this.socket && this.key === key) return this.ready;
    if (this.socket) this.socket.close();
    let settle;
    this.ready = new Promise((resolve) => { settle = resolve; });
    const timer = setTimeout(settle, this.waitMs);
    const settled = () => {
      clearTimeout(timer);
      settle();
    };
    let listened = false;
    const socket = liveSocket("/api/v1/ws", {
      onEvent: (event, control) => {
        if (event.type !== "ready") {
          this.onEvent(event);
          return;
        }
        control.healthy();
        settled();
        this.onListening();
        if (listened) this.onMissed();
        listened = true;
      },
      onDown: settled,
      onRefused: (code, reason) => {
        settled();
        if (this.socket === socket) this.socket = null; // the next listen() tries again
        // Refused before it ever listened: the caller's own requests report why.
        if (listened) this.onStopped(reason || "an API key is needed");
      },
    });
    this.socket = socket;
    this.key = key;
    return this.ready;
  }
}

// Download a result file (the request needs the key, so a plain link would not do).
export async function download(path, fallbackName) {
  const response = await request(path);
  const blob = await response.blob();
  const disposition = response.headers.get("Content-Disposition") || "";
  const match = /filename\*=UTF-8''([^;]+)/i.exec(disposition);
  const name = match ? decodeURIComponent(match[1]) : fallbackName;
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = url;
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
  return { name, size: blob.size };
}
