// twinmesh fleet page: replace the table's rows with what the node streams
// (server-sent events of server-rendered, escaped HTML). No other script.
"use strict";
(function () {
  var body = document.querySelector("[data-live]");
  var status = document.getElementById("live-status");
  if (!body || !window.EventSource) {
    if (status) status.textContent = "Live updates unavailable in this browser: reload to refresh.";
    return;
  }
  var source = new EventSource(body.getAttribute("data-live"));
  source.addEventListener("rows", function (ev) {
    body.innerHTML = ev.data;
    if (status) status.textContent = "Live: updated " + new Date().toISOString().slice(11, 19) + " UTC";
  });
  source.onerror = function () {
    if (status) status.textContent = "Live updates interrupted (is the node up?); retrying…";
  };
})();
