// The operator's card pages: the incoming-call pop-up and the client's ticking local clock.
(function () {
  "use strict";

  var POLL_MS = 4000;

  function pollIncoming(box) {
    var url = box.getAttribute("data-url");
    var ext = new URLSearchParams(window.location.search).get("ext");
    if (ext) url += "?ext=" + encodeURIComponent(ext);
    var dismissed = null;
    var shown = null;
    box.querySelector(".card-incoming-close").addEventListener("click", function () {
      dismissed = shown;
      box.hidden = true;
    });

    function tick() {
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) { return response.ok ? response.json() : null; })
        .then(function (data) {
          var call = data && data.call;
          if (!call || call.call_id === dismissed) {
            box.hidden = true;
            return;
          }
          shown = call.call_id;
          box.querySelector(".card-incoming-who").textContent = call.client || call.from;
          box.querySelector(".card-incoming-open").setAttribute("href", call.url);
          box.hidden = false;
        })
        .catch(function () { /* the next poll retries */ })
        .then(function () { window.setTimeout(tick, POLL_MS); });
    }
    tick();
  }

  function tickClock(node) {
    var zone = node.getAttribute("data-time-zone");
    var time = node.querySelector("time");
    if (!zone || !time || !window.Intl) return;
    var format;
    try {
      format = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", hour12: false, timeZone: zone });
    } catch (e) {
      return;
    }
    function update() { time.textContent = format.format(new Date()); }
    update();
    window.setInterval(update, 30000);
  }

  // The offers come from the offer engine, which takes longer than the rest of the card: the
  // card shows at once and the panel fills in.
  function loadOffers(panel) {
    var body = panel.querySelector(".card-offers-body");
    fetch(panel.getAttribute("data-url"), { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (response) {
        if (!response.ok) throw new Error(String(response.status));
        return response.text();
      })
      .then(function (html) { body.innerHTML = html; })
      .catch(function () {
        body.textContent = panel.getAttribute("data-error") || "Offers could not be loaded.";
      })
      .then(function () { panel.setAttribute("aria-busy", "false"); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var offers = document.getElementById("offers");
    if (offers && offers.getAttribute("data-url")) loadOffers(offers);
    var box = document.getElementById("card-incoming");
    if (box) pollIncoming(box);
    var clock = document.querySelector(".card-local-time");
    if (clock) tickClock(clock);
  });
})();
