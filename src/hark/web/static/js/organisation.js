// The organisation card: usage beside the quotas and the retention for everyone; for
// admins (a signed-in admin or owner, or a key with the admin scope) also the people,
// the API keys and the audit log. Whether the caller is an admin is the server's call:
// the admin part shows when its lists load, and hides on a 403.

import { ApiError, getJson } from "./api.js";
import { announce, armedButton, clearError, el, showError } from "./util.js";

const ROLES = ["viewer", "member", "admin", "owner"];
const byId = (id) => document.getElementById(id);

function amount(measure, format = String) {
  const used = format(measure.used);
  return measure.limit === null ? `${used} (no limit)` : `${used} of ${format(measure.limit)}`;
}

const hours = (seconds) => `${(seconds / 3600).toFixed(2)} h`;
const bytes = (count) => `${(count / 1e9).toFixed(2)} GB`;
const days = (input) => (input.value.trim() === "" ? null : Number(input.value));

export class Organisation {
  constructor() {
    this.card = byId("org-card");
    byId("org-refresh").addEventListener("click", () => this.load());
    byId("retention-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.act(() => getJson("/api/v1/organisation/retention", { method: "PATCH", json: {
        media_days: days(byId("retention-media")),
        results_days: days(byId("retention-results")) } }), "Retention saved");
    });
    byId("person-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const email = byId("person-email").value.trim();
      this.act(async () => {
        const added = await getJson("/api/v1/users", { method: "POST",
          json: { email, role: byId("person-role").value } });
        byId("person-email").value = "";
        await this.resetLink(added.user);
      }, `${email} added: give them the link to set a password`);
    });
    byId("new-key-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const scopes = [...document.querySelectorAll("#new-key-form [name=scope]:checked")]
        .map((box) => box.value);
      this.act(async () => {
        const made = await getJson("/api/v1/keys", { method: "POST",
          json: { name: byId("new-key-name").value.trim(), scopes } });
        byId("new-key-name").value = "";
        byId("new-key").value = made.key;
        byId("new-key-box").hidden = false;
        byId("new-key").select();
      }, "Key made: copy it now, it is not shown again");
    });
  }

  hide() {
    this.card.hidden = true;
  }

  async load() {
    try {
      const [usage, organisation] = await Promise.all([
        getJson("/api/v1/usage"), getJson("/api/v1/organisation")]);
      this.showUsage(usage, organisation);
    } catch (error) {
      this.hide(); // a server without organisations for this caller: nothing to show
      return;
    }
    this.card.hidden = false;
    await this.loadAdmin();
  }

  showUsage(usage, organisation) {
    byId("org-name").textContent = organisation.name;
    const rows = [["Audio", amount(usage.audio_seconds, hours)],
      ["Jobs running", amount(usage.concurrent_jobs)],
      ["Stored", amount(usage.storage_bytes, bytes)],
      ["Live streams", amount(usage.live_streams)]];
    byId("org-usage").replaceChildren(...rows.flatMap(([name, value]) =>
      [el("dt", {}, name), el("dd", {}, value)]));
    byId("retention-media").value = organisation.retention.media_days ?? "";
    byId("retention-results").value = organisation.retention.results_days ?? "";
  }

  async loadAdmin() {
    let people;
    let keys;
    let audit;
    try {
      [people, keys, audit] = await Promise.all([getJson("/api/v1/users"),
        getJson("/api/v1/keys"), getJson("/api/v1/audit?limit=20")]);
    } catch (error) {
      if (!(error instanceof ApiError && error.status === 403)) showError(error, "org-admin");
      this.setAdmin(false);
      return;
    }
    clearError("org-admin");
    this.setAdmin(true);
    byId("people").replaceChildren(...people.map((member) => this.person(member)));
    byId("keys").replaceChildren(...keys.map((key) => this.key(key)));
    byId("audit").replaceChildren(...audit.items.map((event) => el("li", {},
      el("time", { datetime: event.created_at }, event.created_at.slice(0, 16).replace("T", " ")),
      el("span", { class: "grow" },
        `${event.action} · ${event.target_type} ${event.target_id.slice(0, 8)} · by ${event.actor_kind}`))));
  }

  setAdmin(admin) {
    byId("org-admin").hidden = !admin;
    for (const control of document.querySelectorAll("#retention-form input, [data-admin]")) {
      control.disabled = !admin;
    }
  }

  person({ user, role }) {
    const label = `${user.email}${user.disabled ? " (disabled)" : ""}`;
    const select = el("select", { "aria-label": `Role of ${user.email}`, "data-action": "role" },
      ...ROLES.map((name) => el("option", { value: name, selected: name === role }, name)));
    select.addEventListener("change", () => this.act(() => getJson(
      `/api/v1/users/${encodeURIComponent(user.id)}`,
      { method: "PATCH", json: { role: select.value } }), `${user.email} is now ${select.value}`));
    const erase = el("button", { type: "button", class: "danger small", "data-action": "erase",
      "aria-label": `Erase ${user.email}` }, "Erase");
    armedButton(erase, "Confirm erase", () => this.act(() => getJson(
      `/api/v1/users/${encodeURIComponent(user.id)}`, { method: "DELETE" }),
    `${user.email} and everything they submitted erased`));
    return el("li", { "data-email": user.email },
      el("span", { class: "grow" }, label), select,
      el("button", { type: "button", class: "secondary small", "data-action": "disable",
        onclick: () => this.act(() => getJson(`/api/v1/users/${encodeURIComponent(user.id)}`,
          { method: "PATCH", json: { disabled: !user.disabled } }),
        `${user.email} ${user.disabled ? "enabled" : "disabled"}`) },
      user.disabled ? "Enable" : "Disable"),
      el("button", { type: "button", class: "secondary small", "data-action": "reset",
        onclick: () => this.act(() => this.resetLink(user), `Reset link made for ${user.email}`) },
      "Reset link"),
      erase);
  }

  async resetLink(user) {
    const link = await getJson(`/api/v1/users/${encodeURIComponent(user.id)}/reset-link`,
      { method: "POST" });
    byId("reset-link-who").textContent = user.email;
    byId("reset-link").value = link.url;
    byId("reset-link-box").hidden = false;
  }

  key(key) {
    const revoke = el("button", { type: "button", class: "danger small", "data-action": "revoke",
      "aria-label": `Revoke ${key.name}` }, "Revoke");
    armedButton(revoke, "Confirm revoke", () => this.act(() => getJson(
      `/api/v1/keys/${encodeURIComponent(key.id)}`, { method: "DELETE" }), `${key.name} revoked`));
    return el("li", { "data-key": key.id },
      el("span", { class: "grow" }, `${key.name} · ${key.prefix}… · ${key.scopes.join(" ")}`),
      revoke);
  }

  // Run a change, say what happened, and show the card as it is now; or show the error.
  // What `done` says names the change (whom, to what), so the same change succeeding
  // later answers its error.
  async act(change, done) {
    try {
      await change();
    } catch (error) {
      showError(error, done);
      return;
    }
    clearError(done);
    await this.load();
    announce(done);
  }
}
