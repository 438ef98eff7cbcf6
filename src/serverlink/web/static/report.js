// The dummy's HTML report: charts of the run from the embedded JSON report.
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("report-data").textContent);
  var drawn = window.reportCharts = [];
  function chart(id, title, seconds, series) {
    var box = document.getElementById(id);
    if (!box || !seconds.length) return;
    var xs = seconds.map(function (_, i) { return i + 1; });
    var opts = {
      title: title, width: 900, height: 260,
      scales: { x: { time: false } },
      axes: [{ label: "second of the run", incrs: [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600] }, { size: 60 }],
      series: [{ label: "second" }].concat(series.map(function (s) {
        return { label: s[0], stroke: s[1], width: 1.5 };
      }))
    };
    drawn.push(new uPlot(opts, [xs].concat(series.map(function (s) { return s[2]; })), box));
  }
  var colors = { p50: "#2ca02c", p90: "#ff7f0e", p99: "#d62728" };
  function percentiles(lat) {
    return ["p50", "p90", "p99"].filter(function (k) { return lat && lat[k]; })
      .map(function (k) { return [k + " ms", colors[k], lat[k]]; });
  }
  var echo = data.echo_per_s_series || [];
  var throughput = [["echo replies/s", "#1f77b4", echo]];
  if (data.login_flows_per_s_series) {
    throughput.push(["login flows/s", "#9467bd", data.login_flows_per_s_series]);
  }
  chart("throughput", "Throughput per second", echo, throughput);
  // A second without samples is null: uPlot leaves a gap there.
  var lat = { p50: data.latency_p50_ms_series, p99: data.latency_p99_ms_series };
  chart("latency", "Echo latency percentiles per second (ms)", lat.p50 || [], percentiles(lat));
  if (data.login_latency_p50_ms_series) {
    var login = { p50: data.login_latency_p50_ms_series, p99: data.login_latency_p99_ms_series };
    chart("login-latency", "Login flow percentiles per second (ms)", login.p50, percentiles(login));
  }
})();
