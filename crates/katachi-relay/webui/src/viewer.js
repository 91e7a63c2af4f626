// The file viewer: CodeMirror 6 inside a shadow root (so its styles are constructable stylesheets,
// which the page's CSP `style-src 'self'` allows, rather than a `<style>` element it would block),
// read-only until the user chooses Edit; Save writes with the hash of the version that was read, so a
// change made meanwhile on the agent is a conflict, never overwritten.

import { EditorState, Compartment } from "@codemirror/state";
import {
  EditorView, lineNumbers, highlightActiveLineGutter, highlightSpecialChars, drawSelection, keymap,
} from "@codemirror/view";
import { syntaxHighlighting, defaultHighlightStyle, bracketMatching, foldGutter } from "@codemirror/language";
import { defaultKeymap, history, historyKeymap } from "@codemirror/commands";
import { searchKeymap, highlightSelectionMatches } from "@codemirror/search";

import { el, fill, formatSize, message } from "./dom.js";
import { languageFor } from "./languages.js";

/** Largest file the viewer opens (bigger ones are described, not read). */
export const VIEW_MAX_BYTES = 2 * 1024 * 1024;

const theme = EditorView.theme({
  "&": { height: "100%", fontSize: "13px", backgroundColor: "#fff" },
  ".cm-scroller": { fontFamily: "ui-monospace, SFMono-Regular, Menlo, Consolas, monospace", lineHeight: "1.5" },
  ".cm-gutters": { backgroundColor: "#f6f7f9", color: "#98a2b3", borderRight: "1px solid #e4e7ec" },
  "&.cm-focused": { outline: "none" },
});

/** True when `bytes` look binary: a NUL byte, or not valid UTF-8. */
function isBinary(bytes) {
  if (bytes.subarray(0, 8192).includes(0)) { return true; }
  try {
    new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    return false;
  } catch (_) {
    return true;
  }
}

export class Viewer {
  /** `parts`: the header elements and the pane; `api`: an `AgentApi`; `onSaved`: after a write. */
  constructor(parts, api, onSaved) {
    this.parts = parts;
    this.api = api;
    this.onSaved = onSaved;
    this.host = el("div", { class: "wb-editor-host" });
    this.shadow = this.host.attachShadow({ mode: "open" });
    this.mount = document.createElement("div");
    this.mount.style.height = "100%";
    this.shadow.append(this.mount);
    this.language = new Compartment();
    this.readOnly = new Compartment();
    this.view = null;
    this.file = null;
    this.loading = null;
    /** Told of every failed read. */
    this.onError = () => {};
    parts.edit.addEventListener("click", () => this.startEditing());
    parts.save.addEventListener("click", () => this.save());
  }

  /** Shows a message instead of a file. */
  showMessage(kind, text) {
    fill(this.parts.pane, message(kind, text));
    this.setButtons(false, false);
  }

  /** The line under the header: `kind` is `info` or `error`. */
  setStatus(kind, text) {
    this.parts.status.textContent = text;
    this.parts.status.className = `wb-file-status ${kind}`;
  }

  setButtons(canEdit, canSave) {
    this.parts.edit.hidden = !canEdit;
    this.parts.save.hidden = !canSave;
  }

  /** Opens `entry` (`{path, size}`) of workspace `ws`. */
  async open(ws, entry) {
    if (this.loading) { this.loading.abort(); }
    const path = entry.path;
    this.file = null;
    this.parts.title.textContent = path;
    this.parts.meta.textContent = typeof entry.size === "number" ? formatSize(entry.size) : "";
    this.setStatus("info", "");
    if (typeof entry.size === "number" && entry.size > VIEW_MAX_BYTES) {
      this.showMessage("info", `${path} is ${formatSize(entry.size)}: the viewer opens files up to ${formatSize(VIEW_MAX_BYTES)}.`);
      return;
    }
    this.showMessage("muted", "Loading…");
    const controller = new AbortController();
    this.loading = controller;
    let file;
    try {
      file = await this.api.file(ws, path, controller.signal);
    } catch (e) {
      if (controller.signal.aborted) { return; }
      this.loading = null;
      this.onError(e);
      this.showMessage("error", e.message);
      return;
    }
    if (controller.signal.aborted) { return; }
    this.loading = null;
    this.parts.meta.textContent = formatSize(file.bytes.length);
    if (isBinary(file.bytes)) {
      this.parts.meta.textContent = `binary, ${formatSize(file.bytes.length)}`;
      this.showMessage("info", `binary, ${formatSize(file.bytes.length)}: not shown as text.`);
      return;
    }
    const text = new TextDecoder("utf-8").decode(file.bytes);
    const language = languageFor(path);
    this.parts.meta.textContent = `${language.name} · ${formatSize(file.bytes.length)}`;
    this.file = { ws, path, sha256: file.sha256, text };
    this.show(text, language.extension);
    this.setButtons(Boolean(file.sha256), false);
  }

  /** Puts `text` in the editor (created once, then reset per file). */
  show(text, languageExtension) {
    const state = EditorState.create({
      doc: text,
      extensions: [
        lineNumbers(), highlightActiveLineGutter(), highlightSpecialChars(), foldGutter(), drawSelection(),
        history(), bracketMatching(), highlightSelectionMatches(),
        syntaxHighlighting(defaultHighlightStyle, { fallback: true }),
        keymap.of([...defaultKeymap, ...historyKeymap, ...searchKeymap]),
        theme,
        this.language.of(languageExtension),
        this.readOnly.of([EditorState.readOnly.of(true), EditorView.editable.of(false)]),
        EditorView.updateListener.of((update) => {
          if (update.docChanged && this.file) { this.setStatus("info", "modified, not saved"); }
        }),
      ],
    });
    if (this.view) {
      this.view.setState(state);
    } else {
      this.view = new EditorView({ state, parent: this.mount, root: this.shadow });
    }
    fill(this.parts.pane, this.host);
    this.view.requestMeasure();
  }

  startEditing() {
    if (!this.view || !this.file) { return; }
    this.view.dispatch({ effects: this.readOnly.reconfigure([]) });
    this.setButtons(false, true);
    this.setStatus("info", "editing");
    this.view.focus();
  }

  async save() {
    if (!this.view || !this.file) { return; }
    const { ws, path, sha256 } = this.file;
    const text = this.view.state.doc.toString();
    this.parts.save.disabled = true;
    this.setStatus("info", "saving…");
    try {
      const result = await this.api.write(ws, path, sha256, text);
      this.file = { ws, path, sha256: result.sha256, text };
      this.setStatus("info", "saved");
      this.parts.meta.textContent = `${languageFor(path).name} · ${formatSize(result.size)}`;
      this.onSaved(path);
    } catch (e) {
      this.setStatus("error", e.code === "file.conflict"
        ? `Conflict, not saved: ${e.message} (copy your edit, then open the file again).`
        : `Not saved: ${e.message}`);
    } finally {
      this.parts.save.disabled = false;
    }
  }
}
