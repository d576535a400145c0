// Tune: try a small grid of values (λ, gridsize, maxshift, sigma_hp) on a handful of frames as one
// batch of small jobs (POST /api/v1/tune), compare them side by side, and turn the chosen setting
// into a full job with one click.
import * as api from "./api.js";
import {specForm} from "./form.js";
import {attachPicker} from "./picker.js";
import {linePlot} from "./plot.js";
import {openDraft} from "./submit.js";
import {ACTIVE_STATES, clear, fmtNumber, h, progressBar, stateBadge} from "./util.js";

function numbers(text) {
  return text.split(/[\s,]+/).filter(Boolean).map((t) => (isFinite(Number(t)) ? Number(t) : t));
}

/** "8x8; 4x4" -> [[8, 8], [4, 4]] */
function shapes(text) {
  return text.split(";").map((t) => t.trim()).filter(Boolean)
    .map((t) => t.split(/[\s,x×]+/).filter(Boolean).map((v) => (isFinite(Number(v)) ? Number(v) : v)));
}

function gridInput(id, label, help, placeholder) {
  const input = h("input", {id, type: "text", autocomplete: "off", placeholder,
                            "aria-describedby": `${id}-help ${id}-error`});
  return {input, element: h("div", {class: "field"}, h("label", {for: id}, label),
    h("div", {class: "control"}, input), h("p", {class: "help", id: `${id}-help`}, help),
    h("p", {class: "field-error", id: `${id}-error`}))};
}

function mountNew(main) {
  const status = h("p", {class: "status", role: "status", "aria-live": "polite"});
  const baseBox = h("div");
  const start = gridInput("t-start", "First frame", "source index of the first frame tried", "0");
  const count = gridInput("t-count", "Frames", "how many frames (at most 16)", "4");
  const step = gridInput("t-step", "Step", "every n-th frame", "1");
  const lam = gridInput("t-lambda", "λ values", "fixed values separated by commas", "0.001, 0.01, 0.1");
  const auto = gridInput("t-autolambda", "Automatic λ range",
    "min, max: also try λ chosen automatically in this range (shows the data penalty against λ)",
    "1e-4, 10");
  const gridsize = gridInput("t-gridsize", "Grid sizes", "one per try, separated by ';', e.g. 8x8; 4x4", "");
  const maxshift = gridInput("t-maxshift", "Maxshifts", "one per try, separated by ';', e.g. 5x5; 10x10", "");
  const sigma = gridInput("t-sigma", "sigma_hp values", "highpass sigmas separated by commas", "");
  const button = h("button", {type: "submit"}, "Run tune batch");
  const form = h("form", {class: "card", novalidate: true},
    h("p", {}, "Tune on a few frames before a long run: every combination of the values below " +
      "runs as one small job on the frames chosen; the base settings fill in the rest."),
    h("fieldset", {class: "group"}, h("legend", {}, "Frames"),
      h("div", {class: "row3"}, start.element, count.element, step.element)),
    h("fieldset", {class: "group"}, h("legend", {}, "Values to try"),
      lam.element, auto.element, gridsize.element, maxshift.element, sigma.element),
    h("details", {open: true}, h("summary", {}, "Base settings (input and every other parameter)"), baseBox),
    h("div", {class: "buttons"}, button, status));
  main.append(h("h1", {}, "Tune parameters"), form);
  const byField = {frames: start, "grid.lambda": lam, "grid.gridsize": gridsize,
                   "grid.maxshift": maxshift, "grid.sigma_hp": sigma, grid: lam};

  api.openapiDocument().then((doc) => {
    const base = specForm(baseBox, doc, {registerOnly: true,
      extras: {"input.path": (wrapper, input) => attachPicker(wrapper, input)}});
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      base.clearErrors();
      for (const g of Object.values(byField)) g.element.querySelector(".field-error").textContent = "";
      const first = Number(start.input.value || 0), n = Number(count.input.value || 4);
      const every = Number(step.input.value || 1);
      const grid = {};
      const lambdas = numbers(lam.input.value);
      const range = numbers(auto.input.value);
      if (range.length) lambdas.push(range);
      if (lambdas.length) grid.lambda = lambdas;
      if (gridsize.input.value.trim()) grid.gridsize = shapes(gridsize.input.value);
      if (maxshift.input.value.trim()) grid.maxshift = shapes(maxshift.input.value);
      if (sigma.input.value.trim()) grid.sigma_hp = numbers(sigma.input.value);
      const spec = base.spec();
      spec.params = spec.params || {};
      // the grid supplies these; a base value, when given, is used where the grid has none
      button.disabled = true;
      status.textContent = "Submitting…";
      try {
        const tune = await api.json("tune", {method: "POST", body: {
          spec, frames: [first, first + n * every, every], grid}});
        location.hash = `#/tune/${tune.id}`;
      } catch (err) {
        status.textContent = "Nothing was queued: see the fields marked.";
        const rest = [];
        for (const e of err.errors) {
          const key = Object.keys(byField).find((k) => e.field === k || e.field.startsWith(`${k}.`));
          if (key) byField[key].element.querySelector(".field-error").textContent += ` ${e.problem}`;
          else rest.push(e);
        }
        base.showErrors(rest);
        if (!err.errors.length) status.textContent = `Nothing was queued: ${err.message}`;
      } finally {
        button.disabled = false;
      }
    });
  });
}

function runCard(tune, run, status, best) {
  const done = run.state === "succeeded";
  const thumb = h("div", {class: "thumb"});
  if (done) {
    api.imageURL(`jobs/${run.job_id}/frames/0/image?which=registered`).then((url) => {
      thumb.append(h("img", {src: url, alt: `registered frame 0 of job ${run.job_id}`, class: "frame-img"}));
    }).catch(() => {});
  }
  const full = () => {
    const spec = structuredClone(run.spec);
    spec.input = {...spec.input, frames: tune.base_frames};
    if (!tune.base_frames) delete spec.input.frames;
    spec.name = tune.base_name || null;
    spec.output = {path: null};
    return spec;
  };
  const label = Object.entries(run.values).map(([k, v]) => `${k} = ${JSON.stringify(v)}`).join(", ")
    || "base settings";
  return h("article", {class: `card run${best ? " best" : ""}`, id: `run-${run.job_id}`,
                       "aria-label": label},
    h("h3", {}, label, best ? h("span", {class: "best-badge"}, " best reduction") : null),
    h("p", {}, stateBadge(run), " ", h("a", {href: `#/jobs/${run.job_id}`}, `job #${run.job_id}`)),
    progressBar({id: run.job_id, frames_done: run.frames_done, frames_total: run.frames_total,
                 frames_failed: 0}),
    h("dl", {class: "facts"},
      h("dt", {}, "Mismatch before"), h("dd", {}, fmtNumber(run.mismatch_before)),
      h("dt", {}, "Mismatch after"), h("dd", {}, fmtNumber(run.mismatch_after)),
      h("dt", {}, "Reduction"), h("dd", {class: "reduction"},
        run.reduction === null || run.reduction === undefined ? "—" : `${(100 * run.reduction).toFixed(1)} %`),
      h("dt", {}, "Folds"), h("dd", {}, run.folds === null || run.folds === undefined ? "—"
        : `${(100 * run.folds).toFixed(2)} %`)),
    thumb,
    h("div", {class: "buttons"},
      h("button", {type: "button", class: "promote", disabled: !done, onclick: async () => {
        try {
          const created = await api.json("jobs", {method: "POST", body: full()});
          location.hash = `#/jobs/${created.id}`;
        } catch (err) {
          status.textContent = `Not queued: ${err.message} ` +
            err.errors.map((e) => `${e.field}: ${e.problem}`).join("; ");
        }
      }}, "Run as full job"),
      h("button", {type: "button", class: "secondary", onclick: () => openDraft(full())}, "Edit first")));
}

function mountBatch(main, id) {
  const status = h("p", {class: "status", role: "status", "aria-live": "polite"});
  const cards = h("div", {class: "runs"});
  const curve = h("div");
  main.append(h("p", {}, h("a", {href: "#/tune"}, "← New tune batch")),
    h("h1", {}, `Tune batch #${id}`), status, cards,
    h("section", {class: "card", "aria-labelledby": "curve-title"},
      h("h2", {id: "curve-title"}, "Automatic λ: data penalty against λ"), curve));
  let shown = "";
  return api.poll(async () => {
    const tune = await api.json(`tune/${id}`);
    const key = JSON.stringify(tune);
    if (key !== shown) {
      shown = key;
      const frames = tune.frames;
      status.textContent = `${tune.runs.length} settings on frames ${frames[0]}..${frames[1] - 1}` +
        (frames[2] > 1 ? ` step ${frames[2]}` : "");
      const reductions = tune.runs.map((r) => r.reduction ?? -Infinity);
      const best = tune.runs.every((r) => r.state === "succeeded") && tune.runs.length > 1
        ? reductions.indexOf(Math.max(...reductions)) : -1;
      clear(cards).append(...tune.runs.map((run, k) => runCard(tune, run, status, k === best)));
      const c = tune.lambda_curve;
      clear(curve).append(c
        ? linePlot([{x: c.lambdas, y: c.datapenalty, kind: "points", label: "data penalty"},
                    ...(c.fitted ? [{x: c.lambdas, y: c.fitted, kind: "line", label: "fitted sigmoid",
                                     marker: c.chosen}] : [])],
                   {xlabel: "λ", ylabel: "data penalty", logx: true, title: "auto-λ curve"})
        : h("p", {class: "muted"}, "Give an automatic λ range to see the curve (shown when that run finishes)."));
    }
    return tune.runs.some((r) => ACTIVE_STATES.has(r.state));
  });
}

export function mount(main, [id] = []) {
  if (id) return mountBatch(main, Number(id));
  return mountNew(main);
}
