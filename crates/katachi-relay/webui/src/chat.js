// The Chat panel: the workspace's chat sessions (new, open, rename, delete, export as Markdown), a
// session's messages paged from the latest (`GET /chat/sessions/{sid}?limit&before`), and a composer.
// A turn (`POST /chat/sessions/{sid}/turn`) answers NDJSON, read from the fetch body as it streams
// through relay and tunnel: text appended as it comes, tool calls with live output and results,
// approvals answered in place (`POST /chat/approvals/{aid}`). Stop aborts the fetch and posts
// `…/stop`; the agent ends the provider call and any running tool. The event shapes are the agent's
// (katachi-core `ai/chat/events.rs`, routes in `ai/chat/routes.rs`).

import { el, fill } from "./dom.js";
import { readNdjson } from "./ndjson.js";
import { AssistantBlock, note, userMessage } from "./chat_view.js";
import { Turn } from "./chat_turn.js";
import { GrantsLedger, NotesEditor } from "./chat_settings.js";

/** Messages per page of a session (a `data-page-size` on the log overrides it: the tests page by 4). */
const PAGE = 50;
/** A new session's title until its first message names it. */
const UNTITLED = "New chat";

export class ChatPanel {
  /** `parts`: the panel's elements (see workbench.rs); `api`: the agent's `AgentApi`. */
  constructor(parts, api) {
    this.parts = parts;
    this.api = api;
    this.ws = null;
    /** The open session: `{id, title}`. */
    this.session = null;
    /** The sessions listed. */
    this.sessions = [];
    /** The turn in progress: its AbortController. */
    this.running = null;
    /** The oldest message id shown (for "load older"). */
    this.oldest = null;
    /** Approval cards of the log, by id. */
    this.cards = new Map();
    /** Stored results shown without their call (it is on an older page), by call id. */
    this.orphans = new Map();
    /** Counts loads, so only the latest one is shown. */
    this.generation = 0;
    /** Told of every failed call (the workbench notices an unreachable agent). */
    this.onError = () => {};
    parts.form.addEventListener("submit", (e) => { e.preventDefault(); this.send(); });
    parts.input.addEventListener("keydown", (e) => {
      // Enter sends, Shift+Enter is a new line
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); this.send(); }
    });
    parts.stop.addEventListener("click", () => this.stop());
    parts.newChat.addEventListener("click", () => this.create());
    parts.older.addEventListener("click", () => this.loadOlder());
    parts.exportButton.addEventListener("click", () => this.exportMarkdown());
    parts.rename.addEventListener("click", () => this.startRename());
    parts.remove.addEventListener("click", () => this.askDelete());
    parts.modelRetry.addEventListener("click", () => this.loadModel(this.ws));
    /** The workspace's permissions ledger and notes for the model (chat_settings.js). */
    this.grants = new GrantsLedger({ list: parts.grants, status: parts.grantsStatus }, this);
    this.notes = new NotesEditor({
      list: parts.notes, form: parts.noteForm, key: parts.noteKey, value: parts.noteValue, status: parts.notesStatus,
    }, this);
  }

  setStatus(kind, text) {
    this.parts.status.textContent = text;
    this.parts.status.className = `wb-chat-status ${kind}`;
  }

  /** Reports a failed call in the status line (and to the workbench). */
  failed(e) {
    this.onError(e);
    this.setStatus("error", e.message);
  }

  /** The sessions and model of workspace `ws`; opens the latest session. */
  async load(ws) {
    this.abortTurn();
    this.ws = ws;
    const generation = ++this.generation;
    this.showSession(null);
    fill(this.parts.sessions, el("li", { class: "muted" }, "Loading…"));
    this.loadModel(ws);
    this.grants.load(ws);
    this.notes.load(ws);
    let list;
    try {
      list = await this.api.json(`/workspaces/${ws}/chat/sessions`);
    } catch (e) {
      if (generation !== this.generation) { return; }
      fill(this.parts.sessions);
      this.failed(e);
      return;
    }
    if (generation !== this.generation) { return; }
    this.sessions = list.sessions || [];
    this.renderSessions();
    if (this.sessions.length) { await this.open(this.sessions[0].id); }
  }

  /** Which provider and model the workspace uses, or what to run to choose one. */
  async loadModel(ws) {
    if (ws === null) { return; }
    const { model, modelMissing } = this.parts;
    model.textContent = "";
    try {
      const m = await this.api.json(`/workspaces/${ws}/chat/model`);
      if (ws !== this.ws) { return; }
      if (m.configured) {
        model.textContent = `${m.provider} · ${m.model}`;
        model.title = `context window: ${m.context_tokens} tokens`;
        modelMissing.hidden = true;
      } else {
        fill(this.parts.modelMessage, m.message || "No AI model is set up for this workspace.");
        modelMissing.dataset.code = m.code || "";
        modelMissing.hidden = false;
      }
    } catch (e) {
      if (ws === this.ws) { this.failed(e); }
    }
  }

  renderSessions() {
    fill(this.parts.sessions);
    if (this.sessions.length === 0) {
      this.parts.sessions.append(el("li", { class: "muted" }, "No chats yet."));
      return;
    }
    for (const s of this.sessions) {
      const open = this.session && this.session.id === s.id;
      const button = el("button", {
        type: "button", class: "wb-chat-session", "data-session-id": String(s.id),
        "aria-current": open ? "true" : null, disabled: this.running !== null && !open,
        title: new Date(s.created_at * 1000).toLocaleString(),
      }, s.title);
      button.addEventListener("click", () => { if (!this.running) { this.open(s.id); } });
      this.parts.sessions.append(el("li", {}, button));
    }
  }

  /** Shows session `s` (`null`: none) in the head and clears the log. */
  showSession(s) {
    this.session = s;
    this.oldest = null;
    this.clearLog();
    this.parts.title.textContent = s ? s.title : "";
    this.parts.usage.textContent = "";
    for (const b of [this.parts.rename, this.parts.exportButton, this.parts.remove]) { b.disabled = !s; }
    this.parts.send.disabled = !s;
    this.parts.input.disabled = !s;
    this.parts.confirm.hidden = true;
    this.parts.older.hidden = true;
    if (!s) { this.parts.log.append(note("muted", "Start a new chat, or open one from the list.")); }
  }

  pageSize() {
    return Number(this.parts.log.dataset.pageSize) || PAGE;
  }

  clearLog() {
    for (const card of this.cards.values()) { card.stopTimer(); }
    this.cards.clear();
    this.orphans.clear();
    fill(this.parts.log);
  }

  /** Opens session `id`: its latest page of messages. */
  async open(id) {
    const generation = ++this.generation;
    let page;
    try {
      page = await this.api.json(`/chat/sessions/${id}?limit=${this.pageSize()}`);
    } catch (e) {
      if (generation === this.generation) { this.failed(e); }
      return;
    }
    if (generation !== this.generation) { return; }
    this.showSession({ id, title: page.session.title });
    this.renderSessions();
    this.setStatus("muted", "");
    if (page.messages.length === 0) { this.parts.log.append(note("muted", "No messages yet: ask something below.")); }
    this.parts.log.append(this.renderPage(page.messages));
    this.oldest = page.messages.length ? page.messages[0].id : null;
    this.parts.older.hidden = !page.more;
    this.scrollToEnd();
  }

  /** The next older page, put above what is shown. */
  async loadOlder() {
    if (!this.session || this.oldest === null) { return; }
    const id = this.session.id;
    this.parts.older.disabled = true;
    try {
      const page = await this.api.json(`/chat/sessions/${id}?limit=${this.pageSize()}&before=${this.oldest}`);
      if (!this.session || this.session.id !== id) { return; }
      const log = this.parts.log;
      const height = log.scrollHeight;
      log.prepend(this.renderPage(page.messages));
      log.scrollTop += log.scrollHeight - height;
      this.oldest = page.messages.length ? page.messages[0].id : this.oldest;
      this.parts.older.hidden = !page.more;
    } catch (e) {
      this.failed(e);
    } finally {
      this.parts.older.disabled = false;
    }
  }

  /**
   * Stored messages (oldest first) as log entries. A result joins its call; one whose call is on
   * an older page is shown alone until that page is loaded, then moves into the call.
   */
  renderPage(messages) {
    const fragment = document.createDocumentFragment();
    const tools = new Map();
    for (const m of messages) {
      const payload = m.payload || {};
      if (m.role === "user") {
        fragment.append(userMessage(m.content, m.id));
      } else if (m.role === "assistant") {
        const block = new AssistantBlock(m.id);
        block.appendText(m.content);
        for (const call of payload.tool_calls || []) {
          const tool = block.addTool(call);
          tools.set(call.id, tool);
          const orphan = this.orphans.get(call.id);
          if (orphan) {
            tool.setResult(...orphan.tool.result);
            orphan.block.node.remove();
            this.orphans.delete(call.id);
          }
        }
        if (payload.interrupted) { block.interrupted(`Interrupted: ${payload.interrupted}`); }
        fragment.append(block.node);
      } else if (m.role === "tool") {
        let tool = tools.get(payload.call_id);
        if (!tool) {
          // its call is on an older page
          const block = new AssistantBlock(m.id);
          tool = block.addTool({ id: payload.call_id, name: payload.name, arguments: undefined });
          this.orphans.set(payload.call_id, { block, tool });
          fragment.append(block.node);
        }
        let content = m.content;
        try { content = JSON.parse(m.content); } catch (_) { /* plain text */ }
        tool.setResult(Boolean(payload.is_error), content, payload.approval);
      } else if (payload.summary_through) {
        fragment.append(el("details", { class: "wb-chat-summary", "data-id": m.id },
          el("summary", {}, "Earlier messages, summarised for the model"), el("div", { class: "wb-msg-text" }, m.content)));
      } else {
        fragment.append(note("muted", m.content));
      }
    }
    return fragment;
  }

  scrollToEnd() {
    this.parts.log.scrollTop = this.parts.log.scrollHeight;
  }

  /** A new session, opened. */
  async create() {
    if (this.ws === null || this.running) { return; }
    try {
      const s = await this.sendJson("POST", `/workspaces/${this.ws}/chat/sessions`, {});
      this.sessions.unshift(s);
      await this.open(s.id);
      this.parts.input.focus();
    } catch (e) {
      this.failed(e);
    }
  }

  /** A JSON request with a JSON answer (`null` for 204). */
  async sendJson(method, path, body) {
    const response = await this.api.send(path, {
      method,
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return response.status === 204 ? null : response.json();
  }

  /** Rename in place: the title becomes a field; Enter saves, Escape cancels. */
  startRename() {
    if (!this.session || this.parts.title.querySelector("input")) { return; }
    const s = this.session;
    const input = el("input", { type: "text", class: "wb-chat-title-input", value: s.title, maxlength: "200", "aria-label": "Chat title" });
    const done = () => { this.parts.title.textContent = this.session ? this.session.title : ""; };
    input.addEventListener("keydown", async (e) => {
      if (e.key === "Escape") { done(); this.parts.rename.focus(); return; }
      if (e.key !== "Enter") { return; }
      e.preventDefault();
      try {
        const renamed = await this.sendJson("POST", `/chat/sessions/${s.id}/title`, { title: input.value });
        this.retitle(s.id, renamed.title);
        this.parts.rename.focus();
      } catch (err) {
        this.failed(err);
      }
    });
    fill(this.parts.title, input);
    input.focus();
    input.select();
  }

  retitle(id, title) {
    for (const s of this.sessions) { if (s.id === id) { s.title = title; } }
    if (this.session && this.session.id === id) {
      this.session.title = title;
      this.parts.title.textContent = title;
    }
    this.renderSessions();
  }

  /** Delete asks first, in the page (keyboard reachable, no browser dialog). */
  askDelete() {
    if (!this.session || this.running) { return; }
    const s = this.session;
    const yes = el("button", { type: "button", class: "danger", id: "chat-delete-confirm" }, "Delete");
    const no = el("button", { type: "button", class: "secondary" }, "Cancel");
    no.addEventListener("click", () => { this.parts.confirm.hidden = true; this.parts.remove.focus(); });
    yes.addEventListener("click", async () => {
      try {
        await this.sendJson("DELETE", `/chat/sessions/${s.id}`);
        this.sessions = this.sessions.filter((x) => x.id !== s.id);
        this.showSession(null);
        this.renderSessions();
        if (this.sessions.length) { await this.open(this.sessions[0].id); }
        this.setStatus("muted", `Deleted “${s.title}”.`);
      } catch (e) {
        this.failed(e);
      }
    });
    fill(this.parts.confirm, `Delete “${s.title}” and all its messages? This cannot be undone. `, yes, " ", no);
    this.parts.confirm.hidden = false;
    no.focus();
  }

  /** Downloads the session as Markdown (a Blob; nothing leaves the browser). */
  async exportMarkdown() {
    if (!this.session) { return; }
    try {
      const out = await this.api.json(`/chat/sessions/${this.session.id}/export`);
      const blob = new Blob([out.markdown], { type: "text/markdown;charset=utf-8" });
      const url = URL.createObjectURL(blob);
      const link = el("a", { href: url, download: out.filename || "katachi-chat.md", hidden: true });
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60_000);
      this.setStatus("muted", `Exported ${out.filename}.`);
    } catch (e) {
      this.failed(e);
    }
  }

  setRunning(running) {
    this.parts.send.hidden = running;
    this.parts.stop.hidden = !running;
    this.parts.newChat.disabled = running;
    this.parts.remove.disabled = running || !this.session;
    // screen readers read the answer once it is complete, not token by token
    this.parts.log.setAttribute("aria-busy", String(running));
    this.renderSessions();
  }

  /** Sends the composer's text as a turn and shows it as it streams. */
  async send() {
    const text = this.parts.input.value.trim();
    if (!this.session || this.running || text === "") { return; }
    const session = this.session;
    const first = this.parts.log.querySelector(".wb-msg") === null;
    const controller = new AbortController();
    this.running = controller;
    this.setRunning(true);
    this.parts.input.value = "";
    const placeholder = this.parts.log.querySelector(".wb-chat-note.muted:only-child");
    if (placeholder) { placeholder.remove(); }
    const turn = new Turn(this, userMessage(text));
    this.setStatus("info", "Waiting for the model…");
    let accepted = false;
    try {
      const response = await this.api.send(`/chat/sessions/${session.id}/turn`, {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/x-ndjson" },
        body: JSON.stringify({ text }),
        signal: controller.signal,
      }).catch((e) => { throw controller.signal.aborted ? new DOMException("aborted", "AbortError") : e; });
      accepted = true;
      if (first && session.title === UNTITLED) { this.nameAfter(session.id, text); }
      const ended = await readNdjson(response, (event) => turn.event(event));
      if (!ended) { turn.cut("The connection ended before the turn did; it was stopped."); }
    } catch (e) {
      if (controller.signal.aborted) {
        turn.cut("Stopped: the provider call and any running tool were cancelled.");
      } else {
        turn.fail(e);
        this.onError(e);
        // refused before it began (busy, no model set up…): the text is not lost
        if (!accepted && this.parts.input.value === "") { this.parts.input.value = text; }
      }
    } finally {
      if (this.running === controller) { this.running = null; }
      turn.close();
      this.setRunning(false);
      // approvals answered or expired in the turn
      this.grants.load(this.ws);
      this.parts.input.focus();
    }
  }

  /** Names an untitled session after its first message (not essential: failures are ignored). */
  async nameAfter(id, text) {
    const line = text.split("\n")[0].replace(/\p{Cc}/gu, " ").trim();
    const title = line.length > 60 ? `${line.slice(0, 59)}…` : line;
    if (!title) { return; }
    try {
      const renamed = await this.sendJson("POST", `/chat/sessions/${id}/title`, { title });
      this.retitle(id, renamed.title);
    } catch (_) { /* the title stays "New chat" */ }
  }

  /** Stops the turn: the fetch is aborted and the agent told, so it ends the provider call too. */
  stop() {
    const controller = this.running;
    if (!controller || !this.session) { return; }
    const id = this.session.id;
    this.setStatus("info", "Stopping…");
    controller.abort();
    this.sendJson("POST", `/chat/sessions/${id}/stop`, {}).catch((e) => this.onError(e));
  }

  /** Ends a running turn without asking (workspace switched). */
  abortTurn() {
    if (this.running) { this.running.abort(); }
  }
}
