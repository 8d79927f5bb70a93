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

// A polite announcement (aria-live) of what just happened.
export function announce(message) {
  const box = statusBox();
  box.textContent = "";
  // A fresh text node, so screen readers announce a repeated message too.
  requestAnimationFrame(() => { box.textContent = message; });
  hideError();
}

export function showError(error) {
  const box = alertBox();
  box.textContent = typeof error === "string" ? error
    : (error && error.describe ? error.describe() : String(error && error.message || error));
  box.hidden = false;
}

export function hideError() {
  const box = alertBox();
  box.hidden = true;
  box.textContent = "";
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
