// The Katachi window (katachi-app --window). Every action is a Tauri command of the app; every
// sentence from Rust is placed as text (never as HTML). Secrets go one way: an API key is sent to
// the keychain and never comes back.
"use strict";

(function () {
  const tauri = window.__TAURI__;
  const VIEWS = ["connect", "status", "workspaces", "sandbox", "activity", "settings"];
  const $ = (id) => document.getElementById(id);
  let current = null;
  let status = null;
  let shownCode = null;
  // a code was shown and the sign-in has not ended yet (approval passes through connecting)
  let signingIn = false;
  let expiresAt = 0;
  let caPem = null;
  let pendingLink = null;
  // the agent's status asked for at start, until the first status view uses it (one call, not two)
  let firstStatus = null;

  function invoke(cmd, args) {
    if (!tauri || !tauri.core) {
      return Promise.reject({ code: "window", message: "not running inside the Katachi app" });
    }
    return tauri.core.invoke(cmd, args || {});
  }

  function errorText(err) {
    if (err && typeof err.message === "string") return err.message;
    return String(err);
  }

  function el(tag, props, children) {
    const node = document.createElement(tag);
    Object.assign(node, props || {});
    (children || []).forEach((c) => node.append(c));
    return node;
  }

  function banner(text) {
    $("banner").textContent = text || "";
    $("banner").hidden = !text;
  }

  function when(unix) {
    return unix ? new Date(unix * 1000).toLocaleString() : "—";
  }

  // ---- navigation ----------------------------------------------------------------------------
  function show(view) {
    if (!VIEWS.includes(view)) view = "status";
    current = view;
    VIEWS.forEach((name) => {
      const tab = $("tab-" + name);
      const selected = name === view;
      tab.setAttribute("aria-selected", selected ? "true" : "false");
      tab.tabIndex = selected ? 0 : -1;
      $("view-" + name).hidden = !selected;
    });
    document.body.dataset.view = view;
    return load(view);
  }

  function load(view) {
    switch (view) {
      case "workspaces": return loadWorkspaces();
      case "sandbox": return loadSandbox();
      case "activity": return loadActivity();
      case "settings": return loadSettings();
      case "status": {
        if (firstStatus) {
          const asked = firstStatus;
          firstStatus = null;
          return asked.then(() => {}, () => {});
        }
        return invoke("agent_status").then(renderStatus, agentUnreachable);
      }
      default: return Promise.resolve();
    }
  }

  document.querySelectorAll("[role=tab]").forEach((tab) => {
    tab.addEventListener("click", () => show(tab.dataset.view));
    tab.addEventListener("keydown", (event) => {
      const i = VIEWS.indexOf(tab.dataset.view);
      const step = { ArrowDown: 1, ArrowRight: 1, ArrowUp: -1, ArrowLeft: -1 }[event.key];
      if (step) {
        event.preventDefault();
        const next = VIEWS[(i + step + VIEWS.length) % VIEWS.length];
        show(next);
        $("tab-" + next).focus();
      }
    });
  });

  // ---- status --------------------------------------------------------------------------------
  const WORDS = {
    signed_out: "Signed out",
    waiting_for_approval: "Waiting for approval",
    connecting: "Connecting…",
    connected: "Connected",
    reconnecting: "Reconnecting",
    paused: "Paused",
    error: "Error",
  };

  function agentUnreachable(err) {
    const chip = $("chip");
    chip.dataset.state = "unreachable";
    chip.textContent = "Agent not running";
    $("st-state").textContent = "Agent not running";
    $("st-error").textContent = errorText(err);
  }

  function renderStatus(view) {
    const s = view.status;
    $("st-heartbeat").textContent = when(view.last_heartbeat_at);
    status = s;
    const chip = $("chip");
    chip.dataset.state = s.state;
    chip.textContent = WORDS[s.state] || s.state;
    $("st-state").textContent = WORDS[s.state] || s.state;
    $("st-relay").textContent = s.relay || "—";
    $("st-name").textContent = s.agent_name || "—";
    $("st-since").textContent = s.since ? when(s.since) : "—";
    $("st-retry").textContent = s.state === "reconnecting" ? "at " + when(s.at) + " (in " + s.in_secs + " s)" : s.state === "paused" ? "paused until " + when(s.until) : "—";
    $("st-error").textContent = s.reason || s.message ? [s.reason || s.message, s.fix].filter(Boolean).join(" — ") : "—";
    $("sign-out").hidden = s.state === "signed_out";
    if (s.state === "waiting_for_approval") {
      showCode({ user_code: s.user_code, verification_uri: s.verification_uri, expires_at: s.expires_at });
    } else {
      $("code-panel").hidden = true;
      shownCode = null;
    }
    if (s.state === "waiting_for_approval") {
      signingIn = true;
    } else if (s.state === "signed_out" || s.state === "error") {
      signingIn = false;
    }
    if (s.state === "connected" && signingIn) {
      signingIn = false;
      $("connect-message").textContent = "Connected to " + s.relay + ".";
      show("status");
    }
  }

  // ---- connect -------------------------------------------------------------------------------
  function relayValue() {
    return $("relay").value.trim();
  }

  $("ca-file").addEventListener("change", () => {
    const file = $("ca-file").files[0];
    if (!file) { caPem = null; return; }
    file.text().then((text) => {
      caPem = text;
      $("ca-state").textContent = "CA " + file.name + " will be the only trusted root.";
    });
  });

  $("check").addEventListener("click", () => {
    const msg = $("connect-message");
    msg.textContent = "Checking the relay…";
    invoke("check_relay", { relay: relayValue(), caPem: caPem })
      .then((r) => { msg.textContent = "The relay at " + r.relay + " answers."; },
            (err) => { msg.textContent = errorText(err); });
  });

  $("connect-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const msg = $("connect-message");
    $("connect").disabled = true;
    msg.textContent = "Checking the relay, then asking for a code…";
    invoke("sign_in", { relay: relayValue(), caPem: caPem })
      .then((started) => {
        msg.textContent = started.browser_opened ? "The approval page opened in your browser." : "Open the page below to approve.";
        showCode(started, started.qr_svg);
      }, (err) => { msg.textContent = errorText(err); })
      .finally(() => { $("connect").disabled = false; });
  });

  function showCode(started, svg) {
    expiresAt = started.expires_at;
    $("code-panel").hidden = false;
    const page = started.verification_uri_complete || started.verification_uri;
    $("verification-uri").textContent = page;
    if (shownCode === started.user_code && !svg) return;
    shownCode = started.user_code;
    $("user-code").textContent = started.user_code;
    const qr = svg ? Promise.resolve(svg) : invoke("qr_code", { url: page });
    qr.then((text) => { $("qr").src = "data:image/svg+xml;charset=utf-8," + encodeURIComponent(text); },
            () => { $("qr").removeAttribute("src"); });
    tick();
  }

  function tick() {
    if ($("code-panel").hidden) return;
    const left = Math.max(0, expiresAt - Math.floor(Date.now() / 1000));
    $("countdown").textContent = left > 0
      ? "The code expires in " + Math.floor(left / 60) + ":" + String(left % 60).padStart(2, "0")
      : "The code expired; a fresh one is on its way…";
  }
  setInterval(tick, 1000);

  $("copy-code").addEventListener("click", () => {
    const code = $("user-code").textContent;
    const done = () => { $("copy-code").textContent = "Copied"; setTimeout(() => { $("copy-code").textContent = "Copy"; }, 1500); };
    if (navigator.clipboard && navigator.clipboard.writeText) {
      navigator.clipboard.writeText(code).then(done, () => selectCode());
    } else {
      selectCode();
    }
  });

  function selectCode() {
    const range = document.createRange();
    range.selectNodeContents($("user-code"));
    const sel = window.getSelection();
    sel.removeAllRanges();
    sel.addRange(range);
  }

  $("open-page").addEventListener("click", () => invoke("open_approval_page").catch((e) => { $("connect-message").textContent = errorText(e); }));
  $("cancel-sign-in").addEventListener("click", () => invoke("cancel_sign_in").then(() => { $("code-panel").hidden = true; }, (e) => { $("connect-message").textContent = errorText(e); }));
  $("sign-out").addEventListener("click", () => invoke("sign_out").catch((e) => banner(errorText(e))));

  function offerLink(result) {
    if (!result) return;
    if (result.Err) { banner("This Katachi link cannot be used: " + result.Err.message); return; }
    pendingLink = result.Ok;
    $("link-ask-text").textContent = "A link asks to connect this machine to the relay " + pendingLink.relay + ". Fill it in? Nothing starts until you press Connect.";
    $("link-ask").hidden = false;
    show("connect").then(() => $("link-accept").focus());
  }
  $("link-accept").addEventListener("click", () => {
    if (pendingLink) $("relay").value = pendingLink.relay;
    $("link-ask").hidden = true;
    $("relay").focus();
  });
  $("link-reject").addEventListener("click", () => { pendingLink = null; $("link-ask").hidden = true; });

  // ---- workspaces ----------------------------------------------------------------------------
  function splitList(text) {
    return text.split(/[\s,]+/).filter(Boolean);
  }

  function renderWorkspaces(list) {
    $("workspaces").replaceChildren(...list.map((w) => {
      const cmds = el("input", { value: w.allowed_commands.join(", "), placeholder: "cargo, npm" });
      cmds.setAttribute("aria-label", "Allowed commands in " + w.path);
      const hosts = el("input", { value: w.allowed_hosts.join(", "), placeholder: "crates.io, *.npmjs.org" });
      hosts.setAttribute("aria-label", "Allowed hosts in " + w.path);
      const save = el("button", { textContent: "Save policy" });
      save.addEventListener("click", () => workspaceCall("set_workspace_policy", { policy: { path: w.path, allowed_commands: splitList(cmds.value), allowed_hosts: splitList(hosts.value) } }, "Policy saved for " + w.path));
      const remove = el("button", { textContent: "Remove" });
      remove.setAttribute("aria-label", "Stop allowing " + w.path);
      remove.addEventListener("click", () => workspaceCall("remove_workspace", { path: w.path }, "No longer allowed: " + w.path));
      const head = el("div", { className: "ws-head" }, [el("span", { className: "mono ws-path", textContent: w.path })]);
      if (!w.exists) head.append(el("span", { className: "badge missing", textContent: "missing" }));
      return el("li", { className: "ws" }, [head,
        el("label", {}, ["Commands ", cmds]), el("label", {}, ["Hosts ", hosts]),
        el("div", { className: "row" }, [save, remove])]);
    }));
    if (!list.length) $("workspaces").replaceChildren(el("li", { className: "hint", textContent: "No folder is allowed yet." }));
  }

  function workspaceCall(cmd, args, done) {
    return invoke(cmd, args).then((list) => {
      if (list) { renderWorkspaces(list); $("workspaces-message").textContent = done; }
    }, (err) => { $("workspaces-message").textContent = errorText(err); });
  }

  function loadWorkspaces() {
    return invoke("list_workspaces").then(renderWorkspaces, (err) => { $("workspaces-message").textContent = errorText(err); });
  }
  $("add-workspace").addEventListener("click", () => workspaceCall("pick_workspace", {}, "Folder allowed."));

  // ---- sandbox -------------------------------------------------------------------------------
  function loadSandbox() {
    return invoke("sandbox_status").then((view) => {
      $("sandbox-state").dataset.state = view.enforced ? "on" : "off";
      $("sandbox-state").textContent = view.enforced ? "on" : "OFF";
      $("sandbox-notice").textContent = view.notice || "";
      $("sandbox-notice").hidden = !view.notice;
      $("sandbox-layers").replaceChildren(...view.layers.map((l) => el("li", { className: "layer" }, [
        el("strong", { textContent: l.name }), " ",
        el("span", { className: "badge", textContent: l.active ? "active" : "inactive" }),
        el("div", { className: "hint", textContent: l.detail })])));
    }, (err) => banner(errorText(err)));
  }

  $("self-test").addEventListener("click", () => {
    const button = $("self-test");
    button.disabled = true;
    $("self-test-results").replaceChildren(el("li", { textContent: "Running the escape checks…" }));
    invoke("sandbox_self_test").then((report) => {
      const items = report.results.map((r) => el("li", { className: r.blocked ? "ok" : "bad" }, [
        el("span", { className: "badge", textContent: r.blocked ? "blocked" : "ESCAPED" }), " ", r.attempt,
        el("div", { className: "hint", textContent: r.detail })]));
      if (!report.controls_ok) items.unshift(el("li", { className: "bad", textContent: "Controls failed: allowed actions do not work here." }));
      $("self-test-results").replaceChildren(...items);
      $("self-test").scrollIntoView({ block: "start" });
    }, (err) => $("self-test-results").replaceChildren(el("li", { className: "bad", textContent: errorText(err) })))
      .finally(() => { button.disabled = false; });
  });

  // ---- activity ------------------------------------------------------------------------------
  function bytes(n) {
    if (n < 1024) return n + " B";
    if (n < 1024 * 1024) return (n / 1024).toFixed(1) + " KiB";
    return (n / 1024 / 1024).toFixed(1) + " MiB";
  }

  function loadActivity() {
    return invoke("activity").then((a) => {
      $("egress-total").textContent = bytes(a.total_bytes_out) + " left this machine in total.";
      $("egress").tBodies[0].replaceChildren(...a.egress.map((e) => el("tr", {}, [
        el("td", { className: "mono", textContent: e.workspace_path || "(outside any workspace)" }),
        el("td", { textContent: String(e.calls) }), el("td", { textContent: bytes(e.bytes_out) })])));
      $("records").replaceChildren(...a.records.map((r) => el("li", {}, [
        el("span", { className: "mono", textContent: r.action }), " ",
        el("span", { className: "badge", textContent: r.result }), " ",
        el("span", { className: "hint", textContent: when(r.at) + " · " + r.actor + (r.workspace_path ? " · " + r.workspace_path : "") + (r.bytes_out ? " · " + bytes(r.bytes_out) + " out" : "") })])));
      if (!a.records.length) $("records").replaceChildren(el("li", { className: "hint", textContent: "Nothing recorded yet." }));
    }, (err) => { $("egress-total").textContent = errorText(err); });
  }

  // ---- settings ------------------------------------------------------------------------------
  function settingsMessage(text) { $("settings-message").textContent = text; }

  function renderKeys(states) {
    $("api-keys").replaceChildren(...states.map((k) => {
      const input = el("input", { type: "password", autocomplete: "off", placeholder: k.set ? "replace the saved key" : "paste a key" });
      input.setAttribute("aria-label", k.provider + " API key");
      const save = el("button", { textContent: "Save" });
      save.addEventListener("click", () => {
        const key = input.value;
        input.value = "";
        invoke("set_api_key", { provider: k.provider, key: key }).then((s) => { renderKeys(s); settingsMessage(k.provider + " key saved."); }, (e) => settingsMessage(errorText(e)));
      });
      const clear = el("button", { textContent: "Clear", disabled: !k.set });
      clear.addEventListener("click", () => invoke("clear_api_key", { provider: k.provider }).then((s) => { renderKeys(s); settingsMessage(k.provider + " key removed."); }, (e) => settingsMessage(errorText(e))));
      return el("li", { className: "key" }, [el("strong", { textContent: k.provider }), " ",
        el("span", { className: "badge", textContent: k.set ? "set" : "not set" }), input, save, clear]);
    }));
  }

  function loadSettings() {
    const a = invoke("settings").then((s) => {
      $("autostart").checked = s.autostart;
      $("notifications").checked = s.notifications;
    }, (e) => settingsMessage(errorText(e)));
    const b = invoke("api_keys").then(renderKeys, (e) => settingsMessage(errorText(e)));
    const c = invoke("ai_settings").then(renderAi, (e) => { $("ai-message").textContent = errorText(e); });
    return Promise.all([a, b, c]);
  }

  // ---- AI provider (the default, or one workspace's own) ----------------------------------
  let aiView = null;

  function describeAi(s) {
    return s.provider + " " + s.model + (s.base_url ? " at " + s.base_url : "") + " (key " + s.key_name + ")";
  }

  function aiScope() {
    const path = $("ai-scope").value;
    const ws = aiView ? aiView.workspaces.find((w) => w.path === path) : null;
    return { path: path, workspace: ws };
  }

  function renderAi(view) {
    aiView = view;
    const keep = $("ai-scope").value;
    const scopes = [el("option", { value: "", textContent: "Every workspace (the default)" })].concat(view.workspaces.map((w) =>
      el("option", { value: w.path, textContent: w.path + (w.own ? " — its own" : " — uses the default") })));
    $("ai-scope").replaceChildren(...scopes);
    $("ai-scope").value = view.workspaces.some((w) => w.path === keep) ? keep : "";
    $("ai-provider").replaceChildren(...view.providers.map((p) => el("option", { value: p, textContent: p })));
    fillAi();
  }

  function fillAi() {
    if (!aiView) return;
    const scope = aiScope();
    const shown = scope.workspace ? scope.workspace.own : aiView.default;
    const fallback = aiView.default;
    const s = shown || fallback;
    $("ai-provider").value = s ? s.provider : aiView.providers[0];
    $("ai-model").value = s ? s.model : "";
    $("ai-base-url").value = s && s.base_url ? s.base_url : "";
    $("ai-key-name").value = s && s.key_name !== s.provider ? s.key_name : "";
    $("ai-reset").hidden = !scope.workspace;
    $("ai-reset").disabled = !(scope.workspace && scope.workspace.own);
    let current;
    if (scope.workspace && scope.workspace.own) current = "This workspace uses " + describeAi(scope.workspace.own) + ".";
    else if (fallback) current = (scope.workspace ? "This workspace uses the default: " : "The default is ") + describeAi(fallback) + ".";
    else current = "No provider is set yet: the chat cannot answer until one is saved.";
    $("ai-current").textContent = current;
  }

  $("ai-scope").addEventListener("change", () => { $("ai-message").textContent = ""; fillAi(); });

  $("ai-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const scope = aiScope();
    const choice = {
      workspace: scope.path || null,
      provider: $("ai-provider").value,
      model: $("ai-model").value.trim(),
      base_url: $("ai-base-url").value.trim() || null,
      key_name: $("ai-key-name").value.trim() || null,
    };
    $("ai-save").disabled = true;
    invoke("set_ai_provider", { choice: choice }).then((view) => {
      renderAi(view);
      $("ai-message").textContent = "Saved: " + (scope.path || "every workspace") + " uses " + choice.provider + " " + choice.model + ".";
      return invoke("api_keys").then(renderKeys);
    }).catch((e) => { $("ai-message").textContent = errorText(e); })
      .finally(() => { $("ai-save").disabled = false; });
  });

  $("ai-reset").addEventListener("click", () => {
    const path = $("ai-scope").value;
    if (!path) return;
    invoke("reset_ai_provider", { workspace: path }).then((view) => {
      renderAi(view);
      $("ai-message").textContent = path + " uses the default provider again.";
    }, (e) => { $("ai-message").textContent = errorText(e); });
  });
  $("autostart").addEventListener("change", () => invoke("set_autostart", { enabled: $("autostart").checked }).then((on) => { $("autostart").checked = on; }, (e) => settingsMessage(errorText(e))));
  $("notifications").addEventListener("change", () => invoke("set_notifications", { enabled: $("notifications").checked }).catch((e) => settingsMessage(errorText(e))));

  // ---- start ---------------------------------------------------------------------------------
  function start() {
    const scriptRan = performance.now();
    if (tauri && tauri.event) {
      tauri.event.listen("agent-status", (e) => renderStatus(e.payload));
      tauri.event.listen("agent-unreachable", (e) => agentUnreachable(e.payload));
      tauri.event.listen("show-view", (e) => show(e.payload));
      tauri.event.listen("link", (e) => offerLink(e.payload));
    }
    firstStatus = invoke("agent_status");
    firstStatus.then(renderStatus, agentUnreachable);
    invoke("window_start")
      .then((s) => show(s.view).then(() => s), () => show("status").then(() => ({})))
      .then((s) => {
        firstStatus = null;
        if (s.reason) banner(s.reason);
        offerLink(s.link);
        const focused = document.querySelector("[role=tab][aria-selected=true]");
        if (focused && !s.link) focused.focus();
        return invoke("window_ready", { pageMs: scriptRan }).then((ms) => { document.body.dataset.readyMs = String(ms); });
      })
      .then(() => { document.body.dataset.ready = "true"; })
      .catch(() => { document.body.dataset.ready = "true"; });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
