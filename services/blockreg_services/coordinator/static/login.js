// Login: the server runs with users and answered 401. The token (from `blockreg token create` or
// the admin) is kept in this tab's sessionStorage only and sent as "Authorization: Bearer".
import * as api from "./api.js";
import {h} from "./util.js";

export function mount(main, [reason] = []) {
  const input = h("input", {id: "login-token", type: "password", name: "token", required: true,
                            autocomplete: "current-password", "aria-describedby": "login-help"});
  const message = h("p", {class: "error", role: "alert", id: "login-error"},
                    reason && reason !== "undefined" ? reason : "");
  const form = h("form", {class: "card narrow", onsubmit: async (event) => {
    event.preventDefault();
    api.setToken(input.value.trim());
    try {
      await api.json("jobs?limit=1");
    } catch (err) {
      api.setToken(null);
      message.textContent = err instanceof api.AuthRequired ? "This token is not valid." : err.message;
      input.focus();
      return;
    }
    const next = sessionStorage.getItem("blockreg.after_login") || "#/jobs";
    sessionStorage.removeItem("blockreg.after_login");
    if (location.hash === next) location.reload(); else location.hash = next;
  }},
    h("h1", {}, "Log in"),
    h("p", {id: "login-help"}, "This server runs with users. Paste your API token; it is kept " +
      "for this browser tab only. A user sees their own jobs, an admin everyone's."),
    h("label", {for: "login-token"}, "API token"), input, message,
    h("button", {type: "submit"}, "Log in"));
  main.append(form);
  input.focus();
}
