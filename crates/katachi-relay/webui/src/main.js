// The agent workbench: workspace picker, file tree, CodeMirror file viewer, git status and diff, Run, Chat, all
// through the relay's `/agents/{id}/api/...` route (the browser never reaches the agent itself).
// The page (crates/katachi-relay/src/web/workbench.rs) provides the elements looked up here.

import "./workbench.css";
import { AgentApi } from "./api.js";
import { el, fill, message } from "./dom.js";
import { FileTree } from "./tree.js";
import { GitPanel, renderDiff } from "./git.js";
import { Viewer } from "./viewer.js";
import { RunPanel } from "./run.js";
import { ChatPanel } from "./chat.js";

function byId(id) {
  const node = document.getElementById(id);
  if (!node) { throw new Error(`the workbench page lacks #${id}`); }
  return node;
}

function start(root) {
  const api = new AgentApi(root.dataset.agentId);
  const ui = {
    banner: byId("banner"),
    agentState: byId("agent-state"),
    picker: byId("workspace-picker"),
    workspacePath: byId("workspace-path"),
    tree: byId("file-tree"),
    gitSummary: byId("git-summary"),
    gitList: byId("git-status"),
    gitRefresh: byId("git-refresh"),
    diffAll: byId("diff-all"),
    tabFile: byId("tab-file"),
    tabDiff: byId("tab-diff"),
    filePanel: byId("file-panel"),
    diffPanel: byId("diff-panel"),
    diffTitle: byId("diff-title"),
    diffView: byId("diff-view"),
    tabRun: byId("tab-run"),
    runPanel: byId("run-panel"),
    tabChat: byId("tab-chat"),
    chatPanel: byId("chat-panel"),
  };
  let workspace = null;
  /** Counts diff requests, so only the latest one is shown. */
  let diffRequests = 0;

  function showTab(which) {
    const tabs = [["file", ui.tabFile, ui.filePanel], ["diff", ui.tabDiff, ui.diffPanel], ["run", ui.tabRun, ui.runPanel],
      ["chat", ui.tabChat, ui.chatPanel]];
    for (const [name, tab, panel] of tabs) {
      panel.hidden = name !== which;
      tab.setAttribute("aria-selected", String(name === which));
    }
  }

  /** The agent cannot be reached: say so once, at the top, with a way to try again. */
  function agentGone(error) {
    ui.agentState.textContent = "offline";
    ui.agentState.className = "status offline";
    const retry = el("button", { type: "button", id: "retry" }, "Retry");
    retry.addEventListener("click", () => { loadWorkspaces(); });
    fill(ui.banner, message("error", `This agent cannot be reached: ${error.message}`, " ", retry));
    ui.banner.hidden = false;
    if (workspace === null) {
      fill(ui.tree, message("muted", "The agent's files appear here once it is reachable."));
      ui.gitSummary.textContent = "";
      fill(ui.gitList);
    }
  }

  function reportIfGone(error) {
    if (error && error.agentGone) { agentGone(error); }
  }

  const viewer = new Viewer({
    title: byId("file-title"),
    meta: byId("file-meta"),
    status: byId("file-status"),
    edit: byId("file-edit"),
    save: byId("file-save"),
    pane: byId("file-view"),
  }, api, () => { if (workspace !== null) { git.load(workspace); } });
  const tree = new FileTree(ui.tree, api, (entry) => {
    showTab("file");
    viewer.open(workspace, entry).catch(reportIfGone);
  });
  const git = new GitPanel(ui.gitList, ui.gitSummary, api, (path) => { showDiff(path); });
  const run = new RunPanel({
    form: byId("run-form"),
    command: byId("run-command"),
    args: byId("run-args"),
    cwd: byId("run-cwd"),
    start: byId("run-start"),
    stop: byId("run-stop"),
    sandbox: byId("run-sandbox"),
    status: byId("run-status"),
    denial: byId("run-denial"),
    output: byId("run-output"),
  }, api);
  const chat = new ChatPanel({
    sessions: byId("chat-sessions"),
    newChat: byId("chat-new"),
    title: byId("chat-title"),
    model: byId("chat-model"),
    usage: byId("chat-usage"),
    rename: byId("chat-rename"),
    exportButton: byId("chat-export"),
    remove: byId("chat-delete"),
    confirm: byId("chat-confirm"),
    modelMissing: byId("chat-model-missing"),
    modelMessage: byId("chat-model-message"),
    modelRetry: byId("chat-model-retry"),
    older: byId("chat-older"),
    log: byId("chat-log"),
    status: byId("chat-status"),
    form: byId("chat-form"),
    input: byId("chat-input"),
    send: byId("chat-send"),
    stop: byId("chat-stop"),
    grants: byId("chat-grants"),
    grantsStatus: byId("chat-grants-status"),
    notes: byId("chat-notes"),
    noteForm: byId("chat-note-form"),
    noteKey: byId("chat-note-key"),
    noteValue: byId("chat-note-value"),
    notesStatus: byId("chat-notes-status"),
  }, api);
  chat.onError = reportIfGone;
  run.onError = reportIfGone;
  viewer.onError = reportIfGone;
  tree.onError = reportIfGone;
  git.onError = reportIfGone;

  async function showDiff(path) {
    showTab("diff");
    ui.diffTitle.textContent = path ? `Changes in ${path}` : "All changes (HEAD → working tree)";
    fill(ui.diffView, message("muted", "Loading…"));
    const request = ++diffRequests;
    try {
      const diff = await api.gitDiff(workspace, path);
      if (request === diffRequests) { renderDiff(ui.diffView, diff, path); }
    } catch (e) {
      if (request === diffRequests) { fill(ui.diffView, message("error", e.message)); }
      reportIfGone(e);
    }
  }

  function selectWorkspace(info) {
    workspace = info.id;
    diffRequests += 1;
    ui.picker.value = String(info.id);
    ui.workspacePath.textContent = info.path;
    history.replaceState(null, "", `#ws=${info.id}`);
    viewer.showMessage("muted", "Choose a file in the tree.");
    viewer.parts.title.textContent = "";
    viewer.parts.meta.textContent = "";
    fill(ui.diffView, message("muted", "Choose a changed file, or All changes."));
    showTab("file");
    tree.load(info.id).catch(reportIfGone);
    git.load(info.id).catch(reportIfGone);
    run.load(info.id).catch(reportIfGone);
    chat.load(info.id).catch(reportIfGone);
  }

  async function loadWorkspaces() {
    ui.banner.hidden = true;
    ui.agentState.textContent = "connecting…";
    ui.agentState.className = "status";
    let list;
    try {
      list = await api.workspaces();
    } catch (e) {
      if (e.agentGone) { agentGone(e); return; }
      const retry = el("button", { type: "button", id: "retry" }, "Retry");
      retry.addEventListener("click", () => { loadWorkspaces(); });
      fill(ui.banner, message("error", e.message, " ", retry));
      ui.banner.hidden = false;
      ui.agentState.textContent = "error";
      return;
    }
    ui.agentState.textContent = "online";
    ui.agentState.className = "status online";
    const workspaces = list.workspaces || [];
    fill(ui.picker, ...workspaces.map((w) => el("option", { value: String(w.id), title: w.path }, w.name || w.path)));
    ui.picker.disabled = workspaces.length === 0;
    if (workspaces.length === 0) {
      ui.workspacePath.textContent = "";
      fill(ui.tree, message("info", "This agent allows no workspace folder yet: run `katachi workspace add PATH` on its machine."));
      fill(ui.gitList);
      return;
    }
    const wanted = /^#ws=(\d+)$/.exec(window.location.hash);
    const chosen = workspaces.find((w) => wanted && String(w.id) === wanted[1]) || workspaces[0];
    ui.picker.onchange = () => {
      const next = workspaces.find((w) => String(w.id) === ui.picker.value);
      if (next) { selectWorkspace(next); }
    };
    selectWorkspace(chosen);
  }

  ui.tabFile.addEventListener("click", () => showTab("file"));
  ui.tabDiff.addEventListener("click", () => showTab("diff"));
  ui.tabRun.addEventListener("click", () => showTab("run"));
  ui.tabChat.addEventListener("click", () => showTab("chat"));
  ui.gitRefresh.addEventListener("click", () => { if (workspace !== null) { git.load(workspace).catch(reportIfGone); } });
  ui.diffAll.addEventListener("click", () => { if (workspace !== null) { showDiff(""); } });
  loadWorkspaces();
}

const root = document.getElementById("workbench");
if (root) { start(root); }
