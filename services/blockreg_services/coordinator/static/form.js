// A job-spec form generated from the OpenAPI document's JobSpec schema (the very schema the API
// validates with): one labelled input per field, its default filled in, its description as help,
// and a place beside it for the API's 422 message about that field.
//
// The browser does not judge the values: whatever is typed is sent, and the server's answer
// ({field, problem} per error) is shown next to the field it names.
import {h} from "./util.js";

function resolve(doc, schema) {
  while (schema && schema.$ref) schema = doc.components.schemas[schema.$ref.split("/").pop()];
  return schema || {};
}

/** What kind of input a (resolved) property schema needs, and whether null is allowed. */
function kindOf(doc, schema) {
  let optional = false;
  let options = schema.anyOf || schema.oneOf;
  if (options) {
    const notNull = options.filter((o) => o.type !== "null");
    optional = notNull.length < options.length;
    if (notNull.length === 1) return {...kindOf(doc, resolve(doc, notNull[0])), optional};
    const scalar = notNull.find((o) => o.type === "number" || o.type === "integer");
    const list = notNull.find((o) => o.type === "array");
    if (scalar && list) return {kind: "number-or-list", optional};
    return {kind: "json", optional};
  }
  if (schema.enum) return {kind: "enum", values: schema.enum, optional};
  if (schema.type === "boolean") return {kind: "bool", optional};
  if (schema.type === "integer" || schema.type === "number") return {kind: "number", optional};
  if (schema.type === "string") return {kind: "text", optional};
  if (schema.type === "array") {
    const items = resolve(doc, schema.items || {});
    if (items.type === "integer" || items.type === "number") return {kind: "number-list", optional};
    if (items.type === "string") return {kind: "text-list", optional};
  }
  return {kind: "json", optional};
}

function formatValue(kind, value) {
  if (value === undefined || value === null) return "";
  if (kind === "json") return JSON.stringify(value);
  if (Array.isArray(value)) return value.join(", ");
  return String(value);
}

function parseNumber(text) {
  const t = text.trim();
  if (/^[-+]?inf(inity)?$/i.test(t)) return t.startsWith("-") ? "-Infinity" : "Infinity";
  return t !== "" && isFinite(Number(t)) ? Number(t) : t;  // not a number: the server says why
}

function parseValue(kind, text) {
  const t = text.trim();
  if (t === "") return undefined;
  switch (kind) {
    case "number": return parseNumber(t);
    case "number-list": return t.split(/[\s,x×]+/).filter(Boolean).map(parseNumber);
    case "number-or-list": {
      const parts = t.split(/[\s,]+/).filter(Boolean).map(parseNumber);
      return parts.length === 1 ? parts[0] : parts;
    }
    case "text-list": return t.split(/[\s,]+/).filter(Boolean);
    case "json": try { return JSON.parse(t); } catch { return t; }
    default: return t;
  }
}

const HINTS = {
  "number-list": "numbers separated by commas",
  "number-or-list": "one number, or one per axis separated by commas",
  "text-list": "names separated by commas",
  json: "JSON",
};

// JSON objects have no order (Flask even sorts the document's keys): show the fields in the order
// a person fills them in, then any others (fields added later) alphabetically.
const ORDER = ["name", "input", "path", "dataset", "channel", "frames", "roi", "algorithm", "kind",
               "fixed_index", "params", "gridsize", "maxshift", "lambda", "preprocess", "monitor",
               "output"];
const LEGENDS = {input: "Input", params: "Parameters", preprocess: "Preprocessing", output: "Output"};

function ordered(properties) {
  const rank = (name) => (ORDER.includes(name) ? ORDER.indexOf(name) : ORDER.length);
  return Object.entries(properties || {}).sort(([a], [b]) => rank(a) - rank(b) || a.localeCompare(b));
}

function idFor(path) { return "f-" + path.replace(/[^a-zA-Z0-9]+/g, "-"); }

/**
 * Render the form into `container`.
 * options: initial (a spec to fill in), extras ({path: (wrapper, input) => void}), onChange.
 * Returns {spec(), showErrors(errors), clearErrors(), input(path), setValue(path, value)}.
 */
/**
 * The kinds of job the API accepts, from the request body of POST /jobs: each registration
 * algorithm (the JobSpec union, discriminated by "algorithm") and each other kind (warp, ...).
 * Returns [{key, label, ref}], the registration algorithms first.
 */
export function jobVariants(doc) {
  const body = doc.paths?.["/api/v1/jobs"]?.post?.requestBody?.content?.["application/json"]?.schema
    || {$ref: "#/components/schemas/JobSpec"};
  const out = [];
  for (const option of body.oneOf || [body]) {
    const schema = resolve(doc, option);
    if (schema.discriminator) {
      for (const [name, ref] of Object.entries(schema.discriminator.mapping)) {
        out.push({key: `register:${name}`, label: `register · ${name}`, ref});
      }
    } else {
      const kind = schema.properties?.kind?.const || schema.title || option.$ref.split("/").pop();
      out.push({key: kind, label: kind, ref: option.$ref});
    }
  }
  return out;
}

function variantKey(spec) {
  const kind = spec.kind || "register";
  return kind === "register" ? `register:${spec.algorithm || "apertures"}` : kind;
}

/**
 * Render the form into `container`.
 * options: initial (a spec to fill in), extras ({path: (wrapper, input) => void}), onChange,
 * registerOnly (offer the registration algorithms only, e.g. for tuning).
 * Returns {spec(), showErrors(errors), clearErrors(), input(path), setValue(path, value)}.
 */
export function specForm(container, doc, {initial = {}, extras = {}, onChange = () => {},
                                          registerOnly = false} = {}) {
  const variants = jobVariants(doc).filter((v) => !registerOnly || v.key.startsWith("register:"));
  const fields = new Map();  // dotted path -> {input, kind, error}
  const constants = {};      // fields fixed by the variant (kind, algorithm): sent, not shown
  const general = h("div", {class: "error", role: "alert", id: "form-errors"});
  const body = h("div");
  const algorithm = h("select", {id: "f-algorithm", name: "algorithm",
                                 "aria-describedby": "f-algorithm-help"},
    variants.map((v) => h("option", {value: v.key}, v.label)));
  const wanted = variantKey(initial);
  algorithm.value = variants.some((v) => v.key === wanted) ? wanted : variants[0].key;
  const algorithmHelp = h("p", {class: "help", id: "f-algorithm-help"});

  function field(path, schema, required, initialValue) {
    const {kind, values, optional} = kindOf(doc, schema);
    const id = idFor(path);
    const help = [schema.description, HINTS[kind]].filter(Boolean).join(" — ");
    const error = h("p", {class: "field-error", id: `${id}-error`, "aria-live": "polite"});
    const described = `${id}-help ${id}-error`;
    let input;
    const value = initialValue !== undefined ? initialValue : schema.default;
    if (kind === "enum") {
      input = h("select", {id, name: path, "aria-describedby": described},
        optional || !required ? h("option", {value: ""}, "(default)") : null,
        values.map((v) => h("option", {value: String(v)}, String(v))));
      input.value = value === undefined || value === null ? "" : String(value);
    } else if (kind === "bool") {
      input = h("input", {id, name: path, type: "checkbox", "aria-describedby": described});
      input.checked = Boolean(value);
    } else {
      input = h("input", {id, name: path, type: "text", autocomplete: "off",
                          "aria-describedby": described,
                          inputmode: kind.startsWith("number") ? "decimal" : null,
                          placeholder: schema.default === undefined && !required ? "default" : null});
      input.value = formatValue(kind, value);
    }
    if (required) input.setAttribute("aria-required", "true");
    input.addEventListener("change", () => onChange(path));
    const label = h("label", {for: id}, schema.title || path.split(".").pop(),
                    required ? h("span", {class: "req", title: "required"}, " *") : null);
    const wrapper = h("div", {class: `field field-${kind}`, dataset: {field: path}},
      label, h("div", {class: "control"}, input), h("p", {class: "help", id: `${id}-help`}, help),
      error);
    fields.set(path, {input, kind, error, enumValues: values});
    if (extras[path]) extras[path](wrapper, input);
    return wrapper;
  }

  function group(prefix, schema, initialValue = {}) {
    const required = new Set(schema.required || []);
    const out = [];
    for (const [name, raw] of ordered(schema.properties)) {
      const path = prefix ? `${prefix}.${name}` : name;
      const sub = resolve(doc, raw);
      if (sub.const !== undefined) {
        constants[path] = sub.const;
        continue;
      }
      const value = initialValue ? initialValue[name] : undefined;
      if (sub.type === "object" && sub.properties) {
        out.push(h("fieldset", {class: "group", dataset: {field: path}},
          h("legend", {}, LEGENDS[name] || name),
          (raw.description || sub.description)
            ? h("p", {class: "help"}, raw.description || sub.description) : null,
          group(path, sub, value || {}),
          h("p", {class: "field-error", id: `${idFor(path)}-error`})));
        fields.set(path, {group: true, error: out.at(-1).lastChild});
      } else {
        out.push(field(path, {...sub, description: raw.description || sub.description,
                              default: raw.default !== undefined ? raw.default : sub.default},
                       required.has(name), value));
      }
    }
    return out;
  }

  function render(initialSpec) {
    fields.clear();
    for (const key of Object.keys(constants)) delete constants[key];
    body.replaceChildren();
    const variant = resolve(doc, {$ref: variants.find((v) => v.key === algorithm.value).ref});
    algorithmHelp.textContent = variant.description || "";
    body.append(...group("", variant, initialSpec));
  }

  algorithm.addEventListener("change", () => {
    const keep = spec();
    delete keep.params;  // another algorithm's parameters
    render(keep);
    onChange("algorithm");
  });
  container.append(
    h("div", {class: "field"}, h("label", {for: "f-algorithm"}, "Job"),
      h("div", {class: "control"}, algorithm), algorithmHelp),
    body, general);
  render(initial);

  function put(out, path, value) {
    const parts = path.split(".");
    let node = out;
    for (const part of parts.slice(0, -1)) node = node[part] ??= {};
    node[parts.at(-1)] = value;
  }

  function spec() {
    const out = {};
    for (const [path, value] of Object.entries(constants)) put(out, path, value);
    for (const [path, f] of fields) {
      if (f.group) continue;
      let value;
      if (f.kind === "bool") value = f.input.checked;
      else if (f.kind === "enum") {
        value = f.input.value === "" ? undefined : f.input.value;
        if (value !== undefined && typeof f.enumValues[0] === "number") value = Number(value);
      } else value = parseValue(f.kind, f.input.value);
      if (value !== undefined) put(out, path, value);
    }
    return out;
  }

  function clearErrors() {
    general.replaceChildren();
    for (const f of fields.values()) {
      f.error.textContent = "";
      f.input?.removeAttribute("aria-invalid");
    }
  }

  /** Put each {field, problem} beside the longest form path that is a prefix of its field. */
  function showErrors(errors) {
    clearErrors();
    let first = null;
    for (const {field: name, problem} of errors) {
      const parts = String(name).split(".");
      let target = null;
      for (let n = parts.length; n > 0 && !target; n--) target = fields.get(parts.slice(0, n).join("."));
      if (name === "algorithm" || name === "kind") target = {error: algorithmHelp, input: algorithm};
      if (!target) {
        general.append(h("p", {}, `${name}: ${problem}`));
        continue;
      }
      target.error.textContent = (target.error.textContent ? target.error.textContent + " " : "")
        + problem;
      target.input?.setAttribute("aria-invalid", "true");
      first ??= target.input;
    }
    first?.focus();
  }

  return {
    spec, showErrors, clearErrors,
    input: (path) => fields.get(path)?.input,
    setValue(path, value) {
      const f = fields.get(path);
      if (!f) return;
      if (f.kind === "bool") f.input.checked = Boolean(value);
      else f.input.value = formatValue(f.kind, value);
      onChange(path);
    },
    get variant() { return algorithm.value; },
  };
}
