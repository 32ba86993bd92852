/* Rookery's only script: live streams resume where they stopped; outputs expand and copy.
 *
 * A browser's EventSource sends Last-Event-ID when it reconnects by itself, but
 * htmx's SSE extension opens a brand-new EventSource after an error (a restart, a
 * proxy timeout), which would start from nothing. Remembering the last id per
 * stream and passing it as ?last_event_id= makes the server replay what was missed.
 */
(function () {
  "use strict";
  var lastIds = {};
  function key(url) {
    var u = new URL(url, window.location.href);
    u.searchParams.delete("last_event_id");
    return u.pathname + u.search;
  }
  document.addEventListener("htmx:sseMessage", function (evt) {
    var message = evt.detail;
    if (message && message.lastEventId && message.target && message.target.url) {
      lastIds[key(message.target.url)] = message.lastEventId;
    }
  });
  htmx.createEventSource = function (url) {
    var last = lastIds[key(url)];
    if (last) {
      var u = new URL(url, window.location.href);
      u.searchParams.set("last_event_id", last);
      url = u.pathname + u.search;
    }
    return new EventSource(url, { withCredentials: true });
  };
  /* A row that is already on the page (a run announced twice) is not added again. */
  document.addEventListener("htmx:sseBeforeMessage", function (evt) {
    var data = evt.detail && evt.detail.data || "";
    var found = /^\s*<tr id="([^"]+)"/.exec(data);
    if (found && document.getElementById(found[1])) {
      evt.preventDefault();
    }
    /* A device's result replaces its "waiting" row on a run's page. */
    var device = /^\s*<tr id="result-\d+" data-device-id="(\d+)"/.exec(data);
    var waiting = device && document.getElementById("waiting-device-" + device[1]);
    if (waiting) {
      waiting.remove();
    }
    /* A device's first log line: it is working now (its row says since when). */
    var line = /^\s*<div class="log-line[^"]*" id="log-\d+" data-device-id="(\d+)"><span class="muted">([^<]*)</.exec(data);
    var row = line && document.getElementById("waiting-device-" + line[1]);
    if (row && row.dataset.state === "waiting") {
      row.dataset.state = "working";
      row.querySelector(".working-since").textContent = line[2];
    }
  });
  /* Once a run has ended, the "queued" and "cancelling" notes above it are old news, and
     devices still "waiting" got no result (the results table is reloaded). */
  document.addEventListener("htmx:sseMessage", function () {
    if (document.querySelector("#run-status-card[data-final]")) {
      document.querySelectorAll("main > .flash-success, main > .flash-info, #waiting-body > tr")
        .forEach(function (note) {
          note.remove();
        });
    }
  });
  /* The log level filter: hide lines below the chosen level, live lines included. */
  document.addEventListener("change", function (evt) {
    var select = evt.target.closest("[data-log-filter]");
    if (select) {
      document.getElementById(select.dataset.logFilter).dataset.level = select.value;
    }
  });
  /* A device's output: its button loads it once, and hides it when shown. */
  function slotOf(button) {
    return document.querySelector(button.getAttribute("hx-target"));
  }
  document.addEventListener("htmx:beforeRequest", function (evt) {
    var button = evt.detail.elt;
    if (!button || !button.hasAttribute || !button.hasAttribute("data-output-toggle")) {
      return;
    }
    var slot = slotOf(button);
    if (slot && slot.innerHTML.trim()) {
      evt.preventDefault();
      slot.innerHTML = "";
      button.setAttribute("aria-expanded", "false");
    } else {
      button.setAttribute("aria-expanded", "true");
    }
  });
  document.addEventListener("click", function (evt) {
    /* Expand (or collapse) every output on the page. */
    var all = evt.target.closest("[data-expand-all]");
    if (all) {
      var open = all.dataset.expandAll === "open";
      document.querySelectorAll("[data-output-toggle]").forEach(function (button) {
        var slot = slotOf(button);
        var shown = Boolean(slot && slot.innerHTML.trim());
        if (shown !== open) {
          button.click();
        }
      });
      all.dataset.expandAll = open ? "close" : "open";
      all.textContent = open ? "Collapse all outputs" : "Expand all outputs";
      return;
    }
    /* Copy a block of text (an output) to the clipboard. */
    var copy = evt.target.closest("[data-copy]");
    if (copy) {
      var source = document.querySelector(copy.dataset.copy);
      var text = source ? source.textContent : "";
      var done = function () { copy.textContent = "Copied"; };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(text).then(done);
      } else {
        var area = document.createElement("textarea");
        area.value = text;
        document.body.appendChild(area);
        area.select();
        document.execCommand("copy");
        area.remove();
        done();
      }
    }
  });
})();
