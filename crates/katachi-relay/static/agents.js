// Keeps "My agents" live: polls the relay every 3 s and updates each row's status in place.
(function () {
  "use strict";
  var table = document.getElementById("agents");
  if (!table) { return; }
  function refresh() {
    fetch("/api/me/agents", { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (agents) {
        if (!agents) { return; }
        agents.forEach(function (a) {
          var row = table.querySelector('tr[data-agent-id="' + a.id + '"]');
          if (!row) { return; }
          var status = row.querySelector('[data-field="status"]');
          status.textContent = a.status;
          status.className = "status " + a.status.replace(/ /g, "-");
          row.querySelector('[data-field="last_seen"]').textContent = a.last_seen;
          row.querySelector('[data-field="workspaces"]').textContent = String(a.workspaces);
        });
      })
      .catch(function () { /* relay unreachable: keep the last view */ });
  }
  setInterval(refresh, 3000);
})();
