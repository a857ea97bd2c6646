// While a plan's run is unfinished, poll its progress and reload the page when it moves on
// (status, re-run generation or targets done). Served as a file: the page's CSP allows no inline script.
(function () {
  "use strict";
  var run = document.getElementById("run");
  if (!run || run.dataset.finished === "true") {
    return;
  }
  var seen = [run.dataset.status, run.dataset.generation, run.dataset.targetsDone].join("/");
  function later(seconds) {
    window.setTimeout(poll, seconds * 1000);
  }
  function poll() {
    fetch(run.dataset.progressUrl, { credentials: "same-origin", cache: "no-store" })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (state) {
        if (!state) {
          later(5);
          return;
        }
        if ([state.status, state.generation, state.targets_done].join("/") !== seen) {
          window.location.reload();
          return;
        }
        later(2);
      })
      .catch(function () { later(5); });
  }
  later(2);
})();
