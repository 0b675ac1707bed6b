// Lists the routes of /openapi.json: methods, paths, summaries, parameters, bodies and
// answers. Builds the page with DOM calls only (no innerHTML) and loads nothing else.
"use strict";

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function resolve(spec, schema) {
  let seen = 0;
  while (schema && schema.$ref && seen < 10) {
    const name = schema.$ref.split("/").pop();
    schema = ((spec.components || {}).schemas || {})[name] || {};
    seen += 1;
  }
  return schema || {};
}

function typeOf(spec, schema) {
  schema = resolve(spec, schema);
  if (schema.anyOf) return schema.anyOf.map((s) => typeOf(spec, s)).join(" | ");
  if (schema.enum) return schema.enum.map(String).join(" | ");
  if (schema.type === "array") return typeOf(spec, schema.items) + "[]";
  return schema.format ? schema.type + " (" + schema.format + ")" : schema.type || "any";
}

function table(rows, head) {
  const t = el("table");
  const tr = el("tr");
  head.forEach((h) => tr.appendChild(el("th", null, h)));
  t.appendChild(tr);
  rows.forEach((row) => {
    const r = el("tr");
    row.forEach((cell) => r.appendChild(el("td", null, cell)));
    t.appendChild(r);
  });
  return t;
}

function operation(spec, path, method, op) {
  const section = el("section", "route");
  const h = el("h2");
  h.appendChild(el("span", "method " + method, method.toUpperCase()));
  h.appendChild(el("code", "path", path));
  if (op.summary) h.appendChild(el("span", "summary", op.summary));
  section.appendChild(h);
  if (op.description) section.appendChild(el("p", null, op.description));
  const params = (op.parameters || []).map((p) => [
    p.name, p.in, p.required ? "yes" : "no", typeOf(spec, p.schema),
  ]);
  if (params.length) {
    section.appendChild(el("h3", null, "Parameters"));
    section.appendChild(table(params, ["name", "in", "required", "type"]));
  }
  const content = (op.requestBody || {}).content || {};
  Object.keys(content).forEach((type) => {
    section.appendChild(el("h3", null, "Body: " + type));
    const schema = resolve(spec, content[type].schema);
    const required = schema.required || [];
    const props = Object.entries(schema.properties || {}).map(([name, s]) => [
      name, required.includes(name) ? "yes" : "no", typeOf(spec, s),
    ]);
    if (props.length) section.appendChild(table(props, ["field", "required", "type"]));
  });
  const answers = Object.entries(op.responses || {}).map(([code, r]) => [code, r.description || ""]);
  if (answers.length) {
    section.appendChild(el("h3", null, "Answers"));
    section.appendChild(table(answers, ["status", "meaning"]));
  }
  return section;
}

function render(spec) {
  const info = spec.info || {};
  document.getElementById("title").textContent =
    (info.title || "API") + (info.version ? " " + info.version : "");
  document.getElementById("description").textContent = info.description || "";
  const main = document.getElementById("routes");
  main.replaceChildren();
  const order = ["get", "post", "put", "patch", "delete", "head", "options"];
  Object.keys(spec.paths || {}).sort().forEach((path) => {
    const item = spec.paths[path];
    order.filter((m) => item[m]).forEach((m) => main.appendChild(operation(spec, path, m, item[m])));
  });
}

fetch("/openapi.json")
  .then((r) => {
    if (!r.ok) throw new Error("/openapi.json answered " + r.status);
    return r.json();
  })
  .then(render)
  .catch((err) => {
    const main = document.getElementById("routes");
    main.replaceChildren(el("p", "error", "Could not load the schema: " + err.message));
  });
