// The live status page: asks /live.json every two seconds and draws it.
// Everything comes from the appliance; nothing is fetched from elsewhere.
// Text from the appliance is set as text, never parsed as HTML.
"use strict";
(function () {
  const every = 2000;
  const windowMs = 5 * 60 * 1000;
  let updates = 0;

  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v; else e.setAttribute(k, v);
    }
    for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
    return e;
  }
  function svg(tag, attrs, ...kids) {
    const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
    return e;
  }
  function bytes(b) {
    const units = ["B", "kB", "MB", "GB"];
    let i = 0;
    while (b >= 1000 && i < units.length - 1) { b /= 1000; i++; }
    return (i === 0 ? b.toFixed(0) : b.toFixed(1)) + " " + units[i];
  }
  function rate(bps) { return bps < 0 ? "–" : bytes(bps) + "/s"; }
  function clock(t) { return new Date(t).toLocaleTimeString([], { hour12: false }); }
  function dur(s) {
    if (!s) return "–";
    s = Math.round(s);
    const h = Math.floor(s / 3600), m = Math.floor(s % 3600 / 60), x = s % 60;
    return (h ? h + "h" : "") + (h || m ? m + "m" : "") + x + "s";
  }

  // graph draws a NIC's receive and transmit history over the last five
  // minutes, with the events that matter marked where they happened.
  function graph(nic, events, now) {
    const W = 600, H = 140, from = now - windowMs;
    const x = t => ((t - from) / windowMs) * W;
    let max = 1000;
    for (const p of nic.history) max = Math.max(max, p.rx, p.tx);
    max *= 1.1;
    const y = v => H - (v / max) * (H - 14);
    const g = svg("svg", { class: "graph", viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", role: "img",
      "aria-label": `traffic of ${nic.name}` });
    for (const e of events) {
      const t = Date.parse(e.time);
      if (t < from || !["crash", "hang", "restart", "device-reset", "signal"].includes(e.kind)) continue;
      const colour = e.kind === "crash" || e.kind === "hang" ? "#b3261e" : "#a15c00";
      g.append(svg("line", { x1: x(t), x2: x(t), y1: 0, y2: H, stroke: colour, "stroke-width": 1.5, "stroke-dasharray": "4 3",
        class: "marker", "data-kind": e.kind }, svg("title", {}, `${clock(t)} ${e.component} ${e.kind} ${e.reason || ""}`)));
    }
    for (const [key, colour] of [["rx", "#1f6feb"], ["tx", "#2da44e"]]) {
      const pts = nic.history.filter(p => p.t >= from).map(p => `${x(p.t).toFixed(1)},${y(p[key]).toFixed(1)}`);
      if (pts.length > 1) g.append(svg("polyline", { points: pts.join(" "), fill: "none", stroke: colour, "stroke-width": 2,
        "vector-effect": "non-scaling-stroke" }));
    }
    return el("div", {}, g, el("div", { class: "meta scale" },
      el("span", {}, "last 5 minutes"), el("span", {}, "top of the graph: " + rate(max / 1.1))));
  }

  function nicCard(n, events, now) {
    return el("div", { class: "nic", "data-nic": n.name },
      el("h3", {}, n.name, " ", el("span", { class: "meta" }, n.pci_id || "")),
      el("div", { class: "meta" }, "address ", el("strong", { class: "addr" }, n.addr || "–"), " · MAC ", n.mac || "–",
        " · link ", el("span", { class: n.link_up ? "running" : "failed" }, n.link_up ? "up" : "down")),
      el("div", { class: "rates" },
        el("span", { class: "rx", "data-bps": n.rx_bps }, "▼ " + rate(n.rx_bps)),
        el("span", { class: "tx", "data-bps": n.tx_bps }, "▲ " + rate(n.tx_bps)),
        el("span", { class: "meta" }, `resets ${n.resets}`)),
      graph(n, events, now));
  }

  function componentsTable(cs) {
    const head = el("tr", {}, ...["component", "state", "pid", "gen", "restarts", "uptime", "CPU %", "memory", "last exit"].map(h => el("th", {}, h)));
    const rows = cs.map(c => {
      const cls = c.state === "running" ? (c.ready ? "running" : "other") : c.state === "failed" ? "failed" : "other";
      return el("tr", { "data-component": c.name },
        el("td", {}, c.name), el("td", { class: cls }, c.state === "running" && !c.ready ? "starting" : c.state),
        el("td", { class: "num" }, c.pid || "–"), el("td", { class: "num" }, c.generation),
        el("td", { class: "num" }, c.restarts + (c.hangs ? ` (${c.hangs} hung)` : "")),
        el("td", { class: "num" }, dur(c.uptime_s)), el("td", { class: "num" }, c.cpu_percent < 0 ? "–" : c.cpu_percent.toFixed(1)),
        el("td", { class: "num" }, c.rss_kib ? (c.rss_kib / 1024).toFixed(1) + " MiB" : "–"), el("td", {}, c.last_exit || ""));
    });
    return el("div", { class: "scroll" }, el("table", {}, el("thead", {}, head), el("tbody", {}, ...rows)));
  }

  function timeline(events) {
    if (!events.length) return el("p", { class: "meta" }, "nothing yet");
    return el("ul", { class: "timeline" }, ...events.slice().reverse().map(e =>
      el("li", { "data-kind": e.kind, "data-component": e.component },
        el("span", { class: "when" }, clock(Date.parse(e.time))),
        el("strong", {}, e.component), e.generation ? el("span", { class: "meta" }, "gen " + e.generation) : "",
        el("span", { class: "kind " + e.kind }, e.kind),
        e.reason ? el("span", { class: "reason" }, e.reason) : "",
        e.action ? el("span", { class: "meta" }, "→ " + e.action) : "",
        e.recovery_ms ? el("span", { class: "recovery" }, "back in " + (e.recovery_ms / 1000).toFixed(2) + " s") : "")));
  }

  function draw(v) {
    const now = Date.parse(v.time) || Date.now();
    const state = document.getElementById("state");
    state.className = "pill " + (v.error ? "bad" : v.ready ? "ok" : "warn");
    state.textContent = v.error ? "status unavailable" : v.ready ? "ready" : "not ready";
    document.getElementById("updated").textContent = `${v.stack} stack · updated ${clock(now)}`;
    const waiting = document.getElementById("waiting");
    waiting.textContent = v.error ? v.error : (v.waiting || []).map(w => "waiting for " + w).join(" · ");
    document.getElementById("nics").replaceChildren(...v.nics.map(n => nicCard(n, v.events, now)));
    document.getElementById("nics-section").hidden = v.nics.length === 0;
    document.getElementById("components").replaceChildren(componentsTable(v.components));
    document.getElementById("events").replaceChildren(timeline(v.events));
    document.getElementById("logs").textContent = v.lines.map(l => `${clock(Date.parse(l.time))} ${l.component}: ${l.text}`).join("\n");
    document.getElementById("initial").hidden = true;
    document.getElementById("live").hidden = false;
    document.body.dataset.updates = String(++updates);
  }

  async function tick() {
    try {
      const r = await fetch("live.json", { cache: "no-store" });
      if (r.ok) draw(await r.json());
    } catch (e) {
      const s = document.getElementById("state");
      s.className = "pill bad";
      s.textContent = "appliance unreachable";
    }
    setTimeout(tick, every);
  }
  tick();
})();
