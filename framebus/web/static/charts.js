// Charts of a stream's fps and drops, drawn as inline SVG: no library, nothing fetched.
// A history is a list of [time (s), fps, drops so far] points, oldest first.
"use strict";
(function () {
  const NS = "http://www.w3.org/2000/svg";

  function child(svg, tag, attrs) {
    const node = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    svg.appendChild(node);
    return node;
  }

  // The viewBox's coordinates of the points (t, y), over the last `window` seconds.
  function coords(svg, points, window, top) {
    const box = svg.viewBox.baseVal;
    const end = points.length ? points[points.length - 1][0] : 0;
    return points.map(([t, y]) => [
      box.width * (1 - (end - t) / window),
      box.height * (1 - y / top),
    ]);
  }

  function scale(values) {
    const top = Math.max(1, ...values);
    return top * 1.15;
  }

  // A line of fps.
  function line(svg, history, window) {
    svg.replaceChildren();
    const points = history.map(([t, fps]) => [t, fps]);
    const xy = coords(svg, points, window, scale(points.map((p) => p[1])));
    child(svg, "polyline", { points: xy.map((p) => p.join(",")).join(" ") });
  }

  // Bars of drops per second, from the growth of the drop count between points.
  function bars(svg, history, window) {
    svg.replaceChildren();
    const rates = [];
    for (let i = 1; i < history.length; i++) {
      const [t0, , d0] = history[i - 1];
      const [t1, , d1] = history[i];
      // A restarted producer counts from 0 again: no negative drops.
      rates.push([t1, t1 > t0 ? Math.max(0, d1 - d0) / (t1 - t0) : 0]);
    }
    const top = scale(rates.map((r) => r[1]));
    const box = svg.viewBox.baseVal;
    const width = Math.max(1, box.width / (window / 0.5));
    for (const [x, y] of coords(svg, rates, window, top)) {
      if (y < box.height) child(svg, "rect", { class: "bar", x: x - width, y, width, height: box.height - y });
    }
    return rates.length ? rates[rates.length - 1][1] : 0;
  }

  window.framebusCharts = { line, bars };
})();
