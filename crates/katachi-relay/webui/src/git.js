// Git status (changed paths with `git status --short` letters) and the unified diff of a path, as the
// agent's `/git/status` and `/git/diff` return them (libgit2 patch text per file).

import { el, fill, message } from "./dom.js";

/** A change → its `git status --short` letter. */
const LETTER = {
  added: "A", modified: "M", deleted: "D", renamed: "R", copied: "C",
  typechange: "T", untracked: "?", conflicted: "U",
};

/** Two letters, staged then unstaged, as `git status --short` prints them (`??` when untracked). */
export function statusLetters(entry) {
  if (entry.unstaged === "untracked") { return "??"; }
  const staged = entry.staged ? LETTER[entry.staged] || "?" : " ";
  const unstaged = entry.unstaged ? LETTER[entry.unstaged] || "?" : " ";
  return staged + unstaged;
}

function describe(entry) {
  const parts = [];
  if (entry.staged) { parts.push(`${entry.staged} (staged)`); }
  if (entry.unstaged) { parts.push(entry.unstaged === "untracked" ? "untracked" : `${entry.unstaged} (not staged)`); }
  return parts.join(", ");
}

export class GitPanel {
  /** `list`: where changed paths go; `summary`: the branch line; `onDiff(path)`: a path was chosen. */
  constructor(list, summary, api, onDiff) {
    this.list = list;
    this.summary = summary;
    this.api = api;
    this.onDiff = onDiff;
    this.ws = null;
    /** Counts loads: only the latest one is shown. */
    this.generation = 0;
    /** Told of every failed call. */
    this.onError = () => {};
  }

  async load(ws) {
    this.ws = ws;
    // a newer load (refresh, another workspace) wins over one still in flight
    const generation = ++this.generation;
    fill(this.list, el("li", { class: "muted" }, "Loading…"));
    this.summary.textContent = "";
    let status;
    try {
      status = await this.api.gitStatus(ws);
    } catch (e) {
      if (generation !== this.generation) { return; }
      this.onError(e);
      fill(this.list, el("li", {}, message(e.code === "git.not_a_repository" ? "muted" : "error", e.message)));
      return;
    }
    if (generation !== this.generation) { return; }
    const head = status.head ? status.head.slice(0, 8) : "no commits";
    this.summary.textContent = `${status.branch || "detached HEAD"} · ${head}`;
    if (status.entries.length === 0) {
      fill(this.list, el("li", { class: "muted" }, "No changes."));
      return;
    }
    fill(this.list);
    for (const entry of status.entries) {
      const letters = statusLetters(entry);
      const button = el("button", {
        type: "button", class: "wb-change", "data-path": entry.path, title: `${entry.path}: ${describe(entry)}`,
      }, el("span", { class: `wb-letters s-${letters.trim().charAt(0) === "?" ? "u" : letters.trim().charAt(0).toLowerCase()}` }, letters), " ", entry.path);
      button.addEventListener("click", () => this.onDiff(entry.path));
      this.list.append(el("li", {}, button));
    }
    if (status.truncated) { this.list.append(el("li", { class: "muted" }, "More changes exist than the agent lists at once.")); }
  }
}

/** The class of one patch line (`add`, `del`, `hunk`, `meta`, `note`, `ctx`). */
export function diffLineClass(line) {
  if (line.startsWith("diff --git") || line.startsWith("index ") || line.startsWith("--- ") || line.startsWith("+++ ")
    || line.startsWith("new file mode") || line.startsWith("deleted file mode") || line.startsWith("old mode")
    || line.startsWith("new mode") || line.startsWith("similarity index") || line.startsWith("rename ")
    || line.startsWith("Binary files")) { return "meta"; }
  if (line.startsWith("@@")) { return "hunk"; }
  if (line.startsWith("+")) { return "add"; }
  if (line.startsWith("-")) { return "del"; }
  if (line.startsWith("\\")) { return "note"; }
  return "ctx";
}

/** Renders a `/git/diff` answer into `pane`. */
export function renderDiff(pane, diff, path) {
  fill(pane);
  if (diff.files.length === 0) {
    pane.append(message("muted", path ? `No changes in ${path}.` : "No changes."));
    return;
  }
  for (const file of diff.files) {
    const name = file.old_path && file.old_path !== file.path ? `${file.old_path} → ${file.path}` : file.path;
    const section = el("section", { class: "wb-diff-file", "data-path": file.path },
      el("h3", {}, el("span", { class: "wb-change-kind" }, file.change), " ", name));
    if (file.withheld) {
      section.append(message("info", "Content withheld: the file is hard-linked, so it may hold content from outside the workspace."));
    } else if (file.binary) {
      section.append(message("info", "Binary file changed."));
    } else {
      const lines = file.patch.split("\n");
      if (lines.length && lines[lines.length - 1] === "") { lines.pop(); }
      const pre = el("pre", { class: "wb-patch" });
      for (const line of lines) {
        pre.append(el("span", { class: `wb-line ${diffLineClass(line)}` }, line + "\n"));
      }
      section.append(pre);
    }
    pane.append(section);
  }
  if (diff.truncated) { pane.append(message("info", "The diff is longer than the agent sends at once: some files are left out.")); }
}
