// The chat log's pieces: a user's message, the model's answer (its text growing as tokens arrive),
// each tool call with its arguments, live output and result, the approval a call waits for (diff
// preview or exact command line, three answers, its expiry), errors and notes. Every piece of text
// from the agent, the model or a tool goes in through textContent / text nodes, never as HTML.

import { el } from "./dom.js";
import { diffLineClass } from "./git.js";

/** Characters of a command's live output kept per call (the result holds the agent's own cut). */
const OUTPUT_MAX_CHARS = 256 * 1024;

/** What the buttons and settled approvals say. */
const DECISION_TEXT = {
  once: "Approved once",
  session: "Approved for this session",
  deny: "Denied",
  expired: "Expired: no answer in time, so it counts as denied",
};

/** `cargo test -- --nocapture` with each argument quoted when a shell would split or expand it. */
export function commandLine(command, args) {
  const quote = (a) => (/^[A-Za-z0-9_\-.,/:=@+%^]+$/.test(a) ? a : `'${a.replace(/'/g, "'\\''")}'`);
  return [command, ...(args || [])].map((a) => quote(String(a))).join(" ");
}

/** `m:ss` left until `expiresAt` (Unix seconds), `0:00` once past. */
export function timeLeft(expiresAt, now = Date.now()) {
  const secs = Math.max(0, Math.round(expiresAt - now / 1000));
  return `${Math.floor(secs / 60)}:${String(secs % 60).padStart(2, "0")}`;
}

/** A unified diff as coloured lines (`+` added, `-` removed, `@@` hunks, headers). */
export function diffView(text) {
  const pre = el("pre", { class: "wb-patch wb-chat-diff" });
  const lines = String(text).split("\n");
  if (lines.length && lines[lines.length - 1] === "") { lines.pop(); }
  for (const line of lines) { pre.append(el("span", { class: `wb-line ${diffLineClass(line)}` }, `${line}\n`)); }
  return pre;
}

/** One line about a call's arguments: the path it reads, the command it runs, what it searches. */
function briefOf(name, args) {
  if (!args || typeof args !== "object") { return ""; }
  if (name === "run_command" && typeof args.command === "string") { return commandLine(args.command, args.args); }
  for (const key of ["path", "query", "pattern"]) {
    if (typeof args[key] === "string") { return args[key]; }
  }
  return "";
}

/** A JSON value readable: multi-line string fields (file text, command output) apart, the rest as JSON. */
function valueView(value) {
  if (typeof value === "string") { return el("pre", { class: "wb-chat-pre" }, value); }
  const box = el("div", { class: "wb-chat-value" });
  const rest = Array.isArray(value) || value === null || typeof value !== "object" ? value : { ...value };
  if (rest && typeof rest === "object" && !Array.isArray(rest)) {
    for (const [key, field] of Object.entries(rest)) {
      if (typeof field === "string" && field.includes("\n")) {
        box.append(el("div", { class: "wb-chat-field" }, key), el("pre", { class: "wb-chat-pre" }, field));
        delete rest[key];
      }
    }
    if (Object.keys(rest).length === 0) { return box; }
  }
  box.prepend(el("pre", { class: "wb-chat-pre wb-chat-json" }, JSON.stringify(rest, null, 2)));
  return box;
}

/** A message of the user. */
export function userMessage(text, id) {
  return el("div", { class: "wb-msg user", "data-id": id },
    el("div", { class: "wb-msg-who" }, "You"),
    el("div", { class: "wb-msg-text" }, text));
}

/** A note in the log: `kind` is `error` (an alert), `info` or `muted`. */
export function note(kind, text) {
  return el("div", { class: `wb-chat-note ${kind}`, role: kind === "error" ? "alert" : null }, text);
}

/** The model's answer: text that grows as it streams, and the calls it makes. */
export class AssistantBlock {
  constructor(id) {
    this.node = el("div", { class: "wb-msg assistant", "data-id": id }, el("div", { class: "wb-msg-who" }, "AI"));
    /** The text element being appended to, while it is the block's last child. */
    this.textPart = null;
  }

  /** Appends streamed (or stored) text. */
  appendText(text) {
    if (!text) { return; }
    if (!this.textPart || this.node.lastChild !== this.textPart) {
      this.textPart = el("div", { class: "wb-msg-text" });
      this.node.append(this.textPart);
    }
    this.textPart.append(document.createTextNode(text));
  }

  /** A call of the model, shown in this block. */
  addTool(call) {
    const tool = new ToolBlock(call);
    this.node.append(tool.node);
    return tool;
  }

  /** The answer was cut short (stopped, failed); `why` says how. */
  interrupted(why) {
    this.node.classList.add("interrupted");
    this.node.append(el("div", { class: "wb-msg-interrupted" }, why));
  }
}

/** One tool call: name and brief, arguments (collapsed), live output, approval, result. */
export class ToolBlock {
  constructor(call) {
    this.id = call.id;
    this.name = call.name || "tool";
    this.state = el("span", { class: "wb-tool-state" }, "running…");
    // a result whose call is on an older page has no arguments to show yet
    this.args = el("details", { class: "wb-tool-args", hidden: call.arguments === undefined }, el("summary", {}, "Arguments"),
      valueView(call.arguments === undefined ? null : call.arguments));
    this.output = el("pre", { class: "wb-tool-output", hidden: true });
    this.outputChars = 0;
    this.node = el("div", { class: "wb-tool", "data-call-id": call.id, "data-tool": this.name },
      el("div", { class: "wb-tool-head" },
        el("span", { class: "wb-tool-name" }, this.name),
        el("code", { class: "wb-tool-brief" }, briefOf(this.name, call.arguments)),
        this.state),
      this.args, this.output);
    this.approval = null;
    this.done = false;
  }

  /** Output of a running command, as it comes. */
  appendOutput(stream, text) {
    if (!text || this.outputChars >= OUTPUT_MAX_CHARS) { return; }
    let shown = text;
    if (this.outputChars + text.length > OUTPUT_MAX_CHARS) {
      shown = `${text.slice(0, OUTPUT_MAX_CHARS - this.outputChars)}\n… (more output than the view keeps)\n`;
    }
    this.outputChars += shown.length;
    this.output.hidden = false;
    const last = this.output.lastChild;
    if (last && last.dataset && last.dataset.stream === stream) { last.append(shown); }
    else { this.output.append(el("span", { class: `wb-out ${stream}`, "data-stream": stream }, shown)); }
  }

  /** The result, as the model reads it; `decision`: what the user answered, when asked. */
  setResult(isError, content, decision) {
    this.done = true;
    /** What was shown, for a call found later on an older page. */
    this.result = [isError, content, decision];
    const error = isError && content && content.error ? content.error : null;
    const headline = error
      ? `${error.code || "error"}: ${error.message || ""}`
      : isError ? "failed" : "done";
    this.state.textContent = isError ? "refused or failed" : "done";
    this.state.className = `wb-tool-state ${isError ? "error" : "ok"}`;
    this.node.classList.add(isError ? "failed" : "succeeded");
    const result = el("details", { class: `wb-tool-result ${isError ? "error" : "ok"}` },
      el("summary", {}, isError ? `Error — ${headline}` : "Result"),
      valueView(content));
    if (decision && !this.approval) { result.prepend(el("p", { class: "wb-tool-decision" }, DECISION_TEXT[decision] || decision)); }
    this.node.append(result);
  }
}

/**
 * An approval the turn waits for: the summary, the diff or command line, the expiry, and the three
 * answers. `answer(decision)` sends one and resolves once the agent took it (throws its error).
 */
export class ApprovalCard {
  constructor(approval, answer) {
    this.id = approval.id;
    this.expiresAt = Number(approval.expires_at) || 0;
    const preview = approval.preview || {};
    let shown;
    if (preview.kind === "diff") {
      shown = el("div", { class: "wb-approval-preview" },
        el("div", { class: "wb-chat-field" }, `Changes to ${(preview.paths || []).join(", ")}`),
        diffView(preview.unified_diff || ""));
    } else if (preview.kind === "command") {
      shown = el("div", { class: "wb-approval-preview" },
        el("div", { class: "wb-chat-field" }, `Command line (in ${preview.cwd ? preview.cwd : "the workspace root"}, sandboxed, no shell)`),
        el("pre", { class: "wb-approval-command" }, commandLine(preview.command, preview.args)));
    } else if (preview.kind === "mcp") {
      // one of the user's MCP tools: the relay calls it with the credentials it keeps
      shown = el("div", { class: "wb-approval-preview" },
        el("div", { class: "wb-chat-field" }, `MCP tool ${preview.tool} of server ${preview.server}, called by the relay`),
        valueView(preview.arguments ?? {}));
    } else {
      shown = el("div", { class: "wb-approval-preview" }, valueView(preview));
    }
    this.expiry = el("span", { class: "wb-approval-expiry" });
    this.status = el("p", { class: "wb-approval-status", role: "status" });
    const button = (decision, label, cls) => el("button", {
      type: "button", class: cls, "data-decision": decision, onclick: () => this.send(decision),
    }, label);
    this.actions = el("div", { class: "wb-approval-actions" },
      button("once", "Approve once", "approve-once"),
      button("session", "Approve for this session", "secondary approve-session"),
      button("deny", "Deny", "danger deny"));
    this.answer = answer;
    this.node = el("div", { class: "wb-approval pending", role: "group", "data-approval-id": approval.id,
      "aria-label": `Approval needed: ${approval.summary || approval.tool}` },
    el("p", { class: "wb-approval-title" }, el("strong", {}, "Approval needed: "), approval.summary || approval.tool),
    shown,
    el("p", { class: "wb-approval-when" }, this.expiry),
    this.actions, this.status);
    this.tick();
    this.timer = setInterval(() => this.tick(), 1000);
  }

  /** Updates the expiry line. */
  tick() {
    const at = new Date(this.expiresAt * 1000).toLocaleTimeString();
    this.expiry.textContent = `Expires at ${at} (in ${timeLeft(this.expiresAt)}); no answer by then counts as denied.`;
  }

  async send(decision) {
    for (const b of this.actions.querySelectorAll("button")) { b.disabled = true; }
    this.status.textContent = "Sending…";
    this.status.className = "wb-approval-status";
    try {
      await this.answer(decision);
      // the turn's stream may have settled the card before this answer came back
      if (this.node.classList.contains("pending")) { this.status.textContent = ""; }
    } catch (e) {
      if (!this.node.classList.contains("pending")) { return; }
      this.status.textContent = e.message;
      this.status.className = "wb-approval-status error";
      if (e.code !== "approval.not_pending") {
        for (const b of this.actions.querySelectorAll("button")) { b.disabled = false; }
      }
    }
  }

  /** Answered (or expired): the buttons give way to what was decided. */
  settle(decision) {
    this.stopTimer();
    this.node.classList.remove("pending");
    this.node.classList.add("settled", decision === "once" || decision === "session" ? "approved" : "refused");
    this.node.dataset.decision = decision;
    this.actions.remove();
    this.expiry.textContent = "";
    this.status.textContent = DECISION_TEXT[decision] || decision;
    this.status.className = "wb-approval-status decided";
  }

  /** The turn ended before an answer: nobody can approve it any more. */
  withdraw() {
    if (!this.node.classList.contains("pending")) { return; }
    this.settle("withdrawn");
    this.status.textContent = "Withdrawn: the turn ended before an answer.";
  }

  stopTimer() {
    if (this.timer) { clearInterval(this.timer); this.timer = null; }
  }
}
