// Sextant dashboard: live updates over SSE. Pages work without this
// script; with it, regions marked `data-live` refresh within a second of a
// change anywhere, without a reload.
(function () {
  "use strict";
  var src = document.body && document.body.getAttribute("data-live-src");
  var status = document.getElementById("live-status");
  if (!src || !window.EventSource) {
    if (status) status.textContent = "";
    return;
  }
  var busy = false, again = false;
  function say(text) { if (status) status.textContent = text; }

  // Re-fetches this page and swaps each live region by id. Coalesces bursts:
  // at most one fetch in flight and one queued.
  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    fetch(location.href, { credentials: "same-origin", headers: { "X-Sextant-Live": "1" } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) return;
        var doc = new DOMParser().parseFromString(html, "text/html");
        document.querySelectorAll("[data-live]").forEach(function (el) {
          // Never swap a region while someone types in it: what they typed
          // would be lost. The next change refreshes it.
          var active = document.activeElement;
          if (active && el.contains(active) && /^(INPUT|TEXTAREA|SELECT)$/.test(active.tagName)) return;
          var fresh = el.id && doc.getElementById(el.id);
          if (fresh && fresh.innerHTML !== el.innerHTML) {
            var focused = document.activeElement && el.contains(document.activeElement) ? document.activeElement.id : null;
            el.innerHTML = fresh.innerHTML;
            if (focused) { var f = document.getElementById(focused); if (f) f.focus(); }
          }
        });
        say("Live · updated " + new Date().toLocaleTimeString());
      })
      .catch(function () { say("Live · update failed"); })
      .then(function () {
        busy = false;
        if (again) { again = false; refresh(); }
      });
  }

  // Browsers allow six connections per host: close the stream when the
  // page goes away (or into the back/forward cache) and reopen it when the
  // page comes back, so streams of old pages never pile up.
  var es = null;
  function connect() {
    es = new EventSource(src);
    es.addEventListener("hello", function () { say("Live"); });
    es.addEventListener("change", refresh);
    es.onerror = function () { say("Reconnecting…"); };
  }
  window.addEventListener("pagehide", function () { if (es) { es.close(); es = null; } });
  window.addEventListener("pageshow", function (e) { if (e.persisted || !es) { if (es) es.close(); connect(); refresh(); } });
  connect();
})();
