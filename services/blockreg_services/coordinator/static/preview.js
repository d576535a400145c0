// The fixed frame of the job being written, with its aperture grid and maxshift drawn over it
// (GET /api/v1/preview), redrawn when the input or the grid changes.
import * as api from "./api.js";
import {apertureOverlay, imageFigure} from "./plot.js";
import {clear, h} from "./util.js";

const WATCHED = new Set(["input.path", "input.dataset", "input.channel", "fixed_index",
                         "params.gridsize", "params.maxshift", "params.overlap", "algorithm"]);

export function previewPanel(form) {
  const panel = h("section", {class: "card preview", "aria-labelledby": "preview-title"},
    h("h2", {id: "preview-title"}, "Fixed frame"),
    h("p", {class: "muted"}, "Choose an input to see its fixed frame with the aperture grid " +
      "(boxes) and the maxshift search range (dashed) of each aperture."));
  let timer = null, generation = 0;

  async function update() {
    const spec = form.spec();
    const input = spec.input || {};
    if (!input.path) return;
    const q = new URLSearchParams({path: input.path});
    if (input.dataset) q.set("dataset", input.dataset);
    if (Number.isInteger(input.channel)) q.set("channel", input.channel);
    if (Number.isInteger(spec.fixed_index)) q.set("fixed_index", spec.fixed_index);
    const p = spec.params || {};
    const ints = (v) => Array.isArray(v) && v.every(Number.isInteger);
    if (ints(p.gridsize)) q.set("gridsize", p.gridsize.join(","));
    if (ints(p.maxshift)) q.set("maxshift", p.maxshift.join(","));
    if (Number.isInteger(p.overlap)) q.set("overlap", p.overlap);
    const mine = ++generation;
    let body;
    try {
      body = await api.json(`preview?${q}`);
    } catch (err) {
      if (mine !== generation) return;
      clear(panel).append(h("h2", {id: "preview-title"}, "Fixed frame"),
        h("p", {class: "error"}, err.errors.length
          ? err.errors.map((e) => `${e.field}: ${e.problem}`).join("; ") : err.message));
      return;
    }
    if (mine !== generation) return;
    const overlay = body.nodes ? [apertureOverlay(body.nodes, body.aperture_width, body.maxshift)] : [];
    clear(panel).append(
      h("h2", {id: "preview-title"}, "Fixed frame"),
      imageFigure(body.image, body.shape.slice(-2), overlay,
                  {label: `fixed frame ${body.fixed_index} with the aperture grid`}),
      h("p", {class: "muted small"},
        `frame ${body.fixed_index} of ${body.frames}, ${body.shape.join(" × ")} (${body.axes})`,
        body.shape.length > 2 ? " — maximum projection along z" : "",
        body.nodes ? ` · ${body.nodes.map((n) => n.length).join(" × ")} apertures` : ""));
  }

  return {
    element: panel,
    changed(path) {
      if (!WATCHED.has(path)) return;
      clearTimeout(timer);
      timer = setTimeout(update, 250);
    },
    update,
  };
}
