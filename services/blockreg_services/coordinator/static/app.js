// The dashboard's router: #/jobs, #/jobs/<id>, #/submit, #/tune, #/tune/<id>, #/login.
// Each view module exports mount(main, params) and returns a function that stops its timers.
import * as api from "./api.js";
import {clear, h} from "./util.js";
import * as jobs from "./jobs.js";
import * as jobpage from "./jobpage.js";
import * as submit from "./submit.js";
import * as tune from "./tune.js";
import * as login from "./login.js";

const ROUTES = [
  [/^#\/jobs\/(\d+)$/, jobpage, "jobs"],
  [/^#\/jobs$/, jobs, "jobs"],
  [/^#\/submit$/, submit, "submit"],
  [/^#\/tune\/(\d+)$/, tune, "tune"],
  [/^#\/tune$/, tune, "tune"],
  [/^#\/login$/, login, null],
];

const main = document.getElementById("main");
let unmount = null;

let current = null;

function show(view, params, nav) {
  current = view;
  if (unmount) unmount();
  unmount = null;
  clear(main);
  for (const link of document.querySelectorAll("[data-nav]")) {
    if (link.dataset.nav === nav) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  try {
    unmount = view.mount(main, params) || null;
  } catch (err) {
    main.append(h("p", {class: "error", role: "alert"}, String(err)));
  }
}

function route() {
  const hash = location.hash || "#/jobs";
  for (const [pattern, view, nav] of ROUTES) {
    const match = hash.match(pattern);
    if (match) return show(view, match.slice(1), nav);
  }
  location.replace("#/jobs");
}

function renderWho() {
  const who = document.getElementById("who");
  clear(who);
  if (api.token()) {
    who.append(h("button", {type: "button", class: "link", onclick: () => {
      api.setToken(null);
      location.hash = "#/login";
    }}, "Log out"));
  }
}

window.addEventListener("hashchange", () => { renderWho(); route(); });
window.addEventListener("blockreg:login", (event) => {
  if (current === login) return;  // the login form is up: it reports a refused token itself
  sessionStorage.setItem("blockreg.after_login", location.hash || "#/jobs");
  show(login, [event.detail], null);
});
renderWho();
route();
