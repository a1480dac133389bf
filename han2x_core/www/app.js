/* HAN2X web pages: refresh values from the JSON API and draw the power chart.
   fmt() formats exactly like fmt() in han2x_core/webpages.py. No external scripts. */
(function () {
  "use strict";
  var body = document.body, page = body.getAttribute("data-page");
  var NA = body.getAttribute("data-na"), AGO = body.getAttribute("data-ago");
  var UNITS = {w: "W", "var": "VAr", kwh: "kWh", kvarh: "kVArh", mem: "B"};
  var polls = 0;

  function pad(n, w) { n = String(n); while (n.length < w) { n = "0" + n; } return n; }

  function fmt(f, v) {
    if (v === null || v === undefined || v === "") { return NA; }
    if (f === "clock") {
      return pad(v.year, 4) + "-" + pad(v.month, 2) + "-" + pad(v.day, 2) + " " +
        pad(v.hour, 2) + ":" + pad(v.minute, 2) + ":" + pad(v.second, 2);
    }
    if (f === "age") { return v + " " + AGO; }
    if (f === "make") { return v.charAt(0).toUpperCase() + v.slice(1); }
    if (f === "uptime") {
      return Math.floor(v / 86400) + " d " + pad(Math.floor(v / 3600) % 24, 2) + ":" +
        pad(Math.floor(v / 60) % 60, 2) + ":" + pad(v % 60, 2);
    }
    if (f === "temp") { return v.toFixed(1) + " \u00b0C"; }
    if (UNITS.hasOwnProperty(f)) { return v + " " + UNITS[f]; }
    if (f === "kwh3" || f === "kw3") { return v.toFixed(3) + (f === "kwh3" ? " kWh" : " kW"); }
    if (f === "ma" || f === "dv" || f === "wh" || f === "varh") {
      var s = v < 0 ? "-" : "", a = Math.abs(v);
      if (f === "ma") { return s + Math.floor(a / 1000) + "." + pad(Math.floor(a % 1000 / 10), 2) + " A"; }
      if (f === "dv") { return s + Math.floor(a / 10) + "." + (a % 10) + " V"; }
      return s + Math.floor(a / 1000) + "." + pad(a % 1000, 3) + (f === "wh" ? " kWh" : " kVArh");
    }
    return String(v);
  }

  function get(url, done) {
    fetch(url, {cache: "no-store", credentials: "same-origin"})
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (j) { if (j) { done(j); } })
      .catch(function () { body.setAttribute("data-offline", "1"); });
  }

  function lookup(st, k) {
    if (k.indexOf("est.") === 0) { return st.estimated[k.slice(4)]; }
    if (k.indexOf("dev.") === 0) { return st.device[k.slice(4)]; }
    if (k.indexOf("tar.") === 0) {
      if (!st.tariff) { return null; }
      return k === "tar.step" ? st.tariff.step.index : st.tariff[k.slice(4)];
    }
    return st.reading[k];
  }

  function applyStatus(st) {
    var els = document.querySelectorAll("[data-k]"), i;
    for (i = 0; i < els.length; i++) {
      var el = els[i], f = el.getAttribute("data-f"), v = lookup(st, el.getAttribute("data-k"));
      el.textContent = fmt(f, v);
    }
    var tar = st.tariff, card = document.getElementById("tariff");
    if (tar && card) {  /* the capacity tariff: this hour's bar and the crossing colour */
      var bar = document.getElementById("tar-bar");
      bar.max = Math.max(tar.hour_used_kwh + (tar.kwh_left || 0), 0.001);
      bar.value = tar.hour_used_kwh;
      card.className = tar.will_cross ? "card tariff cross" : "card tariff";
      document.getElementById("tar-cross").hidden = !tar.will_cross;
    }
    var warn = document.querySelectorAll("[data-han]");
    for (i = 0; i < warn.length; i++) {
      warn[i].hidden = warn[i].getAttribute("data-han") !== st.device.han_state;
    }
    polls += 1;
    body.setAttribute("data-polls", String(polls));
    body.removeAttribute("data-offline");
  }

  function applyRegisters(j) {
    for (var i = 0; i < j.registers.length; i++) {
      var r = j.registers[i], el = document.querySelector('[data-r="' + r[0] + '"]');
      if (el) { el.textContent = r[1] === null ? NA : String(r[1]); }
    }
    polls += 1;
    body.setAttribute("data-polls", String(polls));
  }

  function drawChart(h) {
    var c = document.getElementById("chart");
    if (!c || !c.getContext) { return; }
    c.width = c.clientWidth || c.width;  /* draw at the shown size: labels stay 11 px */
    c.height = c.clientHeight || c.height;
    var g = c.getContext("2d"), W = c.width, H = c.height, L = 56, R = 8, T = 10, B = 24;
    var s = h.samples, span = 300, max = 100, i;
    for (i = 0; i < s.length; i++) {
      max = Math.max(max, s[i][1], s[i][2]);
      span = Math.max(span, Math.ceil(s[i][0] / 300) * 300);  /* 5-minute steps */
    }
    span = Math.min(span, 1800);
    max = Math.ceil(max / 100) * 100;
    g.clearRect(0, 0, W, H);
    g.font = "11px sans-serif";
    g.fillStyle = "#666";
    g.strokeStyle = "#ddd";
    g.lineWidth = 1;
    for (i = 0; i <= 4; i++) {
      var y = T + (H - T - B) * i / 4;
      g.beginPath(); g.moveTo(L, y); g.lineTo(W - R, y); g.stroke();
      g.fillText(Math.round(max * (4 - i) / 4) + " W", 2, y + 4);
    }
    for (i = 0; i <= 5; i++) {
      var x = L + (W - L - R) * i / 5, m = span / 60 * (5 - i) / 5;
      g.fillText(i === 5 ? "0" : "-" + (m % 1 ? m.toFixed(1) : m) + " min", x - (i === 5 ? 8 : 18), H - 6);
    }
    function line(col, idx) {
      g.strokeStyle = col; g.lineWidth = 2; g.beginPath();
      var started = false;
      for (var k = 0; k < s.length; k++) {
        var age = s[k][0];
        if (age > span) { continue; }
        var px = L + (W - L - R) * (1 - age / span), py = T + (H - T - B) * (1 - s[k][idx] / max);
        if (started) { g.lineTo(px, py); } else { g.moveTo(px, py); started = true; }
      }
      g.stroke();
    }
    line("#1f6fb2", 1);
    line("#d9822b", 2);
    c.setAttribute("data-samples", String(s.length));
  }

  if (page === "dash" || page === "diag") {
    var every = page === "dash" ? 2000 : 5000;
    var tick = function () { get("/api/status", applyStatus); };
    tick();
    setInterval(tick, every);
  }
  if (page === "dash") {
    var hist = function () { get("/api/history", drawChart); };
    hist();
    setInterval(hist, 10000);
  }
  if (page === "diag") {
    setInterval(function () {
      get("/api/frame", function (j) { document.getElementById("frame").textContent = j.hex; });
    }, 5000);
  }
  if (page === "regs") {
    setInterval(function () { get("/api/registers", applyRegisters); }, 5000);
  }
}());
