// Switchboard dashboard: keeps the page current without a reload, and asks before
// destructive actions. Plain JavaScript, no build step, no inline script (the CSP forbids it).
//
// Every `data-refresh` seconds (set on <body>, 0 = off) the page fetches its own URL and swaps
// in the new <main>; the server has already escaped everything in it. It waits while the tab
// is hidden or a form field has focus, and reloads the page when the session has ended.
(function () {
  "use strict";

  var seconds = Number(document.body.getAttribute("data-refresh") || "0");
  var busy = false;

  function stamp() {
    var el = document.getElementById("refreshed");
    if (el) el.textContent = "updated " + new Date().toLocaleTimeString();
  }

  function typing() {
    var a = document.activeElement;
    return a && a.closest && a.closest("form") && a.tagName !== "BUTTON";
  }

  function refresh() {
    if (busy || document.hidden || typing()) return;
    busy = true;
    fetch(window.location.href, { credentials: "same-origin", redirect: "manual" })
      .then(function (res) {
        if (res.type === "opaqueredirect" || res.status === 401) {
          window.location.reload();
          return null;
        }
        return res.ok ? res.text() : null;
      })
      .then(function (html) {
        if (!html) return;
        var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("main");
        var current = document.getElementById("main");
        if (fresh && current) {
          current.replaceWith(document.importNode(fresh, true));
          stamp();
        }
      })
      .catch(function () { /* the next round tries again */ })
      .then(function () { busy = false; });
  }

  document.addEventListener("submit", function (event) {
    var question = event.target.getAttribute("data-confirm");
    if (question && !window.confirm(question)) event.preventDefault();
  });

  if (seconds > 0) window.setInterval(refresh, seconds * 1000);
  stamp();
})();
