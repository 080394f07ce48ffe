// Filters and sorting for the sample cards; no network, no globals. Everything it reads is in
// data-* attributes and the JSON block #report-meta (both escaped by the renderer).
(function () {
  "use strict";
  var meta = JSON.parse(document.getElementById("report-meta").textContent);

  function value(bar, name) {
    var el = bar.querySelector('[data-filter="' + name + '"]');
    return el ? el.value : "";
  }

  function apply(bar) {
    var key = bar.getAttribute("data-section");
    var box = document.getElementById(key + "-cards");
    if (!box) { return; }
    var run = value(bar, "run"), dim = value(bar, "dim"), category = value(bar, "category"), outcome = value(bar, "status");
    var query = value(bar, "q").trim().toLowerCase();
    var rowFilter = dim !== "" || outcome !== "";
    var cards = box.querySelectorAll("article.card");
    var shownCards = 0, shownRows = 0;
    for (var i = 0; i < cards.length; i++) {
      var card = cards[i];
      var visible = (run === "" || card.getAttribute("data-run") === run) &&
                    (category === "" || card.getAttribute("data-category") === category);
      if (visible && query) { visible = card.textContent.toLowerCase().indexOf(query) !== -1; }
      var rows = card.querySelectorAll("tr.v"), n = 0;
      for (var j = 0; j < rows.length; j++) {
        var ok = (dim === "" || rows[j].getAttribute("data-dim") === dim) &&
                 (outcome === "" || rows[j].getAttribute("data-outcome") === outcome);
        rows[j].hidden = !ok;
        if (ok) { n++; }
      }
      if (rowFilter && n === 0) { visible = false; }
      card.hidden = !visible;
      if (visible) { shownCards++; shownRows += n; }
    }
    var total = (meta.sections[key] || {}).cards || cards.length;
    var shown = bar.querySelector(".shown");
    if (shown) {
      shown.textContent = "showing " + shownCards + " of " + total + " sample cards, " + shownRows + " criteria";
    }
    var empty = document.getElementById(key + "-empty");
    if (empty) { empty.hidden = shownCards !== 0; }
  }

  function number(card, name, missing) {
    var v = parseFloat(card.getAttribute(name));
    return isNaN(v) ? missing : v;
  }

  function sort(bar) {
    var key = bar.getAttribute("data-section");
    var box = document.getElementById(key + "-cards");
    if (!box) { return; }
    var how = value(bar, "sort");
    var cards = Array.prototype.slice.call(box.querySelectorAll("article.card"));
    cards.sort(function (a, b) {
      var d = 0;
      if (how === "score-asc") { d = number(a, "data-score", Infinity) - number(b, "data-score", Infinity); }
      else if (how === "score-desc") { d = number(b, "data-score", -Infinity) - number(a, "data-score", -Infinity); }
      else if (how === "fails") { d = number(b, "data-fails", 0) - number(a, "data-fails", 0); }
      if (d !== d) { d = 0; }  // Infinity - Infinity
      return d || number(a, "data-order", 0) - number(b, "data-order", 0);
    });
    for (var i = 0; i < cards.length; i++) { box.appendChild(cards[i]); }
  }

  var bars = document.querySelectorAll(".filters[data-section]");
  Array.prototype.forEach.call(bars, function (bar) {
    var timer = null;
    bar.addEventListener("change", function (event) {
      if (event.target.getAttribute("data-filter") === "sort") { sort(bar); } else { apply(bar); }
    });
    bar.addEventListener("input", function (event) {
      if (event.target.getAttribute("data-filter") !== "q") { return; }
      clearTimeout(timer);
      timer = setTimeout(function () { apply(bar); }, 150);
    });
    bar.addEventListener("submit", function (event) { event.preventDefault(); });
    bar.addEventListener("reset", function () {
      setTimeout(function () { sort(bar); apply(bar); }, 0);
    });
    apply(bar);
  });

  // A link to a card (from the comparison tables) clears the filters that would hide it.
  document.addEventListener("click", function (event) {
    var link = event.target.closest ? event.target.closest("a.to-card") : null;
    if (!link) { return; }
    var target = document.getElementById(link.getAttribute("href").slice(1));
    if (target && target.hidden) {
      var bar = document.querySelector('.filters[data-section="' + link.getAttribute("data-section") + '"]');
      if (bar) { bar.reset(); sort(bar); apply(bar); }
    }
  });
})();
