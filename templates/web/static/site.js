// Improvements only: every page works without this file.
// 1. A fresh form preselects the browser's time zone.
// 2. The keywords field shows, as one types, how many recent papers the queries would match.
(function () {
  "use strict";

  function preselectTimezone() {
    var zone = "";
    try {
      zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "";
    } catch (e) {
      return;
    }
    var selects = document.querySelectorAll("select[data-detect-timezone]");
    Array.prototype.forEach.call(selects, function (select) {
      for (var i = 0; i < select.options.length; i++) {
        if (select.options[i].value === zone) {
          select.value = zone;
          return;
        }
      }
    });
  }

  // The page carries the sentence in its own language, with {num} for the count.
  function describe(result, field) {
    if (!result.valid) {
      return result.error;
    }
    var one = field.getAttribute("data-check-one") ||
      "This would have matched {num} paper in the last " + result.days + " days.";
    var many = field.getAttribute("data-check-many") ||
      "This would have matched {num} papers in the last " + result.days + " days.";
    return (result.matches === 1 ? one : many).replace("{num}", String(result.matches));
  }

  function liveCheck() {
    var field = document.querySelector("textarea[data-check-url]");
    var output = document.getElementById("query-check");
    if (!field || !output || !window.fetch) {
      return;
    }
    var url = field.getAttribute("data-check-url");
    var timer = null;
    var latest = 0;
    function check() {
      var text = field.value;
      var ticket = ++latest;
      if (!text.trim()) {
        output.textContent = "";
        output.classList.remove("error");
        return;
      }
      var joiner = url.indexOf("?") < 0 ? "?" : "&";
      fetch(url + joiner + "queries=" + encodeURIComponent(text), {
        headers: { "Accept": "application/json" },
        credentials: "same-origin"
      })
        .then(function (response) {
          if (!response.ok) {
            throw new Error(String(response.status));
          }
          return response.json();
        })
        .then(function (result) {
          if (ticket !== latest) {
            return;  // a newer check is on its way
          }
          output.textContent = describe(result, field);
          output.classList.toggle("error", !result.valid);
        })
        .catch(function () {
          if (ticket === latest) {
            output.textContent = "";
          }
        });
    }
    field.addEventListener("input", function () {
      window.clearTimeout(timer);
      timer = window.setTimeout(check, 400);
    });
  }

  function start() {
    preselectTimezone();
    liveCheck();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
