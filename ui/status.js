// Status window of the Katachi tray app: fills the "Sandbox" section from the app's
// `sandbox_status` command. Every sentence about the sandbox (notice, layer names and
// details) comes from katachi-core; this script only places it, as text (never as HTML).
"use strict";

(function () {
  // `withGlobalTauri` is off, so there is no `window.__TAURI__`; `__TAURI_INTERNALS__.invoke` is
  // what `@tauri-apps/api`'s `invoke` calls. With `connect-src 'none'` Tauri's IPC uses
  // postMessage instead of its custom protocol.
  function invoke(command) {
    const internals = window.__TAURI_INTERNALS__;
    if (!internals || typeof internals.invoke !== "function") {
      return Promise.reject(new Error("not running inside the Katachi app"));
    }
    return internals.invoke(command, {});
  }

  function byId(id) {
    return document.getElementById(id);
  }

  function text(value) {
    return typeof value === "string" ? value : "";
  }

  function layerItem(layer) {
    const active = layer && layer.active === true;
    const item = document.createElement("li");
    item.className = "layer";
    item.dataset.active = active ? "true" : "false";

    const name = document.createElement("span");
    name.className = "layer-name";
    name.textContent = text(layer && layer.name);

    // said in words, not only by colour
    const state = document.createElement("span");
    state.className = "layer-state";
    state.textContent = active ? "active" : "inactive";

    const detail = document.createElement("span");
    detail.className = "layer-detail";
    detail.textContent = text(layer && layer.detail);

    item.append(name, " ", state, detail);
    return item;
  }

  function render(view) {
    const enforced = view && view.enforced === true;
    const state = byId("sandbox-state");
    state.dataset.state = enforced ? "on" : "off";
    state.textContent = enforced ? "on" : "OFF";

    const notice = text(view && view.notice);
    byId("sandbox-notice-text").textContent = notice;
    byId("sandbox-notice").hidden = notice === "";

    const layers = Array.isArray(view && view.layers) ? view.layers : [];
    byId("sandbox-layers").replaceChildren(...layers.map(layerItem));
  }

  function renderError(error) {
    const state = byId("sandbox-state");
    state.dataset.state = "unknown";
    state.textContent = "unknown";
    byId("sandbox-notice-text").textContent =
      "cannot read the sandbox status: " + (error && error.message ? error.message : String(error));
    byId("sandbox-notice").hidden = false;
  }

  function load() {
    invoke("sandbox_status")
      .then(render, renderError)
      .finally(function () {
        byId("sandbox").setAttribute("aria-busy", "false");
      });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", load);
  } else {
    load();
  }
})();
