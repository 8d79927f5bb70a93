// Small DOM helpers. Text always goes in as text (never as HTML): transcripts, file
// names and error messages are whatever someone said, typed or uploaded.

export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(node.dataset, value);
    else if (value === true) node.setAttribute(name, "");
    else node.setAttribute(name, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function formatTime(seconds) {
  const total = Math.max(0, Math.floor(Number(seconds) || 0));
  const hours = Math.floor(total / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const secs = String(total % 60).padStart(2, "0");
  return hours ? `${hours}:${String(minutes).padStart(2, "0")}:${secs}` : `${minutes}:${secs}`;
}

export function formatDuration(seconds) {
  if (seconds === null || seconds === undefined) return "";
  return formatTime(Math.round(seconds));
}

const statusBox = () => document.getElementById("status");
const alertBox = () => document.getElementById("alert");

// A polite announcement (aria-live) of what just happened. It leaves the errors on show
// alone: something else going well does not answer an error nobody may have read yet.
export function announce(message) {
  const box = statusBox();
  box.textContent = "";
  // A fresh text node, so screen readers announce a repeated message too.
  requestAnimationFrame(() => { box.textContent = message; });
}

function describe(error) {
  if (typeof error === "string") return error;
  if (error && error.describe) return error.describe();
  return String(error && error.message || error);
}

let errorsShown = 0; // for the ids that tie each dismiss button to its message

// Show an error until its reader dismisses it, or until `action` (a name for what
// failed, such as "upload:talk.wav") succeeds when tried again and says so with
// `clearError(action)`. Errors stay side by side; the same action failing again (or,
// without an action, the same message again) replaces its earlier entry, which also
// has the alert region announce it afresh.
export function showError(error, action = null) {
  const box = alertBox();
  const message = describe(error);
  const key = action === null ? `message:${message}` : `action:${action}`;
  let hadFocus = false;
  for (const old of box.querySelectorAll(".alert-item")) {
    if (old.dataset.key !== key) continue;
    hadFocus ||= old.contains(document.activeElement);
    old.remove();
  }
  const id = `alert-text-${++errorsShown}`;
  const item = el("div", { class: "alert-item", dataset: { key } },
    el("p", { class: "alert-text", id }, message));
  const dismiss = el("button", { type: "button", class: "secondary small alert-dismiss",
    "aria-label": "Dismiss error", "aria-describedby": id,
    onclick: () => removeError(item, true) }, "Dismiss");
  item.append(dismiss);
  box.append(item);
  box.hidden = false;
  if (hadFocus) dismiss.focus();
}

// The action that failed has now succeeded: its error, if still on show, is answered.
export function clearError(action) {
  for (const item of alertBox().querySelectorAll(".alert-item")) {
    if (item.dataset.key === `action:${action}`) removeError(item, false);
  }
}

function removeError(item, dismissed) {
  const box = alertBox();
  const hadFocus = dismissed || item.contains(document.activeElement);
  const next = item.nextElementSibling || item.previousElementSibling;
  item.remove();
  box.hidden = !box.querySelector(".alert-item");
  // Keyboard focus would fall back to the start of the page with its button: it goes
  // to the neighbouring error's button instead, while there is one.
  if (hadFocus && next) next.querySelector(".alert-dismiss").focus();
}

// Speaker colours: distinct hues, each dark enough for text on white.
const PALETTE = ["#1d5fbf", "#b2400a", "#1b7a3d", "#8a2d9e", "#a3123f", "#0f6e7a",
  "#6b5900", "#4a4fbf"];

export function speakerColour(index) {
  return PALETTE[((index % PALETTE.length) + PALETTE.length) % PALETTE.length];
}

// Confirm a destructive action inside the button itself (no modal dialog): the first
// press arms it for a few seconds, the second one acts.
export function armedButton(button, armedLabel, action) {
  const label = button.textContent;
  let timer = null;
  button.addEventListener("click", () => {
    if (button.dataset.armed === "true") {
      clearTimeout(timer);
      button.dataset.armed = "false";
      button.textContent = label;
      action();
      return;
    }
    button.dataset.armed = "true";
    button.textContent = armedLabel;
    timer = setTimeout(() => {
      button.dataset.armed = "false";
      button.textContent = label;
    }, 4000);
  });
}
