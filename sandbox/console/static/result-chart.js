// The result's chart (Apache ECharts, vendored): data from the page's data-chart attribute, no inline script.
// A withheld cell is a gap in its bar series and a marker of the "withheld" series on the axis: never a value.
(function () {
  "use strict";

  function draw(element) {
    var data = JSON.parse(element.getAttribute("data-chart"));
    var chart = echarts.init(element, null, { locale: data.locale, renderer: "canvas" });
    var series = data.series.map(function (one) {
      return { name: one.name, type: "bar", data: one.data };
    });
    if (data.withheld.length) {
      series.push({
        name: data.texts.withheld,
        type: "scatter",
        symbol: "path://M0,0 L10,10 M10,0 L0,10",
        symbolSize: 12,
        itemStyle: { color: "#a4161a", borderColor: "#a4161a", borderWidth: 2 },
        label: { show: true, position: "top", color: "#a4161a", formatter: data.texts.withheld },
        tooltip: { trigger: "item", formatter: function (point) {
          return point.value[2] + " · " + data.categories[point.value[0]] + ": " + data.texts.withheld_explained;
        } },
        data: data.withheld.map(function (cell) { return [cell[0], 0, cell[1]]; })
      });
    }
    chart.setOption({
      aria: { enabled: true },
      animation: false,
      tooltip: { trigger: "axis" },
      legend: { top: 0 },
      grid: { left: 64, right: 24, top: 48, bottom: 64 },
      xAxis: { type: "category", data: data.categories, axisLabel: { interval: 0, rotate: data.categories.length > 12 ? 45 : 0 } },
      yAxis: { type: "value" },
      series: series
    });
    element.setAttribute("data-drawn", "true");
    window.addEventListener("resize", function () { chart.resize(); });
  }

  function start() {
    var charts = document.querySelectorAll("[data-chart]");
    for (var i = 0; i < charts.length; i++) {
      draw(charts[i]);
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
