// Small DOM and formatting helpers shared by the views (no framework).

/** Create an element: h("a", {href: "#/jobs", class: "x"}, "text", child, ...). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

const SVG_NS = "http://www.w3.org/2000/svg";

/** Create an SVG element with attributes. */
export function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value !== undefined && value !== null) el.setAttribute(key, String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

export function fmtTime(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return d.toLocaleString(undefined, {month: "short", day: "numeric", hour: "2-digit",
                                      minute: "2-digit", second: "2-digit"});
}

export function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) return "—";
  seconds = Math.max(0, Math.round(seconds));
  const hh = Math.floor(seconds / 3600), mm = Math.floor((seconds % 3600) / 60), ss = seconds % 60;
  if (hh) return `${hh} h ${mm} min`;
  if (mm) return `${mm} min ${ss} s`;
  return `${ss} s`;
}

export function fmtNumber(value, digits = 3) {
  if (value === null || value === undefined || !isFinite(value)) return "—";
  if (value !== 0 && (Math.abs(value) < 1e-3 || Math.abs(value) >= 1e5)) return value.toExponential(2);
  return Number(value.toPrecision(digits)).toString();
}

export const ACTIVE_STATES = new Set(["queued", "running"]);

/** Rate (frames/s) and ETA (s) of a job from its progress and elapsed time. */
export function jobRate(job) {
  const done = job.frames_done + job.frames_failed;
  const rate = job.elapsed_s > 0 && done > 0 ? done / job.elapsed_s : null;
  const eta = rate && ACTIVE_STATES.has(job.state) ? (job.frames_total - done) / rate : null;
  return {rate, eta};
}

export function progressBar(job) {
  const pct = job.frames_total ? Math.round(100 * job.frames_done / job.frames_total) : 0;
  const failed = job.frames_total ? 100 * job.frames_failed / job.frames_total : 0;
  return h("div", {class: "progress", role: "progressbar", "aria-valuemin": 0, "aria-valuemax": 100,
                   "aria-valuenow": pct, "aria-label": `job ${job.id} progress`,
                   title: `${job.frames_done} of ${job.frames_total} frames done` +
                          (job.frames_failed ? `, ${job.frames_failed} failed` : "")},
           h("span", {class: "done", style: `width:${pct}%`}),
           failed ? h("span", {class: "failed", style: `width:${failed}%`}) : null,
           h("em", {}, `${job.frames_done}/${job.frames_total}`));
}

export function stateBadge(job) {
  return h("span", {class: `state state-${job.state}`, title: job.waiting_reason || job.error || ""},
           job.state);
}

/** A line about a phase after the frames (a two-stage job's series solve), or null. */
export function phaseNote(job) {
  if (!job.phase || job.phase === "done") return null;
  const windows = job.phase_total ? ` ${job.phase_done}/${job.phase_total} windows` : "";
  return h("div", {class: "muted small"}, `${job.phase}${windows}`);
}
