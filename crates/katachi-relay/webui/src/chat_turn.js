// One turn of the Chat panel, as its NDJSON events come (katachi-core `ai/chat/events.rs`): the
// model's text appended to its answer, tool calls with live output and results, approvals shown in
// the call they are for, errors, the end. What is said stays when the stream is cut.

import { el } from "./dom.js";
import { AssistantBlock, ApprovalCard, note } from "./chat_view.js";

/** What the status line says for each way a turn ends. */
const END_TEXT = {
  finished: "",
  max_tokens: "The answer reached the model's length limit.",
  step_limit: "The turn reached its step limit: ask the model to go on if needed.",
  stopped: "Stopped.",
  failed: "The turn ended with an error.",
};

/** One turn's events, shown in the log as they come. */
export class Turn {
  constructor(panel, userNode) {
    this.panel = panel;
    this.user = userNode;
    panel.parts.log.append(userNode);
    /** The model's answer being written. */
    this.answer = null;
    /** Calls by id. */
    this.tools = new Map();
    /** Cards of this turn, to withdraw the unanswered ones at its end. */
    this.cards = [];
    this.ended = false;
  }

  /** The answer block the next text or call goes in (a new one after tool results). */
  block() {
    if (!this.answer || this.panel.parts.log.lastChild !== this.answer.node) {
      this.answer = new AssistantBlock(null);
      this.panel.parts.log.append(this.answer.node);
    }
    return this.answer;
  }

  /** Appends `node` to the log, following the end when the reader is there. */
  follow(update) {
    const log = this.panel.parts.log;
    const atEnd = log.scrollHeight - log.scrollTop - log.clientHeight < 80;
    update();
    if (atEnd) { log.scrollTop = log.scrollHeight; }
  }

  /** One NDJSON event; true for the last one. */
  event(e) {
    const panel = this.panel;
    switch (e.type) {
      case "started":
        this.user.dataset.id = String(e.message_id);
        panel.setStatus("info", "The model is answering…");
        break;
      case "text":
        this.follow(() => this.block().appendText(e.text));
        break;
      case "tool_call":
        this.follow(() => this.tools.set(e.id, this.block().addTool(e)));
        panel.setStatus("info", `The model calls ${e.name}…`);
        break;
      case "approval": this.follow(() => this.ask(e.approval)); break;
      case "approval_settled": {
        const card = panel.cards.get(e.id);
        if (card) { card.settle(e.decision); }
        const tool = [...this.tools.values()].find((t) => t.approval === card);
        if (tool && !tool.done && (e.decision === "once" || e.decision === "session")) {
          tool.state.textContent = "running…";
          panel.setStatus("info", `Running ${tool.name}…`);
        }
        break;
      }
      case "tool_output": {
        const tool = this.tools.get(e.call_id);
        if (tool) { this.follow(() => tool.appendOutput(e.stream, e.text)); }
        break;
      }
      case "tool_result": {
        let tool = this.tools.get(e.call_id);
        if (!tool) { tool = this.block().addTool({ id: e.call_id, name: e.name }); this.tools.set(e.call_id, tool); }
        this.follow(() => tool.setResult(e.is_error, e.content));
        // the model's next call answers in a block of its own, as the stored history shows it
        this.answer = null;
        break;
      }
      case "usage":
        if (e.input_tokens || e.output_tokens) {
          panel.parts.usage.textContent = `${e.input_tokens} tokens in, ${e.output_tokens} out`;
          panel.parts.usage.title = "the model's last call";
        }
        break;
      case "summarised":
        this.follow(() => panel.parts.log.append(note("muted", "The conversation neared the model's context window: earlier messages are now sent as a summary.")));
        break;
      case "error":
        this.follow(() => panel.parts.log.append(el("div", { class: "wb-chat-note error", role: "alert", "data-code": e.code },
          el("strong", {}, "Error: "), e.message, " ", el("code", {}, e.code))));
        break;
      case "done":
        this.ended = true;
        this.end(e.end);
        return true;
      default: break;
    }
    return false;
  }

  /** Shows an approval in the call it is for (the latest unanswered call of that tool). */
  ask(approval) {
    const panel = this.panel;
    const card = new ApprovalCard(approval, async (decision) => {
      const answered = await panel.sendJson("POST", `/chat/approvals/${encodeURIComponent(approval.id)}`, { decision });
      panel.grants.load(panel.ws);
      return answered;
    });
    panel.cards.set(approval.id, card);
    this.cards.push(card);
    const calls = [...this.tools.values()].reverse();
    const tool = calls.find((t) => !t.done && !t.approval && t.name === approval.tool) || calls.find((t) => !t.done);
    if (tool) {
      tool.approval = card;
      tool.state.textContent = "waiting for your approval";
      tool.args.after(card.node);
    } else {
      this.block().node.append(card.node);
    }
    panel.setStatus("info", "Waiting for your approval…");
  }

  end(how) {
    const text = END_TEXT[how] ?? how;
    if (how === "stopped" && this.answer) { this.answer.interrupted("Stopped by you."); }
    this.panel.setStatus(how === "failed" ? "error" : how === "finished" ? "ok" : "info", text || "Done.");
  }

  /** The stream was cut (stop, network): what was said stays; unanswered approvals are withdrawn. */
  cut(why) {
    if (this.ended) { return; }
    if (this.answer) { this.answer.interrupted(why); }
    this.panel.setStatus("info", why);
  }

  fail(e) {
    this.panel.parts.log.append(note("error", e.message));
    this.panel.setStatus("error", e.message);
  }

  close() {
    for (const card of this.cards) { card.withdraw(); }
    for (const tool of this.tools.values()) {
      if (!tool.done) { tool.state.textContent = "not finished"; }
    }
  }
}
