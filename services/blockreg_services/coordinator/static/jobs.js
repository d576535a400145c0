// The job list: state, owner, progress, frames/s, ETA, times; cancel and retry. Polls while
// anything runs (1 s), backing off to 10 s while nothing changes.
import * as api from "./api.js";
import {ACTIVE_STATES, clear, fmtDuration, fmtNumber, fmtTime, h, jobRate, phaseNote, progressBar,
        stateBadge} from "./util.js";

export async function cancelJob(id, status) {
  try {
    await api.json(`jobs/${id}/cancel`, {method: "POST"});
    status.textContent = `Job ${id} cancelled: running frames finish, no new ones start.`;
  } catch (err) {
    status.textContent = `Job ${id}: ${err.message}`;
  }
}

/** A new output path beside the old one (the retried job must not overwrite the first one). */
export function retryOutput(path) {
  if (!path) return null;
  const stamp = new Date().toISOString().replace(/[-:]/g, "").replace(/\..*/, "");
  const stem = path.replace(/\/+$/, "").replace(/(\.ome)?\.zarr$/, "").replace(/-retry-\d+T\d+$/, "");
  return `${stem}-retry-${stamp}${path.match(/(\.ome)?\.zarr\/*$/)?.[0].replace(/\/+$/, "") || ".zarr"}`;
}

/** Resubmit a job's spec with a new output path; resolves to the new job's id. */
export async function retryJob(id) {
  const job = await api.json(`jobs/${id}`);
  const spec = structuredClone(job.spec);
  spec.output = {...(spec.output || {}), path: retryOutput(spec.output && spec.output.path)};
  const created = await api.json("jobs", {method: "POST", body: spec});
  return created.id;
}

function actions(job, status) {
  const cell = h("td", {class: "actions"});
  if (ACTIVE_STATES.has(job.state)) {
    cell.append(h("button", {type: "button", class: "danger", "aria-label": `Cancel job ${job.id}`,
                             onclick: () => cancelJob(job.id, status)}, "Cancel"));
  } else {
    cell.append(h("button", {type: "button", "aria-label": `Retry job ${job.id}`, onclick: async () => {
      try {
        const id = await retryJob(job.id);
        status.textContent = `Job ${job.id} resubmitted as job ${id}.`;
      } catch (err) {
        status.textContent = `Retry of job ${job.id}: ${err.message}` +
          err.errors.map((e) => ` ${e.field}: ${e.problem}`).join(";");
      }
    }}, "Retry"));
  }
  return cell;
}

function row(job, status) {
  const {rate, eta} = jobRate(job);
  return h("tr", {id: `job-${job.id}`, dataset: {state: job.state}},
    h("td", {}, h("a", {href: `#/jobs/${job.id}`}, `#${job.id}`)),
    h("td", {class: "name"}, job.name || "—"),
    h("td", {}, stateBadge(job), job.waiting_reason
      ? h("div", {class: "muted small"}, job.waiting_reason) : null),
    h("td", {}, job.owner || "—"),
    h("td", {}, progressBar(job), phaseNote(job)),
    h("td", {class: "num"}, rate ? fmtNumber(rate, 3) : "—"),
    h("td", {class: "num"}, eta === null ? "—" : fmtDuration(eta)),
    h("td", {}, fmtTime(job.started_at || job.created_at)),
    h("td", {}, fmtTime(job.finished_at)),
    actions(job, status));
}

export function mount(main) {
  const status = h("p", {class: "status", role: "status", "aria-live": "polite"});
  const filter = h("select", {id: "state-filter", onchange: () => refresh()},
    h("option", {value: ""}, "all"),
    ["queued", "running", "succeeded", "failed", "cancelled"].map((v) => h("option", {value: v}, v)));
  const body = h("tbody");
  const total = h("span", {class: "muted"});
  main.append(
    h("div", {class: "title-row"}, h("h1", {}, "Jobs"), total,
      h("span", {class: "spacer"}),
      h("label", {for: "state-filter"}, "State "), filter,
      h("a", {class: "button", href: "#/submit"}, "New job")),
    status,
    h("table", {class: "jobs"},
      h("caption", {class: "sr-only"}, "Jobs, newest first"),
      h("thead", {}, h("tr", {},
        ["Job", "Name", "State", "Owner", "Progress", "Frames/s", "ETA", "Started", "Finished", ""]
          .map((t) => h("th", {scope: "col"}, t)))),
      body));

  const shown = new Map();  // id -> JSON of the row's job, to redraw only what changed
  async function refresh() {
    const state = filter.value;
    const list = await api.json(`jobs?limit=100${state ? `&state=${state}` : ""}`);
    total.textContent = `${list.total} job${list.total === 1 ? "" : "s"}`;
    const ids = new Set(list.jobs.map((j) => j.id));
    for (const id of [...shown.keys()]) {
      if (!ids.has(id)) { document.getElementById(`job-${id}`)?.remove(); shown.delete(id); }
    }
    let changed = false, previous = null;
    for (const job of list.jobs) {
      const key = JSON.stringify(job);
      let el = document.getElementById(`job-${job.id}`);
      if (shown.get(job.id) !== key) {
        const fresh = row(job, status);
        if (el) el.replaceWith(fresh); else changed = true;
        el = fresh;
        shown.set(job.id, key);
        changed = true;
      }
      if (previous ? previous.nextSibling !== el : body.firstChild !== el) {
        if (previous) previous.after(el); else body.prepend(el);
      }
      previous = el;
    }
    if (!list.jobs.length) {
      clear(body).append(h("tr", {}, h("td", {colspan: 10, class: "muted"},
        "No jobs yet. ", h("a", {href: "#/submit"}, "Submit one"), ".")));
      shown.clear();
    } else if (body.querySelector("td[colspan]")) {
      body.querySelector("td[colspan]").parentElement.remove();
    }
    return changed || list.jobs.some((j) => ACTIVE_STATES.has(j.state));
  }
  return api.poll(refresh);
}
