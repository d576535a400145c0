// Submit: the job-spec form (generated from the API's schema), the file picker and the preview.
// Nothing is checked here: the server validates and the 422's messages go beside their fields.
import * as api from "./api.js";
import {specForm} from "./form.js";
import {attachPicker} from "./picker.js";
import {previewPanel} from "./preview.js";
import {h} from "./util.js";

export const DRAFT_KEY = "blockreg.draft";

/** Open the submit page filled in with `spec` (e.g. a tuned setting). */
export function openDraft(spec) {
  sessionStorage.setItem(DRAFT_KEY, JSON.stringify(spec));
  location.hash = "#/submit";
}

export function mount(main) {
  const status = h("p", {class: "status", role: "status", "aria-live": "polite"});
  const formBox = h("div");
  const button = h("button", {type: "submit"}, "Submit job");
  const form = h("form", {class: "card spec-form", novalidate: true, "aria-labelledby": "submit-title"},
    formBox, h("div", {class: "buttons"}, button, status));
  const layout = h("div", {class: "two-col"}, form);
  main.append(h("h1", {id: "submit-title"}, "Submit a job"), layout);

  let draft = {};
  try { draft = JSON.parse(sessionStorage.getItem(DRAFT_KEY) || "{}"); } catch { draft = {}; }
  sessionStorage.removeItem(DRAFT_KEY);

  let stopped = false;
  api.openapiDocument().then((doc) => {
    if (stopped) return;
    let preview = null;
    const spec = specForm(formBox, doc, {
      initial: draft,
      extras: {"input.path": (wrapper, input) => attachPicker(wrapper, input)},
      onChange: (path) => preview?.changed(path),
    });
    preview = previewPanel(spec);
    layout.append(preview.element);
    preview.update();
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      button.disabled = true;
      status.textContent = "Submitting…";
      spec.clearErrors();
      try {
        const created = await api.json("jobs", {method: "POST", body: spec.spec()});
        status.textContent = `Job ${created.id} queued.`;
        location.hash = `#/jobs/${created.id}`;
      } catch (err) {
        status.textContent = err.errors.length ? "The job was not queued: see the fields marked."
          : `The job was not queued: ${err.message}`;
        if (err.errors.length) spec.showErrors(err.errors);
      } finally {
        button.disabled = false;
      }
    });
    formBox.querySelector("input, select")?.focus();
  }).catch((err) => {
    if (!(err instanceof api.AuthRequired)) formBox.append(h("p", {class: "error"}, err.message));
  });
  return () => { stopped = true; };
}
