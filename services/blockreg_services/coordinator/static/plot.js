// Small SVG plots drawn by hand (no plotting library): a line/point plot with axes and ticks,
// and an image with an overlay of lines and boxes in pixel coordinates.
import {fmtNumber, s} from "./util.js";

function ticks(lo, hi, count = 5) {
  if (!(hi > lo)) return [lo];
  const step = Math.pow(10, Math.floor(Math.log10((hi - lo) / count)));
  const nice = [1, 2, 5, 10].map((m) => m * step).find((st) => (hi - lo) / st <= count) || step * 10;
  const out = [];
  for (let v = Math.ceil(lo / nice) * nice; v <= hi + 1e-12 * Math.abs(hi); v += nice) out.push(v);
  return out;
}

/**
 * A plot of series [{x: [...], y: [...], label, kind: "line"|"points", class}] in an SVG.
 * options: width, height, xlabel, ylabel, logx, title.
 */
export function linePlot(series, {width = 640, height = 240, xlabel = "", ylabel = "", logx = false,
                                  title = ""} = {}) {
  const m = {l: 62, r: 12, t: series.some((se) => se.label) ? 26 : 12, b: 40};  // legend on top
  const fx = (v) => (logx ? Math.log10(v) : v);
  const xs = [], ys = [];
  for (const se of series) {
    se.x.forEach((x, i) => {
      const y = se.y[i];
      if (isFinite(fx(x)) && y !== null && isFinite(y)) { xs.push(fx(x)); ys.push(y); }
    });
  }
  const svg = s("svg", {viewBox: `0 0 ${width} ${height}`, class: "plot", role: "img",
                        "aria-label": title || ylabel});
  if (!xs.length) {
    svg.append(s("text", {x: width / 2, y: height / 2, "text-anchor": "middle", class: "muted"},
                 "no data yet"));
    return svg;
  }
  let [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  let [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  if (x1 === x0) { x0 -= 1; x1 += 1; }
  if (y1 === y0) { const d = Math.abs(y0) * 0.1 || 1; y0 -= d; y1 += d; }
  const pad = (y1 - y0) * 0.05; y0 -= pad; y1 += pad;
  const px = (v) => m.l + (fx(v) - x0) / (x1 - x0) * (width - m.l - m.r);
  const py = (v) => height - m.b - (v - y0) / (y1 - y0) * (height - m.t - m.b);
  const axes = s("g", {class: "axes"});
  axes.append(s("line", {x1: m.l, y1: height - m.b, x2: width - m.r, y2: height - m.b}),
              s("line", {x1: m.l, y1: m.t, x2: m.l, y2: height - m.b}));
  for (const t of ticks(x0, x1)) {
    const x = m.l + (t - x0) / (x1 - x0) * (width - m.l - m.r);
    axes.append(s("line", {x1: x, x2: x, y1: height - m.b, y2: height - m.b + 4}),
                s("text", {x, y: height - m.b + 16, "text-anchor": "middle"},
                  logx ? `1e${t}` : fmtNumber(t)));
  }
  for (const t of ticks(y0, y1)) {
    const y = py(t);
    axes.append(s("line", {x1: m.l - 4, x2: m.l, y1: y, y2: y}),
                s("line", {x1: m.l, x2: width - m.r, y1: y, y2: y, class: "gridline"}),
                s("text", {x: m.l - 6, y: y + 4, "text-anchor": "end"}, fmtNumber(t)));
  }
  axes.append(s("text", {x: (m.l + width - m.r) / 2, y: height - 6, "text-anchor": "middle"}, xlabel),
              s("text", {x: 12, y: (m.t + height - m.b) / 2, "text-anchor": "middle",
                         transform: `rotate(-90 12 ${(m.t + height - m.b) / 2})`}, ylabel));
  svg.append(axes);
  series.forEach((se, k) => {
    const pts = se.x.map((x, i) => [x, se.y[i]]).filter(([x, y]) => isFinite(fx(x)) && y !== null && isFinite(y));
    const cls = `series series-${k} ${se.class || ""}`;
    if (se.kind === "points") {
      const g = s("g", {class: cls});
      for (const [x, y] of pts) g.append(s("circle", {cx: px(x), cy: py(y), r: 3},
                                           s("title", {}, `${fmtNumber(x)}: ${fmtNumber(y)}`)));
      svg.append(g);
    } else if (pts.length) {
      const d = pts.map(([x, y], i) => `${i ? "L" : "M"}${px(x).toFixed(1)},${py(y).toFixed(1)}`).join("");
      svg.append(s("path", {d, class: cls}));
    }
    if (se.marker !== undefined && se.marker !== null) {
      svg.append(s("line", {x1: px(se.marker), x2: px(se.marker), y1: m.t, y2: height - m.b,
                            class: "marker"}));
    }
  });
  if (series.some((se) => se.label)) {
    const legend = s("g", {class: "legend"});
    let x = width - m.r;
    for (const se of series.filter((one) => one.label).reverse()) {
      legend.append(s("text", {x, y: 14, "text-anchor": "end",
                               class: `series-${series.indexOf(se)}`}, se.label));
      x -= 9 * se.label.length + 24;
    }
    svg.append(legend);
  }
  return svg;
}

/** An image (URL) of `shape` [rows, cols] in an SVG, with `overlay` elements in pixel units. */
export function imageFigure(url, shape, overlay = [], {label = "image", maxWidth = 480} = {}) {
  const [rows, cols] = shape;
  const svg = s("svg", {viewBox: `-0.5 -0.5 ${cols} ${rows}`, class: "figure", role: "img",
                        "aria-label": label, preserveAspectRatio: "xMidYMid meet",
                        style: `max-width:${maxWidth}px`});
  svg.append(s("image", {href: url, x: -0.5, y: -0.5, width: cols, height: rows,
                         preserveAspectRatio: "none", style: "image-rendering:pixelated"}));
  svg.append(...overlay);
  return svg;
}

/** Grid lines through node positions displaced by u (2-D: nodes [ys, xs], u[i][j] = [uy, ux]). */
export function deformationGrid(nodes, u, {scale = 1, cls = "defgrid"} = {}) {
  const [ys, xs] = nodes.slice(-2);
  const at = (i, j) => {
    const d = u ? u[i][j].slice(-2) : [0, 0];
    return [xs[j] + scale * d[1], ys[i] + scale * d[0]];
  };
  const g = s("g", {class: cls});
  const line = (pts) => s("path", {d: pts.map(([x, y], k) => `${k ? "L" : "M"}${x.toFixed(2)},${y.toFixed(2)}`).join(""),
                                   "vector-effect": "non-scaling-stroke"});
  for (let i = 0; i < ys.length; i++) g.append(line(xs.map((_, j) => at(i, j))));
  for (let j = 0; j < xs.length; j++) g.append(line(ys.map((_, i) => at(i, j))));
  for (let i = 0; i < ys.length; i++) {
    for (let j = 0; j < xs.length; j++) {
      const [x, y] = at(i, j);
      g.append(s("circle", {cx: x, cy: y, r: 0.8, "vector-effect": "non-scaling-stroke"}));
    }
  }
  return g;
}

/** Aperture boxes (centre ± width/2) and each node's ±maxshift search box. */
export function apertureOverlay(nodes, width, maxshift) {
  const [ys, xs] = nodes.slice(-2);
  const [wy, wx] = width.slice(-2);
  const g = s("g", {class: "apertures"});
  for (const y of ys) {
    for (const x of xs) {
      g.append(s("rect", {x: x - wx / 2, y: y - wy / 2, width: wx, height: wy, class: "aperture",
                          "vector-effect": "non-scaling-stroke"}));
      if (maxshift) {
        const [my, mx] = maxshift.slice(-2);
        g.append(s("rect", {x: x - mx, y: y - my, width: 2 * mx, height: 2 * my, class: "maxshift",
                            "vector-effect": "non-scaling-stroke"}));
      }
      g.append(s("circle", {cx: x, cy: y, r: 0.8, class: "node", "vector-effect": "non-scaling-stroke"}));
    }
  }
  return g;
}
