// The Run panel: pick an allowlisted command, type its arguments, run it in the agent's sandbox and
// watch its output arrive line by line (`POST /workspaces/{id}/run` answers NDJSON, read here with
// fetch + ReadableStream as it streams through relay and tunnel). Stop aborts the fetch; the agent
// sees the stream end and kills the command's whole process tree. A refusal shows its structured
// reason (`{kind, target, how_to_allow}`), not a bare status code.

import { el, fill } from "./dom.js";
import { readNdjson } from "./ndjson.js";

/** Characters of output kept on the page; the rest is dropped from the view (not from the run). */
const VIEW_MAX_CHARS = 1 << 20;

/**
 * Splits an argument line the way a user expects, without a shell: words split on spaces, `'…'`
 * and `"…"` keep spaces, `\` escapes the next character. Nothing is expanded (`*`, `$X`, `~` stay).
 * Throws on an unclosed quote.
 */
export function splitArgs(line) {
  const args = [];
  let word = null;
  let quote = null;
  for (let i = 0; i < line.length; i += 1) {
    const c = line[i];
    if (quote) {
      if (c === quote) { quote = null; }
      else if (c === "\\" && quote === "\"" && i + 1 < line.length) { i += 1; word += line[i]; }
      else { word += c; }
    } else if (c === "'" || c === "\"") {
      quote = c;
      word = word ?? "";
    } else if (c === "\\" && i + 1 < line.length) {
      i += 1;
      word = (word ?? "") + line[i];
    } else if (/\s/.test(c)) {
      if (word !== null) { args.push(word); word = null; }
    } else {
      word = (word ?? "") + c;
    }
  }
  if (quote) { throw new Error(`unclosed ${quote} in the arguments`); }
  if (word !== null) { args.push(word); }
  return args;
}

/** A structured denial, readable: what was refused and how to allow it. */
export function describeDenial(denied) {
  if (denied.kind === "limit") {
    if (denied.target === "cancelled") { return "Stopped: the command was cancelled and its processes killed."; }
    return `Stopped by the ${denied.target} limit. To allow more: ${denied.how_to_allow}.`;
  }
  const what = {
    exec: `running ${denied.target}`,
    file: `access to ${denied.target}`,
    network: `network access to ${denied.target}`,
  }[denied.kind] || `${denied.kind} access to ${denied.target}`;
  return `Denied by the sandbox: ${what} is not allowed. To allow it: ${denied.how_to_allow}.`;
}

function decodeData(event) {
  if (event.encoding !== "base64") { return String(event.data ?? ""); }
  const raw = atob(String(event.data ?? ""));
  const bytes = Uint8Array.from(raw, (ch) => ch.charCodeAt(0));
  return new TextDecoder("utf-8").decode(bytes);
}

export class RunPanel {
  /** `parts`: the panel's elements (see workbench.rs); `api`: the agent's `AgentApi`. */
  constructor(parts, api) {
    this.parts = parts;
    this.api = api;
    this.ws = null;
    /** The run in progress: its AbortController. */
    this.running = null;
    this.shownChars = 0;
    /** Told of every failed call (the workbench notices an unreachable agent). */
    this.onError = () => {};
    parts.form.addEventListener("submit", (e) => { e.preventDefault(); this.start(); });
    parts.stop.addEventListener("click", () => this.stop());
  }

  /** Lists the commands workspace `ws` allows. */
  async load(ws) {
    this.stop();
    this.ws = ws;
    this.parts.start.disabled = true;
    fill(this.parts.command, el("option", { value: "" }, "Loading…"));
    this.setStatus("muted", "");
    let list;
    try {
      list = await this.api.json(`/workspaces/${ws}/run/commands`);
    } catch (e) {
      if (this.ws !== ws) { return; }
      this.onError(e);
      fill(this.parts.command);
      this.setStatus("error", e.message);
      return;
    }
    if (this.ws !== ws) { return; }
    const commands = list.commands || [];
    fill(this.parts.command, ...commands.map((c) => el("option", { value: c.name, title: c.path }, c.name)));
    this.parts.start.disabled = commands.length === 0;
    const sandbox = list.sandbox || {};
    this.parts.sandbox.textContent = sandbox.message || "";
    this.parts.sandbox.className = sandbox.enforced ? "muted" : "wb-warning";
    this.parts.sandbox.title = (sandbox.layers || [])
      .map((l) => `${l.active ? "on " : "off"} ${l.name}: ${l.detail}`).join("\n");
  }

  setStatus(kind, text) {
    this.parts.status.textContent = text;
    this.parts.status.className = `wb-run-status ${kind}`;
  }

  setRunning(running) {
    this.parts.start.hidden = running;
    this.parts.stop.hidden = !running;
    this.parts.command.disabled = running;
  }

  /** Appends output; stderr is marked so it reads apart from stdout. */
  append(stream, text) {
    if (!text) { return; }
    if (this.shownChars >= VIEW_MAX_CHARS) { return; }
    let shown = text;
    if (this.shownChars + text.length > VIEW_MAX_CHARS) {
      shown = `${text.slice(0, VIEW_MAX_CHARS - this.shownChars)}\n… (more output than the view keeps)\n`;
    }
    this.shownChars += shown.length;
    const last = this.parts.output.lastChild;
    if (last && last.dataset && last.dataset.stream === stream) { last.append(shown); }
    else { this.parts.output.append(el("span", { class: `wb-out ${stream}`, "data-stream": stream }, shown)); }
    this.parts.output.scrollTop = this.parts.output.scrollHeight;
  }

  /** Shows a refusal or a limit: readable text, and its parts as data attributes for tools. */
  showDenial(denied) {
    fill(this.parts.denial, describeDenial(denied));
    this.parts.denial.dataset.kind = denied.kind;
    this.parts.denial.dataset.target = denied.target;
    this.parts.denial.hidden = false;
  }

  async start() {
    if (this.ws === null || this.running) { return; }
    const command = this.parts.command.value;
    let args;
    try {
      args = splitArgs(this.parts.args.value);
    } catch (e) {
      this.setStatus("error", e.message);
      return;
    }
    fill(this.parts.output);
    this.shownChars = 0;
    this.parts.denial.hidden = true;
    fill(this.parts.denial);
    const controller = new AbortController();
    this.running = controller;
    this.setRunning(true);
    this.setStatus("info", `running ${command}…`);
    try {
      await this.execute(controller, { command, args, cwd: this.parts.cwd.value.trim() });
    } catch (e) {
      if (controller.signal.aborted) {
        this.setStatus("info", "Stopped: the command was cancelled and its processes killed.");
      } else {
        this.setStatus("error", e.message);
      }
    } finally {
      if (this.running === controller) { this.running = null; }
      this.setRunning(false);
    }
  }

  stop() {
    if (this.running) { this.running.abort(); }
  }

  /** Sends the run and reads its NDJSON answer to the end. */
  async execute(controller, body) {
    let response;
    try {
      response = await fetch(`${this.api.base}/workspaces/${this.ws}/run`, {
        method: "POST",
        credentials: "same-origin",
        cache: "no-store",
        headers: { "Content-Type": "application/json", Accept: "application/x-ndjson" },
        body: JSON.stringify(body),
        signal: controller.signal,
      });
    } catch (e) {
      if (controller.signal.aborted) { throw e; }
      throw new Error("the relay cannot be reached (network error); check your connection and retry");
    }
    if (!response.ok) {
      await this.refused(response);
      return;
    }
    const finished = await readNdjson(response, (event) => this.event(event));
    if (!finished) { this.setStatus("error", "The connection ended before the command did; it was stopped."); }
  }

  /** One NDJSON event; true for the final one. */
  event(event) {
    if (event.stream) {
      this.append(event.stream, decodeData(event));
      return false;
    }
    if (!event.exit) { return false; }
    const took = typeof event.duration_ms === "number" ? ` · ${event.duration_ms} ms` : "";
    const exit = "code" in event.exit ? `exit code ${event.exit.code}` : `ended by signal ${event.exit.signal}`;
    if (event.denied) {
      this.showDenial(event.denied);
      this.setStatus("error", `${exit}${took}`);
    } else {
      this.setStatus(event.exit.code === 0 ? "ok" : "error", `${exit}${took}`);
    }
    return true;
  }

  /** A refusal before anything ran: the structured denial when there is one. */
  async refused(response) {
    let error = null;
    try { error = (await response.json()).error; } catch (_) { /* not JSON */ }
    const text = error && error.message ? error.message : `the agent answered HTTP ${response.status}`;
    if (error && error.denied) {
      this.showDenial(error.denied);
      this.setStatus("error", "Not run.");
      return;
    }
    if (error && error.code === "sandbox.unenforced" && error.how_to_allow) {
      // the sandbox is off on that machine: only its local user can allow runs, with this command
      fill(this.parts.denial, `Not run: ${text}`);
      this.parts.denial.dataset.kind = "unenforced";
      this.parts.denial.dataset.howToAllow = error.how_to_allow;
      this.parts.denial.hidden = false;
      this.setStatus("error", "Not run: the sandbox is not enforced on the agent's machine.");
      return;
    }
    const code = error && error.code ? String(error.code) : `http.${response.status}`;
    if (code === "agent.offline" || code === "agent.unreachable") {
      this.onError({ agentGone: true, code, message: text });
    }
    this.setStatus("error", `Not run: ${text}`);
  }
}
