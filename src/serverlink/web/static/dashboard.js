// The serverlink monitoring dashboard: live charts from /api/events (the
// board once a second), lamps that turn red when a server stops reporting,
// and history charts from /api/history. State is kept in window.serverlink.
(function () {
  "use strict";
  var MAX_POINTS = 300;
  var COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf"];
  var state = { kinds: {}, points: {}, lamps: {}, charts: {}, history: null, updates: 0 };
  window.serverlink = state;

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function compact(n) {
    if (n === null || n === undefined) return "";
    var abs = Math.abs(n);
    if (abs >= 1e9) return (n / 1e9).toFixed(abs >= 1e10 ? 0 : 1) + "G";
    if (abs >= 1e6) return (n / 1e6).toFixed(abs >= 1e7 ? 0 : 1) + "M";
    if (abs >= 1e4) return (n / 1e3).toFixed(0) + "k";
    return String(Math.round(n * 100) / 100);
  }

  function chartOptions(title, series) {
    return {
      title: "", width: 300, height: 130, legend: { show: false },
      scales: { x: { time: true } },
      axes: [{ size: 28 }, { size: 48, values: function (u, splits) { return splits.map(compact); } }],
      series: [{}].concat(series.map(function (name, i) {
        return { label: name, stroke: COLORS[i % COLORS.length], width: 1.5, spanGaps: false };
      }))
    };
  }

  function panelFor(server) {
    var id = "server-" + server.no;
    var panel = document.getElementById(id);
    if (panel) return panel;
    panel = el("section", { id: id, "class": "server", "data-no": server.no });
    var head = el("h2");
    head.appendChild(el("span", { "class": "lamp", id: "lamp-" + server.no }));
    var name = server.no === 0 ? "machine and monitoring server" : server.kind + " server";
    head.appendChild(el("span", {}, name + " " + server.no));
    head.appendChild(el("small", { id: "peer-" + server.no }, server.peer || ""));
    panel.appendChild(head);
    panel.appendChild(el("div", { "class": "charts" }));
    var list = document.getElementById("servers");
    var after = Array.prototype.find.call(list.children, function (p) {
      return Number(p.getAttribute("data-no")) > server.no;
    });
    list.insertBefore(panel, after || null);
    return panel;
  }

  function chartFor(server, figure) {
    var key = server.no + ":" + figure.type;
    var chart = state.charts[key];
    if (chart) return chart;
    var box = el("div", { "class": "chart", "data-key": key });
    var title = el("div", { "class": "title" });
    title.appendChild(el("span", {}, figure.label + (figure.unit ? " (" + figure.unit + ")" : "")));
    var number = el("b", { id: "value-" + key }, "");
    title.appendChild(number);
    box.appendChild(title);
    panelFor(server).querySelector(".charts").appendChild(box);
    var points = state.points[key] = { t: [], v: [] };
    chart = state.charts[key] = { plot: new uPlot(chartOptions(figure.label, [figure.label]), [points.t, points.v], box), number: number };
    return chart;
  }

  function addPoint(server, figure, stamp, value) {
    var chart = chartFor(server, figure);
    var points = state.points[server.no + ":" + figure.type];
    var last = points.t.length ? points.t[points.t.length - 1] : -Infinity;
    if (stamp <= last) return;
    points.t.push(stamp);
    points.v.push(value);
    if (points.t.length > MAX_POINTS) { points.t.shift(); points.v.shift(); }
    chart.plot.setData([points.t, points.v]);
    chart.number.textContent = value.toLocaleString();
  }

  function setLamp(server) {
    var lamp = document.getElementById("lamp-" + server.no);
    lamp.className = "lamp " + (server.on ? "on" : "off");
    lamp.title = server.on ? "reporting" : "not reporting";
    state.lamps[server.no] = server.on ? "on" : "off";
    document.getElementById("peer-" + server.no).textContent = server.peer || "";
  }

  function update(board) {
    state.updates += 1;
    board.servers.forEach(function (server) {
      var kind = state.kinds[server.kind];
      if (!kind) return;
      panelFor(server);
      setLamp(server);
      kind.figures.forEach(function (figure, i) {
        var value = server.values[figure.type];
        if (i === 0 || !value) return; // the first figure is the lamp
        addPoint(server, figure, value[1], value[0]);
      });
    });
  }

  function connect() {
    var feed = document.getElementById("feed");
    var source = new EventSource("/api/events");
    source.onopen = function () { feed.textContent = "live"; feed.className = "feed live"; };
    source.onerror = function () { feed.textContent = "reconnecting"; feed.className = "feed"; };
    source.onmessage = function (event) { update(JSON.parse(event.data)); };
  }

  function drawHistory(kind, rows) {
    var box = document.getElementById("history-charts");
    box.textContent = "";
    var times = [], index = {}, servers = [];
    rows.forEach(function (row) {
      if (!(row.time in index)) { index[row.time] = times.length; times.push(row.time); }
      if (servers.indexOf(row.no) < 0) servers.push(row.no);
    });
    var history = { kind: kind.name, times: times, servers: servers, series: {}, charts: 0 };
    kind.figures.forEach(function (figure) {
      var data = [times];
      servers.forEach(function (no) {
        var column = times.map(function () { return null; });
        rows.forEach(function (row) {
          if (row.no === no) column[index[row.time]] = row.values[figure.name];
        });
        data.push(column);
      });
      history.series[figure.name] = data;
      var chartBox = el("div", { "class": "chart", "data-history": figure.name });
      chartBox.appendChild(el("div", { "class": "title" }, figure.label + (figure.unit ? " (" + figure.unit + ")" : "")));
      box.appendChild(chartBox);
      new uPlot(chartOptions(figure.label, servers.map(function (no) { return kind.name + " " + no; })), data, chartBox);
      history.charts += 1;
    });
    state.history = history;
  }

  function loadHistory() {
    var kind = state.kinds[document.getElementById("history-kind").value];
    var since = document.getElementById("history-since").value;
    var status = document.getElementById("history-status");
    status.textContent = "loading";
    return fetch("/api/history?kind=" + encodeURIComponent(kind.name) + "&since=" + encodeURIComponent(since))
      .then(function (r) { return r.json().then(function (body) { return [r.ok, body]; }); })
      .then(function (result) {
        if (!result[0]) { status.textContent = result[1].error || "failed"; return; }
        drawHistory(kind, result[1].rows);
        status.textContent = result[1].rows.length + " rows";
      });
  }
  state.loadHistory = loadHistory;

  fetch("/api/figures").then(function (r) { return r.json(); }).then(function (meta) {
    var select = document.getElementById("history-kind");
    meta.kinds.forEach(function (kind) {
      state.kinds[kind.name] = kind;
      select.appendChild(el("option", { value: kind.name }, kind.name + " (" + kind.table + ")"));
    });
    select.value = "game";
    document.getElementById("history-form").addEventListener("submit", function (event) {
      event.preventDefault();
      loadHistory();
    });
    connect();
    state.ready = true;
  });
})();
