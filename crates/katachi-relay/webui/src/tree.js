// The file tree: one folder level per request, expanded on click, each level paged by following
// `next_cursor` ("Show more"). Folders the agent lists but does not enter (`heavy`) open on request.

import { el, fill, message, formatSize } from "./dom.js";

export class FileTree {
  /** `root`: the tree's container; `api`: an `AgentApi`; `onOpen(entry)`: a file was chosen. */
  constructor(root, api, onOpen) {
    this.root = root;
    this.api = api;
    this.onOpen = onOpen;
    this.ws = null;
    this.selected = null;
    /** Told of every failed call (the page reports an unreachable agent once, at the top). */
    this.onError = () => {};
  }

  /** Shows workspace `ws` from its root. */
  async load(ws) {
    this.ws = ws;
    this.selected = null;
    const list = el("ul", { class: "wb-tree", role: "tree" });
    fill(this.root, list);
    await this.loadLevel(list, "", null);
  }

  /** Lists folder `path` into `list` from `cursor` on (appending). */
  async loadLevel(list, path, cursor) {
    const ws = this.ws;
    const pending = el("li", { class: "wb-tree-pending muted" }, "Loading…");
    list.append(pending);
    let page;
    try {
      page = await this.api.tree(ws, path, cursor);
    } catch (e) {
      pending.remove();
      if (ws !== this.ws) { return; }
      this.onError(e);
      const retry = el("button", { type: "button", class: "link", onclick: () => { item.remove(); this.loadLevel(list, path, cursor); } }, "Retry");
      const item = el("li", { class: "wb-tree-error" }, message("error", e.message, " ", retry));
      list.append(item);
      return;
    }
    pending.remove();
    if (ws !== this.ws) { return; }
    if (!cursor && page.entries.length === 0) {
      list.append(el("li", { class: "muted" }, "(empty folder)"));
    }
    for (const entry of page.entries) { list.append(this.node(entry)); }
    if (page.partial_dirs && page.partial_dirs.length) {
      list.append(el("li", { class: "muted" }, "This folder is too large to list whole: only some of its entries are shown."));
    }
    if (page.skipped_non_utf8) {
      list.append(el("li", { class: "muted" }, `${page.skipped_non_utf8} entries with names that are not UTF-8 are not shown.`));
    }
    if (page.next_cursor) {
      const more = el("button", { type: "button", class: "link wb-tree-more" }, "Show more…");
      const item = el("li", {}, more);
      more.addEventListener("click", () => { item.remove(); this.loadLevel(list, path, page.next_cursor); });
      list.append(item);
    }
  }

  /** One entry: a folder toggles its children, a file opens in the viewer. */
  node(entry) {
    const isDir = entry.kind === "dir";
    const label = el("button", {
      type: "button",
      class: `wb-node ${entry.kind}`,
      "data-path": entry.path,
      "data-kind": entry.kind,
      title: isDir ? entry.path : `${entry.path} · ${formatSize(entry.size || 0)}`,
    }, entry.name + (isDir ? "/" : ""));
    const item = el("li", { role: "treeitem" }, label);
    if (entry.heavy) { label.append(el("span", { class: "wb-tag" }, "deps/build")); }
    if (isDir) {
      let children = null;
      item.setAttribute("aria-expanded", "false");
      label.addEventListener("click", () => {
        if (children) {
          const open = children.hidden;
          children.hidden = !open;
          item.setAttribute("aria-expanded", String(open));
          return;
        }
        children = el("ul", { role: "group" });
        item.append(children);
        item.setAttribute("aria-expanded", "true");
        this.loadLevel(children, entry.path, null);
      });
    } else if (entry.kind === "file" || entry.kind === "symlink") {
      label.addEventListener("click", () => {
        if (this.selected) { this.selected.classList.remove("selected"); }
        this.selected = label;
        label.classList.add("selected");
        this.onOpen(entry);
      });
    } else {
      label.disabled = true;
      label.title = `${entry.path}: not a regular file`;
    }
    return item;
  }
}
