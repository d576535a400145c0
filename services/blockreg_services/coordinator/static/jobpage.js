// One job: progress, parameters, the per-frame mismatch plot, raw and registered frames side by
// side with the deformation grid, the quality report, workers and timings, and how to open the
// output. Polls while the job runs.
import * as api from "./api.js";
import {cancelJob, retryJob} from "./jobs.js";
import {deformationGrid, imageFigure, linePlot} from "./plot.js";
import {ACTIVE_STATES, clear, fmtDuration, fmtNumber, fmtTime, h, jobRate, phaseNote, progressBar,
        stateBadge} from "./util.js";

function section(id, title, ...children) {
  return h("section", {class: "card", id, "aria-labelledby": `${id}-title`},
           h("h2", {id: `${id}-title`}, title), ...children);
}

function summary(job, status) {
  const {rate, eta} = jobRate(job);
  const actions = ACTIVE_STATES.has(job.state)
    ? h("button", {type: "button", class: "danger", onclick: () => cancelJob(job.id, status)}, "Cancel job")
    : h("button", {type: "button", onclick: async () => {
        try { location.hash = `#/jobs/${await retryJob(job.id)}`; } catch (err) {
          status.textContent = `Retry: ${err.message}`;
        }
      }}, "Retry");
  return h("div", {class: "summary"},
    h("dl", {class: "facts"},
      h("dt", {}, "State"), h("dd", {}, stateBadge(job),
        job.waiting_reason ? h("span", {class: "muted"}, ` ${job.waiting_reason}`) : null),
      job.owner ? [h("dt", {}, "Owner"), h("dd", {}, job.owner)] : null,
      h("dt", {}, "Progress"), h("dd", {}, progressBar(job), phaseNote(job)),
      h("dt", {}, "Frames/s"), h("dd", {}, rate ? fmtNumber(rate) : "—"),
      h("dt", {}, "ETA"), h("dd", {}, eta === null ? "—" : fmtDuration(eta)),
      h("dt", {}, "Created"), h("dd", {}, fmtTime(job.created_at)),
      h("dt", {}, "Started"), h("dd", {}, fmtTime(job.started_at)),
      h("dt", {}, "Finished"), h("dd", {}, fmtTime(job.finished_at)),
      h("dt", {}, "Elapsed"), h("dd", {}, fmtDuration(job.elapsed_s)),
      h("dt", {}, "Queue"), h("dd", {}, job.queue),
      job.error ? [h("dt", {}, "Error"), h("dd", {class: "error"}, job.error)] : null),
    h("div", {class: "buttons"}, actions));
}

function parameters(spec) {
  const rows = [];
  const walk = (prefix, value) => {
    if (value && typeof value === "object" && !Array.isArray(value)) {
      for (const [k, v] of Object.entries(value)) walk(prefix ? `${prefix}.${k}` : k, v);
    } else {
      rows.push(h("tr", {}, h("th", {scope: "row"}, prefix),
                  h("td", {}, value === null ? "—" : Array.isArray(value) ? JSON.stringify(value) : String(value))));
    }
  };
  walk("", spec);
  return h("table", {class: "params"}, h("tbody", {}, rows));
}

function workers(frames) {
  const by = new Map();
  for (const f of frames) {
    if (!f.worker) continue;
    const w = by.get(f.worker) || {frames: 0, total: 0, first: null, last: null};
    w.frames += 1;
    w.total += f.duration_s || 0;
    if (f.started_at && (!w.first || f.started_at < w.first)) w.first = f.started_at;
    if (f.finished_at && (!w.last || f.finished_at > w.last)) w.last = f.finished_at;
    by.set(f.worker, w);
  }
  if (!by.size) return h("p", {class: "muted"}, "No frame has been picked up yet.");
  return h("table", {class: "workers"},
    h("thead", {}, h("tr", {}, ["Worker", "Frames", "Mean s/frame", "First start", "Last end"]
      .map((t) => h("th", {scope: "col"}, t)))),
    h("tbody", {}, [...by].map(([name, w]) => h("tr", {},
      h("td", {}, name), h("td", {class: "num"}, w.frames),
      h("td", {class: "num"}, fmtNumber(w.total / w.frames)),
      h("td", {}, fmtTime(w.first)), h("td", {}, fmtTime(w.last))))));
}

function howToOpen(job) {
  const path = job.output_path;
  const py = `import blockreg\n\nresults = blockreg.open_results(${JSON.stringify(path)})\n` +
    `u = results["u"][:]              # (T, *gridsize, N) node displacements\n` +
    `print(dict(results.attrs["blockreg"]))  # parameters, nodes, frames`;
  const napari = `import napari, zarr\n\nresults = zarr.open_group(${JSON.stringify(path)}, mode="r")\n` +
    `viewer = napari.Viewer()\nviewer.add_image(results["fixed"][:], name="fixed")\n` +
    `# registered frames when the job monitored "warped0" or "warped":\n` +
    `# viewer.add_image(results["warped0"], name="registered")\nnapari.run()`;
  return [h("p", {}, "Output (Zarr store): ", h("code", {class: "path"}, path)),
          h("h3", {}, "Python"), h("pre", {}, h("code", {}, py)),
          h("h3", {}, "napari"), h("pre", {}, h("code", {}, napari))];
}

export function mount(main, [idText]) {
  const id = Number(idText);
  const status = h("p", {class: "status", role: "status", "aria-live": "polite"});
  const title = h("h1", {}, `Job #${id}`);
  const summaryBox = h("div");
  const plotBox = h("div", {class: "plot-box"});
  const viewer = h("div", {class: "viewer"});
  const reportBox = h("div");
  const workerBox = h("div");
  const paramBox = h("div");
  const outputBox = h("div");
  main.append(h("p", {}, h("a", {href: "#/jobs"}, "← All jobs")), title, status,
    section("summary", "Progress", summaryBox),
    section("mismatch", "Mismatch per frame", plotBox),
    section("frames", "Frames: raw and registered", viewer),
    section("report", "Quality report", reportBox),
    h("div", {class: "two-col"}, section("workers", "Workers and timings", workerBox),
      section("output", "Output", outputBox)),
    section("parameters", "Parameters", paramBox));

  let frames = [], job = null, reportShown = false, paramsShown = false;
  const slider = h("input", {type: "range", id: "frame-slider", min: 0, max: 0, value: 0,
                             "aria-label": "frame"});
  const scale = h("select", {id: "grid-scale", "aria-label": "deformation grid exaggeration"},
    [1, 5, 20].map((v) => h("option", {value: v}, `×${v}`)));
  const sliderLabel = h("output", {for: "frame-slider"});
  const pictures = h("div", {class: "pictures"});
  viewer.append(h("div", {class: "title-row"}, h("label", {for: "frame-slider"}, "Frame "),
    slider, sliderLabel, h("span", {class: "spacer"}),
    h("label", {for: "grid-scale"}, "Grid exaggeration "), scale), pictures);
  let shownFrame = null, drawToken = 0;

  async function drawFrame(force = false) {
    const index = Number(slider.value);
    const frame = frames[index];
    if (!frame) return;
    sliderLabel.textContent = `${index} (source t = ${frame.source_t}, ${frame.state})`;
    if (!force && shownFrame === `${index}:${frame.state}:${scale.value}`) return;
    shownFrame = `${index}:${frame.state}:${scale.value}`;
    const mine = ++drawToken;
    if (frame.state !== "done") {
      clear(pictures).append(h("p", {class: "muted"}, `Frame ${index} is ${frame.state}.`));
      return;
    }
    try {
      const base = `jobs/${id}/frames/${index}`;
      const [raw, reg, def] = await Promise.all([
        api.imageURL(`${base}/image?which=raw`), api.imageURL(`${base}/image?which=registered`),
        api.json(`${base}/deformation`)]);
      if (mine !== drawToken) return;
      const shape = def.shape ? def.shape.slice(-2) : null;
      let u = def.u;
      while (u && def.nodes && u.length && Array.isArray(u[0][0][0])) u = u[Math.floor(u.length / 2)];
      const overlay = def.nodes && u ? [deformationGrid(def.nodes, u, {scale: Number(scale.value)})] : [];
      const img = (url, alt) => h("img", {src: url, alt, class: "frame-img"});
      clear(pictures).append(
        h("figure", {}, shape ? imageFigure(raw, shape, overlay, {label: `raw frame ${index} with its deformation grid`})
          : img(raw, `raw frame ${index}`), h("figcaption", {}, "raw, with the deformation grid")),
        h("figure", {}, img(raw, `raw frame ${index}`), h("figcaption", {}, "raw")),
        h("figure", {}, img(reg, `registered frame ${index}`), h("figcaption", {}, "registered")));
    } catch (err) {
      if (mine === drawToken) clear(pictures).append(h("p", {class: "error"}, err.message));
    }
  }
  slider.addEventListener("input", () => drawFrame());
  scale.addEventListener("change", () => drawFrame(true));

  async function showReport() {
    if (!(await api.hasRoute("/api/v1/jobs/{job_id}/report"))) {
      clear(reportBox).append(h("p", {class: "muted"},
        "This server has no quality-report route (GET /api/v1/jobs/<id>/report)."));
      return true;
    }
    const html = await api.text(`jobs/${id}/report?format=html`);
    if (html === null) {
      clear(reportBox).append(h("p", {class: "muted"}, "No report yet."));
      return false;
    }
    clear(reportBox).append(h("iframe", {class: "report", title: `quality report of job ${id}`,
                                         sandbox: "", srcdoc: html}));
    return true;
  }

  let ticks = 0;
  async function tick() {
    job = await api.json(`jobs/${id}`);
    // the frames' page (at most the first 5000) is the heavy read: for a long job, every 5th tick
    if (!frames.length || job.frames_total <= 2000 || ticks % 5 === 0 ||
        !ACTIVE_STATES.has(job.state)) {
      frames = (await api.json(`jobs/${id}/frames?limit=5000`)).frames;
    }
    ticks += 1;
    title.textContent = `Job #${id}${job.name ? ` — ${job.name}` : ""}`;
    clear(summaryBox).append(summary(job, status));
    if (!paramsShown) {
      paramBox.append(parameters(job.spec));
      outputBox.append(...howToOpen(job));
      paramsShown = true;
    }
    const names = new Set(frames.flatMap((f) => Object.keys(f.scalars || {})));
    const key = names.has("mismatch") ? "mismatch" : [...names][0];
    clear(plotBox).append(key
      ? linePlot([{x: frames.map((f) => f.index), y: frames.map((f) => f.scalars[key] ?? null),
                   kind: "line", label: key},
                  {x: frames.map((f) => f.index), y: frames.map((f) => f.scalars[key] ?? null),
                   kind: "points"}],
                 {xlabel: "frame", ylabel: key, title: `${key} per frame`})
      : h("p", {class: "muted"}, "No monitored scalar yet."));
    clear(workerBox).append(workers(frames));
    slider.max = Math.max(0, frames.length - 1);
    if (shownFrame === null) {
      const firstDone = frames.findIndex((f) => f.state === "done");
      if (firstDone >= 0) slider.value = firstDone;
    }
    await drawFrame();
    const active = ACTIVE_STATES.has(job.state);
    if (!active && !reportShown) reportShown = await showReport().catch(() => false);
    else if (active) clear(reportBox).append(h("p", {class: "muted"}, "The report is made when the job finishes."));
    return active || !reportShown;
  }
  return api.poll(tick, {fast: 700, slow: 8000});
}
