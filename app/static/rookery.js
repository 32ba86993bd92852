/* Rookery's only script: live streams resume where they stopped.
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
    var found = /^\s*<tr id="([^"]+)"/.exec(evt.detail && evt.detail.data || "");
    if (found && document.getElementById(found[1])) {
      evt.preventDefault();
    }
  });
  /* The log level filter: hide lines below the chosen level, live lines included. */
  document.addEventListener("change", function (evt) {
    var select = evt.target.closest("[data-log-filter]");
    if (select) {
      document.getElementById(select.dataset.logFilter).dataset.level = select.value;
    }
  });
})();
