// The server-side file picker: folders under the server's data roots, then the series in them
// with the shape, axes and spacing the readers find (GET /api/v1/files).
import * as api from "./api.js";
import {clear, h} from "./util.js";

function describe(entry) {
  if (entry.kind === "directory") return "folder";
  if (entry.error) return entry.error;
  if (entry.kind !== "series") return "";
  const parts = [`${entry.shape.join(" × ")} (${entry.axes})`, entry.dtype];
  if (entry.spacing) parts.push(`spacing ${entry.spacing.map((v) => +v.toPrecision(3)).join(", ")} µm`);
  return parts.join(" · ");
}

/** Add a "Browse…" button and panel after `input`; choosing a series sets the input's value. */
export function attachPicker(wrapper, input, {onPick = () => {}} = {}) {
  const panel = h("div", {class: "picker", hidden: true, role: "dialog", "aria-label": "Choose a file"});
  const info = h("p", {class: "help picked", "aria-live": "polite"});
  const button = h("button", {type: "button", class: "secondary", "aria-expanded": "false",
                              onclick: () => (panel.hidden ? open() : close())}, "Browse…");
  input.parentElement.append(button);
  wrapper.append(info, panel);

  function close() {
    panel.hidden = true;
    button.setAttribute("aria-expanded", "false");
    button.focus();
  }

  async function open(path = null) {
    panel.hidden = false;
    button.setAttribute("aria-expanded", "true");
    clear(panel).append(h("p", {class: "muted"}, "Loading…"));
    let listing;
    try {
      listing = await api.json(path ? `files?path=${encodeURIComponent(path)}` : "files");
    } catch (err) {
      clear(panel).append(h("p", {class: "error"}, err.message));
      return;
    }
    if (!path && listing.roots.length === 1) return open(listing.roots[0]);  // one root: go in
    const list = h("ul", {class: "entries"});
    if (listing.parent) {
      list.append(h("li", {}, h("button", {type: "button", class: "entry dir",
        onclick: () => open(listing.parent)}, "⬑ ..")));
    }
    for (const entry of listing.entries) {
      const isDir = entry.kind === "directory";
      const pick = () => {
        if (isDir) return open(entry.path);
        input.value = entry.path;
        info.textContent = `${entry.name}: ${describe(entry)}`;
        input.dispatchEvent(new Event("change"));
        onPick(entry);
        close();
      };
      list.append(h("li", {}, h("button", {type: "button", class: `entry ${entry.kind}`,
        disabled: entry.kind === "file", onclick: pick},
        h("span", {class: "entry-name"}, isDir ? `📁 ${entry.name}` : entry.name),
        h("span", {class: "muted small"}, describe(entry)))));
    }
    if (!listing.entries.length) list.append(h("li", {class: "muted"}, "(empty)"));
    clear(panel).append(
      h("div", {class: "title-row"}, h("strong", {}, listing.path || "Data roots"),
        h("span", {class: "spacer"}),
        h("button", {type: "button", class: "link", onclick: close}, "Close")),
      list);
    panel.querySelector("button.entry:not([disabled])")?.focus();
  }
  panel.addEventListener("keydown", (event) => { if (event.key === "Escape") close(); });
}
