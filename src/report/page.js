(function () {
  "use strict";
  var table = document.getElementById("rows");
  var filters = document.getElementById("filters");
  var shown = document.getElementById("shown");
  var query = document.getElementById("q");
  if (!table || !filters || !shown || !query) { return; }
  var rows = Array.prototype.slice.call(table.tBodies[0].rows);
  var boxes = Array.prototype.slice.call(filters.querySelectorAll("input[type=checkbox]"));
  var problems = ["failed", "in_doubt", "conflict"];

  function select(outcomes) {
    boxes.forEach(function (b) { b.checked = outcomes === null || outcomes.indexOf(b.value) >= 0; });
  }

  function remember() {
    var on = boxes.filter(function (b) { return b.checked; }).map(function (b) { return b.value; });
    var target = on.length === boxes.length ? location.pathname + location.search : "#outcome=" + on.join(",");
    try { history.replaceState(null, "", target); } catch (e) { /* a file:// page may refuse; the filter still works */ }
  }

  function update() {
    var on = {};
    boxes.forEach(function (b) {
      on[b.value] = b.checked;
      b.parentNode.classList.toggle("off", !b.checked);
    });
    var q = query.value.trim().toLowerCase();
    var n = 0;
    rows.forEach(function (r) {
      var visible = on[r.getAttribute("data-outcome")] === true &&
        (q === "" || r.textContent.toLowerCase().indexOf(q) >= 0);
      r.hidden = !visible;
      if (visible) { n += 1; }
    });
    shown.textContent = "Showing " + n + " of " + rows.length + " rows";
  }

  boxes.forEach(function (b) { b.addEventListener("change", function () { update(); remember(); }); });
  query.addEventListener("input", update);
  document.getElementById("show-all").addEventListener("click", function () { select(null); update(); remember(); });
  document.getElementById("show-problems").addEventListener("click", function () { select(problems); update(); remember(); });

  // A link such as report.html#outcome=failed,in_doubt opens the page with that filter.
  var m = /(?:^#|&)outcome=([a-z_,]*)/.exec(location.hash);
  if (m) { select(m[1].split(",")); }
  filters.hidden = false;
  update();
  document.documentElement.setAttribute("data-ready", "1");
})();
