// The REST API client of the pages: every request goes to /api/v1 with the session's token.
//
// When the server runs with users, it answers 401 without a valid token: the client then
// raises AuthRequired and tells the app (event "blockreg:login"), which shows the login form.

const TOKEN_KEY = "blockreg.token";
export const BASE = new URL("api/v1/", document.baseURI).pathname;

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.errors = (body && body.errors) || [];
  }
}

export class AuthRequired extends ApiError {}

export function token() { return sessionStorage.getItem(TOKEN_KEY); }
export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

function headers(extra = {}) {
  const t = token();
  return t ? {...extra, Authorization: `Bearer ${t}`} : extra;
}

async function send(path, options = {}) {
  const response = await fetch(BASE + path, {...options, headers: headers(options.headers)});
  if (response.status === 401) {
    const body = await response.json().catch(() => null);
    window.dispatchEvent(new CustomEvent("blockreg:login", {detail: body && body.message}));
    throw new AuthRequired(401, body);
  }
  return response;
}

/** GET/POST JSON; resolves to the body, rejects with ApiError (status, message, errors). */
export async function json(path, {method = "GET", body} = {}) {
  const options = {method};
  if (body !== undefined) {
    options.body = JSON.stringify(body);
    options.headers = {"Content-Type": "application/json"};
  }
  const response = await send(path, options);
  const data = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

/** Text of a route (e.g. an HTML report), or null on 404. */
export async function text(path, accept = "text/html") {
  const response = await send(path, {headers: {Accept: accept}});
  if (response.status === 404) return null;
  if (!response.ok) throw new ApiError(response.status, await response.json().catch(() => null));
  return response.text();
}

const images = new Map();  // path -> object URL (pictures are fetched with the token, then cached)

/** An object URL for a picture of the API (an <img src> cannot send the Authorization header). */
export async function imageURL(path) {
  if (images.has(path)) return images.get(path);
  const response = await send(path);
  if (!response.ok) throw new ApiError(response.status, await response.json().catch(() => null));
  const url = URL.createObjectURL(await response.blob());
  if (images.size > 300) {
    const [oldest, oldUrl] = images.entries().next().value;
    URL.revokeObjectURL(oldUrl);
    images.delete(oldest);
  }
  images.set(path, url);
  return url;
}

let openapi = null;
/** The OpenAPI document (cached): the form is generated from its JobSpec schema. */
export async function openapiDocument() {
  if (!openapi) openapi = json("openapi.json");
  return openapi;
}

/** Whether the API offers a route (optional routes: the quality report, logins, ...). */
export async function hasRoute(template, method = "get") {
  const doc = await openapiDocument();
  return Boolean(doc.paths && doc.paths[template] && doc.paths[template][method]);
}

/**
 * Call `tick` again and again: every `fast` ms while it returns true (something moves), backing
 * off up to `slow` ms while it returns false or fails. Returns a stop function.
 */
export function poll(tick, {fast = 1000, slow = 10000} = {}) {
  let delay = fast, timer = null, stopped = false;
  const run = async () => {
    if (stopped) return;
    let busy = false;
    try { busy = await tick(); } catch (err) {
      if (err instanceof AuthRequired) { stopped = true; return; }
      if (!(err instanceof ApiError) && !(err instanceof TypeError && /fetch/i.test(err.message))) {
        console.error(err);  // a bug in the page, not a busy or unreachable server
      }
      busy = false;
    }
    delay = busy ? fast : Math.min(slow, delay * 2);
    if (!stopped) timer = setTimeout(run, delay);
  };
  run();
  return () => { stopped = true; clearTimeout(timer); };
}
