// Under the chat sessions, for the open workspace: the permissions ledger and the notes for the model.
//
// Permissions: `GET /workspaces/{id}/chat/grants` (newest first) lists what the user decided about
// the model's writes, patches and commands — the tool, what it covered (the command of a run), the
// decision (once, for the session, refused, expired), when, and whether it was revoked. A live
// session grant has a Revoke button (`POST …/grants/{gid}/revoke`). The chat panel reloads it after
// every approval answered and every turn.
//
// Notes for the model: `GET /workspaces/{id}/chat/notes`, `PUT …/notes/{key}` `{"value"}`,
// `DELETE …/notes/{key}` (katachi-core `ai/chat/memory_routes.rs`); every turn's system prompt
// carries them. Edit puts a note back into the form; saving under the same name replaces it.
//
// All text from the agent goes through textContent (dom.js).

import { el, fill } from "./dom.js";

/** What a decision is called in the ledger. */
const DECISION_TEXT = {
  once: "allowed once",
  session: "allowed for the session",
  deny: "refused",
  expired: "expired (refused)",
};

/** The tools as the ledger names them. */
const TOOL_TEXT = {
  run_command: "Run command",
  write_file: "Write file",
  apply_patch: "Apply patch",
};

const KEY = /^[A-Za-z0-9_.-]{1,64}$/;

function when(seconds) {
  return new Date(seconds * 1000).toLocaleString();
}

function setStatus(node, kind, text) {
  node.textContent = text;
  node.className = `wb-chat-extra-status ${kind}`;
}

/** The permissions ledger of one workspace. */
export class GrantsLedger {
  /** `parts`: `{list, status}`; `panel`: the ChatPanel (its `api`, `sendJson`, `onError`). */
  constructor(parts, panel) {
    this.parts = parts;
    this.panel = panel;
    this.ws = null;
    this.generation = 0;
  }

  async load(ws) {
    this.ws = ws;
    const generation = ++this.generation;
    if (ws === null) { fill(this.parts.list); return; }
    try {
      const out = await this.panel.api.json(`/workspaces/${ws}/chat/grants`);
      if (generation !== this.generation) { return; }
      this.render(out.approvals || []);
      setStatus(this.parts.status, "muted", "");
    } catch (e) {
      if (generation !== this.generation) { return; }
      this.panel.onError(e);
      setStatus(this.parts.status, "error", e.message);
    }
  }

  render(records) {
    fill(this.parts.list);
    if (records.length === 0) {
      this.parts.list.append(el("li", { class: "muted" }, "Nothing asked or allowed yet."));
      return;
    }
    for (const r of records) {
      const revoked = r.revoked_at !== null && r.revoked_at !== undefined;
      const decided = DECISION_TEXT[r.decision] || r.decision;
      const state = revoked ? `${decided} · revoked ${when(r.revoked_at)}` : decided;
      const where = r.session_id === null || r.session_id === undefined ? "deleted chat" : `chat ${r.session_id}`;
      const item = el("li", {
        class: `wb-ledger-entry ${r.decision}${revoked ? " revoked" : ""}`,
        "data-grant-id": String(r.id), "data-decision": r.decision, "data-revoked": revoked ? "true" : "false",
      },
      el("strong", {}, TOOL_TEXT[r.tool] || r.tool),
      el("span", { class: "wb-ledger-subject" }, r.subject === "*" ? "any file" : r.subject),
      el("span", { class: "wb-ledger-meta wb-ledger-state" }, state),
      el("span", { class: "wb-ledger-meta" }, `${when(r.decided_at)} · ${where}`));
      if (r.decision === "session" && !revoked) {
        const label = `Revoke: ${TOOL_TEXT[r.tool] || r.tool} ${r.subject}`;
        const button = el("button", { type: "button", class: "secondary wb-grant-revoke", "aria-label": label }, "Revoke");
        button.addEventListener("click", () => this.revoke(r, button));
        item.append(el("div", {}, button));
      }
      this.parts.list.append(item);
    }
  }

  async revoke(record, button) {
    const ws = this.ws;
    button.disabled = true;
    try {
      const out = await this.panel.sendJson("POST", `/workspaces/${ws}/chat/grants/${record.id}/revoke`, {});
      setStatus(this.parts.status, "muted", out && out.revoked
        ? "Revoked: the model asks again next time." : "That grant was no longer live.");
      await this.load(ws);
    } catch (e) {
      button.disabled = false;
      this.panel.onError(e);
      setStatus(this.parts.status, "error", e.message);
    }
  }
}

/** The notes for the model of one workspace. */
export class NotesEditor {
  /** `parts`: `{list, form, key, value, status}`; `panel`: the ChatPanel. */
  constructor(parts, panel) {
    this.parts = parts;
    this.panel = panel;
    this.ws = null;
    this.generation = 0;
    parts.form.addEventListener("submit", (e) => { e.preventDefault(); this.save(); });
  }

  async load(ws) {
    this.ws = ws;
    const generation = ++this.generation;
    if (ws === null) { fill(this.parts.list); return; }
    try {
      const out = await this.panel.api.json(`/workspaces/${ws}/chat/notes`);
      if (generation !== this.generation) { return; }
      this.render(out.notes || []);
      setStatus(this.parts.status, "muted", "");
    } catch (e) {
      if (generation !== this.generation) { return; }
      this.panel.onError(e);
      setStatus(this.parts.status, "error", e.message);
    }
  }

  render(notes) {
    fill(this.parts.list);
    if (notes.length === 0) {
      this.parts.list.append(el("li", { class: "muted" }, "No notes yet."));
      return;
    }
    for (const n of notes) {
      const edit = el("button", { type: "button", class: "secondary", "aria-label": `Edit note ${n.key}` }, "Edit");
      const remove = el("button", { type: "button", class: "danger", "aria-label": `Delete note ${n.key}` }, "Delete");
      edit.addEventListener("click", () => {
        this.parts.key.value = n.key;
        this.parts.value.value = n.value;
        this.parts.value.focus();
      });
      remove.addEventListener("click", () => this.remove(n.key, remove));
      this.parts.list.append(el("li", { class: "wb-note", "data-note-key": n.key },
        el("strong", {}, n.key),
        el("span", { class: "wb-note-value" }, n.value),
        el("div", {}, edit, " ", remove)));
    }
  }

  async save() {
    const key = this.parts.key.value.trim();
    const value = this.parts.value.value;
    if (!KEY.test(key)) {
      setStatus(this.parts.status, "error", "A name is 1 to 64 letters, digits, _ . or -.");
      this.parts.key.focus();
      return;
    }
    const ws = this.ws;
    if (ws === null) { return; }
    try {
      await this.panel.sendJson("PUT", `/workspaces/${ws}/chat/notes/${encodeURIComponent(key)}`, { value });
      this.parts.key.value = "";
      this.parts.value.value = "";
      await this.load(ws);
      setStatus(this.parts.status, "muted", `Saved “${key}”.`);
    } catch (e) {
      this.panel.onError(e);
      setStatus(this.parts.status, "error", e.message);
    }
  }

  async remove(key, button) {
    const ws = this.ws;
    button.disabled = true;
    try {
      await this.panel.sendJson("DELETE", `/workspaces/${ws}/chat/notes/${encodeURIComponent(key)}`);
      await this.load(ws);
      setStatus(this.parts.status, "muted", `Deleted “${key}”.`);
      this.parts.key.focus();
    } catch (e) {
      button.disabled = false;
      this.panel.onError(e);
      setStatus(this.parts.status, "error", e.message);
    }
  }
}
