// Meridian dashboard: renders the mesh picture /ui/api/mesh returns, and
// polls it. No dependencies, nothing fetched from elsewhere: it works
// offline, as served by meridiand.
"use strict";

const POLL_MS = 2000;

// el builds an element; strings become text nodes (never HTML).
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v; else e.setAttribute(k, v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function fill(id, ...children) {
  const node = document.getElementById(id);
  node.replaceChildren(...children.flat(Infinity));
  return node;
}

function rate(n) { return n >= 100 ? n.toFixed(0) : n >= 10 ? n.toFixed(1) : n.toFixed(2); }

// Edges between clusters, summed over services.
function clusterEdges(edges) {
  const by = new Map();
  for (const e of edges) {
    const k = e.source + "\u2192" + e.destination;
    const cur = by.get(k) || { source: e.source, destination: e.destination, rps: 0, errorRps: 0 };
    cur.rps += e.rps; cur.errorRps += e.errorRps;
    by.set(k, cur);
  }
  return [...by.values()];
}

function renderMap(m) {
  const resident = new Map(); // cluster -> services whose boundary allows it
  for (const s of m.services) {
    if (!s.residency) continue;
    for (const c of s.residency.allowed) {
      resident.set(c, [...(resident.get(c) || []), s.name + "." + s.namespace]);
    }
  }
  const edges = clusterEdges(m.edges);
  fill("regions", m.regions.map(r => el("div", { class: "region", "data-region": r.name },
    el("h3", {}, r.name),
    r.clusters.map(c => {
      const local = edges.find(e => e.source === c.name && e.destination === c.name);
      return el("div", { class: "cluster" + (resident.has(c.name) ? " resident" : ""), id: "cluster-" + c.name, "data-cluster": c.name, "data-state": c.state },
        el("div", {}, el("span", { class: "name" }, c.name), el("span", { class: "state state-" + c.state }, c.state)),
        el("div", { class: "muted" }, `${c.services} services · ${c.serving}/${c.endpoints} endpoints serving`),
        el("div", {}, Object.entries(c.labels || {}).map(([k, v]) => el("span", { class: "chip label" }, `${k}=${v}`)),
          c.network ? el("span", { class: "chip" }, "net " + c.network) : null),
        resident.has(c.name) ? el("div", {}, resident.get(c.name).map(s => el("span", { class: "chip label" }, "boundary: " + s))) : null,
        local ? el("div", { class: "muted" }, `in-cluster ${rate(local.rps)} rps, ${rate(local.errorRps)} err/s`) : null);
    }))));
  fill("traffic-note", m.trafficNote || "");
  fill("legend",
    "Edges: live requests/s between clusters (red: over 5% errors). ",
    "Blue outline: inside a residency boundary. ",
    "States come from federation gossip: alive, suspect, unreachable (endpoints kept, stale), dead, left.");
  requestAnimationFrame(() => drawEdges(edges.filter(e => e.source !== e.destination)));
}

function drawEdges(edges) {
  const svg = document.getElementById("edges");
  const box = document.getElementById("map").getBoundingClientRect();
  const ns = "http://www.w3.org/2000/svg";
  svg.replaceChildren();
  const defs = document.createElementNS(ns, "defs");
  defs.innerHTML = '<marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#8a96a3"/></marker>';
  svg.append(defs);
  for (const e of edges) {
    const a = document.getElementById("cluster-" + e.source), b = document.getElementById("cluster-" + e.destination);
    if (!a || !b) continue;
    const ra = a.getBoundingClientRect(), rb = b.getBoundingClientRect();
    const x1 = ra.left + ra.width / 2 - box.left, y1 = ra.top + ra.height / 2 - box.top;
    const x2 = rb.left + rb.width / 2 - box.left, y2 = rb.top + rb.height / 2 - box.top;
    // Curve to one side, so that the two directions of a pair do not overlap.
    const mx = (x1 + x2) / 2 + (y2 - y1) * 0.15, my = (y1 + y2) / 2 - (x2 - x1) * 0.15;
    const bad = e.rps > 0 && e.errorRps / e.rps > 0.05;
    const path = document.createElementNS(ns, "path");
    path.setAttribute("d", `M${x1},${y1} Q${mx},${my} ${x2},${y2}`);
    path.setAttribute("fill", "none");
    path.setAttribute("stroke", bad ? "#f85149" : "#58a6ff");
    path.setAttribute("stroke-opacity", "0.75");
    path.setAttribute("stroke-width", String(Math.min(8, 1.5 + Math.log10(1 + e.rps) * 2)));
    path.setAttribute("marker-end", "url(#arrow)");
    path.setAttribute("class", "edge");
    path.dataset.source = e.source; path.dataset.destination = e.destination;
    const label = document.createElementNS(ns, "text");
    label.setAttribute("x", String(mx)); label.setAttribute("y", String(my - 6));
    label.setAttribute("class", "edge-label");
    label.setAttribute("text-anchor", "middle");
    label.textContent = `${rate(e.rps)} rps · ${e.rps > 0 ? (100 * e.errorRps / e.rps).toFixed(1) : "0.0"}% err`;
    svg.append(path, label);
  }
}

function failoverChip(f) {
  const text = f.state === "local" ? `${f.client}: local`
    : f.state === "failover" ? `${f.client}: failover ${f.moved}% → ${(f.to || []).join(", ")}`
    : f.state === "remote" ? `${f.client}: served from ${(f.to || []).join(", ")}`
    : `${f.client}: down`;
  return el("span", { class: "fo fo-" + f.state, title: f.reason || "", "data-client": f.client, "data-state": f.state }, text);
}

function renderServices(m) {
  const body = document.querySelector("#services tbody");
  body.replaceChildren(...m.services.map(s => el("tr", { "data-service": s.name + "." + s.namespace },
    el("td", {}, el("b", {}, s.name), el("span", { class: "muted" }, "." + s.namespace),
      s.failoverPolicy ? el("div", { class: "muted" }, s.failoverPolicy) : null),
    el("td", {}, s.localities.map(l => el("span", { class: "chip" + (l.serving === 0 ? " bad" : "") },
      `${l.locality} (${l.cluster}) ${l.serving}/${l.total}`))),
    el("td", {}, s.failover.map(failoverChip)),
    el("td", {}, s.residency
      ? [el("div", {}, `${s.residency.mode}: ${s.residency.rules.join(", ")}`),
         el("div", {}, "allowed: ", s.residency.allowed.map(c => el("span", { class: "chip label" }, c))),
         el("div", {}, "kept out: ", s.residency.blocked.map(c => el("span", { class: "chip bad" }, c)))]
      : el("span", { class: "muted" }, "—")))));
  if (m.services.length === 0) body.append(el("tr", {}, el("td", { colspan: "4", class: "muted" }, "no services in the registry yet")));
}

function renderPolicies(m) {
  fill("policies-note", m.policiesNote || "");
  fill("drains", m.drains.length ? ["Live drills draining: ", m.drains.map(d => el("span", { class: "chip bad" }, d))] : "No live drill in force.");
  const body = document.querySelector("#policies tbody");
  body.replaceChildren(...m.policies.map(p => el("tr", {},
    el("td", {}, p.kind), el("td", {}, `${p.namespace}/${p.name}`), el("td", { class: "muted" }, p.source || ""))));
  if (m.policies.length === 0 && !m.policiesNote) body.append(el("tr", {}, el("td", { colspan: "3", class: "muted" }, "no policies: Meridian's defaults apply")));
}

function render(m) {
  renderMap(m);
  renderServices(m);
  renderPolicies(m);
  fill("updated", `registry v${m.version} · ${new Date(m.generated).toLocaleTimeString()}`);
  document.body.dataset.version = String(m.version);
}

async function poll() {
  try {
    const resp = await fetch("/ui/api/mesh", { cache: "no-store" });
    const body = await resp.json();
    if (!resp.ok) throw new Error(body.error || resp.statusText);
    render(body);
    document.getElementById("fetch-error").hidden = true;
  } catch (err) {
    const e = document.getElementById("fetch-error");
    e.textContent = "cannot reach meridiand: " + err.message;
    e.hidden = false;
  }
}

async function drill(ev) {
  ev.preventDefault();
  const form = new FormData(ev.target);
  const q = new URLSearchParams({ kind: form.get("kind"), name: form.get("name") });
  const out = document.getElementById("drill-result");
  const resp = await fetch("/ui/api/drill?" + q, { cache: "no-store" });
  const r = await resp.json();
  if (!resp.ok) { out.replaceChildren(el("p", { class: "error" }, r.error)); return; }
  const rows = r.services.map(s => el("tr", {},
    el("td", {}, `${s.service.name}.${s.service.namespace}`),
    el("td", {}, `${s.servingBefore} → ${s.servingAfter} (${s.capacityLeft.toFixed(0)}% left)`),
    el("td", {}, s.stranded ? el("span", { class: "fo fo-down" }, s.residencyOutage ? "fails: residency holds" : "fails: no endpoint left") : el("span", { class: "fo fo-local" }, "served")),
    el("td", {}, (s.clients || []).filter(c => c.moved > 0).map(c => {
      const from = `${[c.client.locality.region, c.client.locality.zone].filter(Boolean).join("/")}${c.client.cluster ? " (" + c.client.cluster + ")" : ""}`;
      const to = (c.after || []).filter(a => !a.failing);
      return el("div", {}, to.length === 0 ? `${from}: requests fail` : [`${from}: ${c.moved.toFixed(0)}% move to `,
        to.map(a => el("span", { class: "chip" }, `${[a.locality.region, a.locality.zone].filter(Boolean).join("/")} ${a.percent.toFixed(0)}%`))]);
    }))));
  out.replaceChildren(el("p", {}, `If ${r.target.kind} ${r.target.name} goes down:`),
    rows.length ? el("table", { id: "drill-table" }, el("thead", {}, el("tr", {}, el("th", {}, "service"), el("th", {}, "serving endpoints"), el("th", {}, "outcome"), el("th", {}, "traffic moves"))), el("tbody", {}, rows))
      : el("p", { class: "muted" }, "no service is affected"));
}

const form = document.getElementById("drill-form");
form.addEventListener("submit", drill);
window.addEventListener("resize", () => poll());
render(JSON.parse(document.getElementById("initial").textContent));
setInterval(poll, POLL_MS);
// /ui/?kind=region&name=us-east-1 opens with that what-if answered: a link
// to share, and what the browser test loads.
const asked = new URLSearchParams(location.search);
if (asked.has("kind") && asked.has("name")) {
  form.elements.kind.value = asked.get("kind");
  form.elements.name.value = asked.get("name");
  form.requestSubmit();
}
