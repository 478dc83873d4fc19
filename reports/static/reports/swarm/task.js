/* One task as a picture, live: the subtask and dependency graph, the agents
   and who delegated to whom, runs on a timeline, transcripts, events.

   One snapshot request draws the page; then the page follows the event
   stream after the snapshot's position. Status and progress changes are
   patched in place at once; anything else (a new subtask, a message, a run)
   asks for a fresh snapshot, at most one request in flight. */
(function () {
  "use strict";

  const S = window.Swarm;
  const h = S.h;
  const config = S.config();
  const live = document.getElementById("swarm-live");
  const positionShown = document.getElementById("swarm-position");
  const els = {
    head: document.getElementById("task-head"),
    graphBox: document.getElementById("graph-box"),
    graphNote: document.getElementById("graph-note"),
    detail: document.getElementById("graph-detail"),
    agents: document.getElementById("agents"),
    timeline: document.getElementById("timeline"),
    conversations: document.getElementById("conversations"),
    events: document.getElementById("events"),
  };

  const tooltip = document.getElementById("graph-tooltip");
  const NODE_W = 196;
  const NODE_H = 44;
  const MAX_EVENTS_SHOWN = 100;

  let snap = null;
  let nodes = new Map(); // id -> task node of the snapshot
  let agents = new Map(); // id -> agent
  let convIds = new Set();
  let events = []; // newest last
  let structureKey = "";
  let layout = null;
  let selected = null;
  let view = { x: 0, y: 0, k: 1 };
  let userMoved = false;
  let graphSvg = null;
  let canvas = null;
  let boxSize = { width: 1000, height: 500 };

  // Names ---------------------------------------------------------------------

  function names() {
    const out = { agents: {}, tasks: {} };
    agents.forEach(function (a, id) { out.agents[id] = a.name; });
    nodes.forEach(function (n, id) { out.tasks[id] = n.title; });
    return out;
  }

  function agentName(id) {
    const agent = id && agents.get(id);
    return agent ? agent.name : id ? "agent " + id.slice(0, 8) : "";
  }

  function isExternal(node) { return !!node.external; }

  // Blocked edges and nodes: a dependency not completed, of an unfinished task.
  function recomputeBlocked() {
    const unmet = new Map();
    snap.dependencies.forEach(function (dep) {
      const task = nodes.get(dep.task);
      const other = nodes.get(dep.depends_on);
      dep.blocked = !!task && !S.TERMINAL[task.status] && (!other || other.status !== "completed");
      if (dep.blocked) unmet.set(dep.task, (unmet.get(dep.task) || 0) + 1);
    });
    nodes.forEach(function (node, id) { node.blocked = (unmet.get(id) || 0) > 0; });
  }

  // Header ----------------------------------------------------------------------

  function renderHead() {
    const task = nodes.get(config.task);
    const counts = {};
    let tokens = 0;
    let cost = 0;
    let subtasks = 0;
    nodes.forEach(function (node) {
      if (isExternal(node)) return;
      tokens += (node.prompt_tokens || 0) + (node.completion_tokens || 0);
      cost += Number(node.cost || 0);
      if (node.id === task.id) return;
      subtasks++;
      counts[node.status] = (counts[node.status] || 0) + 1;
    });
    const runs = snap.agents.reduce(function (sum, a) { return sum + (a.runs || 0); }, 0);
    const involved = snap.agents.filter(function (a) { return a.involved; }).length;
    const started = S.ms(task.started_at);
    const ended = S.ms(task.completed_at);
    const stack = S.statusStack(counts);
    const title = h("div", { class: "swarm-head" },
      h("h1", { id: "task-title" }, task.title),
      h("span", { class: "pill st-" + task.status, id: "task-status" }, task.status),
      task.blocked ? h("span", { class: "pill blocked" }, "blocked") : null,
      h("span", { class: "swarm-spacer" }),
      live,
      h("span", { class: "muted" }, "position ", positionShown)
    );
    const facts = h("div", { class: "facts" },
      fact("Progress", (task.progress || 0) + "%", h("div", { class: "bar", style: { width: "120px" } }, h("span", { style: { width: (task.progress || 0) + "%", background: "var(--st-" + (task.status === "completed" ? "completed" : "running") + ")" } }))),
      h("div", { class: "fact wide" },
        h("div", { class: "label" }, "Subtasks"),
        h("div", { class: "value", id: "subtask-count" }, S.int(subtasks)),
        subtasks ? stack.bar : null,
        subtasks ? stack.legend : h("div", { class: "muted" }, "none")
      ),
      fact("Agents", S.int(involved)),
      fact("Runs", S.int(runs)),
      fact("Tokens", S.tokens(tokens)),
      fact("Cost", S.cost(cost)),
      fact(ended ? "Took" : started ? "Running for" : "Created", ended ? S.duration(ended - started) : started ? h("span", { "data-since": task.started_at }, S.duration(Date.now() - started)) : S.ago(task.created_at))
    );
    const links = h("div", { class: "task-links" },
      snap.parent ? h("a", { href: S.url(config.task_url, snap.parent.id) }, "↑ Part of “" + S.clip(snap.parent.title, 60) + "”") : null,
      h("a", { href: S.url(config.admin_task_url, task.id) }, "Admin page"),
      h("a", { href: config.board_url + "?project=" + encodeURIComponent(config.project) }, "Board of " + snap.project.name),
      task.assigned_agent ? h("span", { class: "muted" }, "Assigned to " + agentName(task.assigned_agent)) : null
    );
    const parts = [title, h("div", { class: "swarm-panel" }, facts, links,
      task.error ? h("div", { class: "task-error" }, "Error: " + task.error) : null,
      task.result_summary ? h("div", { class: "muted", style: { marginTop: "6px" } }, task.result_summary) : null)];
    els.head.replaceChildren.apply(els.head, parts);
  }

  function fact(label, value, extra) {
    return h("div", { class: "fact" }, h("div", { class: "label" }, label), h("div", { class: "value" }, value), extra || null);
  }

  // Graph ---------------------------------------------------------------------

  // Subtask links of a task with more than this many subtasks place the
  // subtasks but are not drawn: a thousand lines from one box hide the rest.
  const FAN_OUT_DRAWN = 40;

  function graphEdges() {
    const edges = [];
    const children = new Map();
    nodes.forEach(function (node) {
      if (node.parent) children.set(node.parent, (children.get(node.parent) || 0) + 1);
    });
    nodes.forEach(function (node) {
      if (node.parent && nodes.has(node.parent) && !isExternal(node)) {
        edges.push({ from: node.parent, to: node.id, parent: true, hidden: children.get(node.parent) > FAN_OUT_DRAWN });
      }
    });
    snap.dependencies.forEach(function (dep) {
      if (nodes.has(dep.task) && nodes.has(dep.depends_on)) edges.push({ from: dep.depends_on, to: dep.task });
    });
    return edges;
  }

  function nodeClass(node) {
    let c = "node st-" + node.status;
    if (node.blocked) c += " blocked";
    if (node.id === config.task) c += " root";
    if (isExternal(node)) c += " external";
    if (node.id === selected) c += " selected";
    return c;
  }

  function nodeSub(node) {
    const parts = [node.status];
    if (node.blocked) parts[0] = "blocked";
    if (node.assigned_agent) parts.push(agentName(node.assigned_agent));
    if (node.progress && node.status !== "completed") parts.push(node.progress + "%");
    if (isExternal(node)) parts.push("outside this task");
    return S.clip(parts.join(" · "), 34);
  }

  function progressWidth(node) {
    return ((NODE_W - 22) * Math.max(0, Math.min(100, node.progress || 0))) / 100;
  }

  // A few elements per node: a thousand nodes stay cheap to lay out.
  function nodeMarkup(node, p) {
    return '<g class="' + nodeClass(node) + '" data-id="' + node.id + '" transform="translate(' + p.x + "," + p.y + ')">' +
      '<rect class="box" width="' + NODE_W + '" height="' + NODE_H + '" rx="5"></rect>' +
      '<rect class="band" width="6" height="' + NODE_H + '" rx="2"></rect>' +
      '<text x="13" y="18">' + S.esc(S.clip(node.title, 29)) + "</text>" +
      '<text class="sub" x="13" y="33">' + S.esc(nodeSub(node)) + "</text>" +
      '<rect class="prog" x="13" y="38" width="' + progressWidth(node) + '" height="2"></rect>' +
      "</g>";
  }

  // Whether an edge is blocked is read from the current snapshot, by its ends.
  function blockedEdges() {
    const out = new Set();
    snap.dependencies.forEach(function (d) { if (d.blocked) out.add(d.depends_on + ">" + d.task); });
    return out;
  }

  function edgeClass(edge, blocked) {
    if (edge.parent) return "edge parent";
    return blocked.has(edge.from + ">" + edge.to) ? "edge blocked" : "edge";
  }

  function drawGraph() {
    const ids = [];
    // Root first, then the snapshot's order (creation), external ones last.
    ids.push(config.task);
    nodes.forEach(function (node, id) { if (id !== config.task && !isExternal(node)) ids.push(id); });
    nodes.forEach(function (node, id) { if (isExternal(node)) ids.push(id); });
    const edges = graphEdges();
    const blocked = blockedEdges();
    // Read the box before adding the drawing: no layout of the SVG is forced.
    const box = els.graphBox.getBoundingClientRect();
    const tallest = Math.max(360, Math.round(window.innerHeight * 0.62));
    boxSize = { width: box.width || 1000, height: tallest };
    const aspect = Math.max(1, boxSize.width / boxSize.height);
    layout = S.layered(ids, edges.map(function (e) { return [e.from, e.to]; }), {
      nodeW: NODE_W,
      nodeH: NODE_H,
      gapX: 56,
      gapY: 10,
      wrapGap: 16,
      maxRows: function (sizes) {
        // Wrap tall layers so the drawing's shape follows the box's.
        return S.rowsForAspect(sizes, aspect, { min: 8, max: 80, nodeW: NODE_W, nodeH: NODE_H, gapX: 56, gapY: 10, wrapGap: 16 });
      },
    });
    const parts = [];
    parts.push('<defs><marker id="arrow" viewBox="0 0 8 8" refX="7" refY="4" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0L8,4L0,8z" fill="#8592a6"></path></marker>' +
      '<marker id="arrow-blocked" viewBox="0 0 8 8" refX="7" refY="4" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0L8,4L0,8z" fill="#d9383a"></path></marker></defs>');
    parts.push('<g class="edges">');
    edges.forEach(function (edge, i) {
      if (edge.hidden) return;
      const a = layout.pos.get(edge.from);
      const b = layout.pos.get(edge.to);
      const cls = edgeClass(edge, blocked);
      const marker = edge.parent ? "" : cls === "edge blocked" ? ' marker-end="url(#arrow-blocked)"' : ' marker-end="url(#arrow)"';
      parts.push('<path class="' + cls + '" data-i="' + i + '" data-from="' + edge.from + '" data-to="' + edge.to + '" d="' + S.edgePath(a, b, NODE_W, NODE_H) + '"' + marker + "></path>");
    });
    parts.push("</g><g class=\"nodes\">");
    ids.forEach(function (id) { parts.push(nodeMarkup(nodes.get(id), layout.pos.get(id))); });
    parts.push("</g>");
    // A small graph gets a smaller box; a big one the most the screen allows.
    boxSize.height = Math.min(tallest, Math.max(220, Math.ceil(layout.height * Math.min(1.3, boxSize.width / layout.width)) + 24));
    els.graphBox.style.height = boxSize.height + "px";
    if (!userMoved) fitView();
    // Pan and zoom move an HTML layer (a CSS transform): the SVG inside is
    // laid out once, not again at every step of a drag.
    els.graphBox.innerHTML = '<div class="graph-canvas" style="' + viewStyle() + '"><svg xmlns="http://www.w3.org/2000/svg" id="graph" class="' + lodClass() + '" width="' + layout.width + '" height="' + layout.height + '" data-nodes="' + ids.length + '" data-edges="' + edges.length + '">' + parts.join("") + "</svg></div>";
    canvas = els.graphBox.firstChild;
    graphSvg = canvas.firstChild;
    graphSvg.__edges = edges;
    updateNote();
  }

  function updateNote() {
    const edges = graphSvg ? graphSvg.__edges : [];
    let subtasks = -1; // the task itself is not one
    nodes.forEach(function (node) { if (!isExternal(node)) subtasks++; });
    const blockedCount = snap.dependencies.filter(function (d) { return d.blocked; }).length;
    const hiddenLinks = edges.some(function (e) { return e.hidden; });
    els.graphNote.textContent = subtasks + " subtasks" +
      (snap.truncated ? " (the first " + subtasks + "; more are not drawn)" : "") +
      (hiddenLinks ? " (links to the subtasks of a task with more than " + FAN_OUT_DRAWN + " are not drawn)" : "") +
      ", " + snap.dependencies.length + " dependencies, " + blockedCount + " blocked. " +
      "Drag to move, wheel to zoom (titles show from 45 %), click a task for details, double-click to open it.";
  }

  // Status, progress, blocked: change the drawn nodes and edges in place.
  function restyleGraph(changed) {
    if (!graphSvg) return;
    graphSvg.querySelectorAll("g.node").forEach(function (g) {
      const node = nodes.get(g.getAttribute("data-id"));
      if (!node) return;
      const cls = nodeClass(node) + (changed && changed.has(node.id) ? " changed" : "");
      const width = String(progressWidth(node));
      const prog = g.querySelector("rect.prog");
      if (g.getAttribute("class") !== cls || prog.getAttribute("width") !== width) {
        g.setAttribute("class", cls);
        prog.setAttribute("width", width);
        g.querySelectorAll("text")[1].textContent = nodeSub(node);
      }
    });
    const edges = graphSvg.__edges;
    const blocked = blockedEdges();
    graphSvg.querySelectorAll("path.edge").forEach(function (path) {
      const edge = edges[Number(path.getAttribute("data-i"))];
      const cls = edgeClass(edge, blocked);
      const hot = path.classList.contains("hot");
      if (path.getAttribute("class").replace(" hot", "") !== cls) {
        path.setAttribute("class", cls + (hot ? " hot" : ""));
        if (!edge.parent) path.setAttribute("marker-end", cls === "edge blocked" ? "url(#arrow-blocked)" : "url(#arrow)");
      }
    });
    updateNote();
    if (changed && changed.size) {
      setTimeout(function () {
        graphSvg.querySelectorAll("g.node.changed").forEach(function (g) { g.classList.remove("changed"); });
      }, 1300);
    }
  }

  const LOD_SCALE = 0.45;

  function viewStyle() {
    return "transform: translate(" + view.x + "px," + view.y + "px) scale(" + view.k + ")";
  }

  // Zoomed far out, titles are too small to read: they are not drawn.
  function lodClass() {
    return view.k < LOD_SCALE ? "lod-low" : "";
  }

  function applyView() {
    if (!canvas) return;
    canvas.setAttribute("style", viewStyle());
    const lod = lodClass();
    if (graphSvg.getAttribute("class") !== lod) graphSvg.setAttribute("class", lod);
  }

  function fitView() {
    if (!layout) return;
    const k = Math.min(boxSize.width / layout.width, boxSize.height / layout.height, 1.3);
    view.k = Math.max(k, 0.05);
    view.x = (boxSize.width - layout.width * view.k) / 2;
    view.y = Math.max(0, (boxSize.height - layout.height * view.k) / 2);
  }

  function fit() {
    const box = els.graphBox.getBoundingClientRect();
    if (box.width) boxSize = { width: box.width, height: box.height };
    fitView();
    applyView();
  }

  let timelineWidth = 0;
  function measure() {
    timelineWidth = Math.max(els.timeline.clientWidth || 900, 400);
  }

  function zoomAt(factor, cx, cy) {
    const k = Math.max(0.05, Math.min(3, view.k * factor));
    view.x = cx - ((cx - view.x) * k) / view.k;
    view.y = cy - ((cy - view.y) * k) / view.k;
    view.k = k;
    userMoved = true;
    applyView();
  }

  function wireGraph() {
    const box = els.graphBox;
    box.addEventListener("wheel", function (event) {
      event.preventDefault();
      const rect = box.getBoundingClientRect();
      zoomAt(Math.exp(-event.deltaY * 0.0015), event.clientX - rect.left, event.clientY - rect.top);
    }, { passive: false });
    let drag = null;
    box.addEventListener("pointerdown", function (event) {
      drag = { x: event.clientX, y: event.clientY, vx: view.x, vy: view.y, moved: false };
    });
    window.addEventListener("pointermove", function (event) {
      if (!drag) return;
      const dx = event.clientX - drag.x;
      const dy = event.clientY - drag.y;
      if (Math.abs(dx) + Math.abs(dy) > 3) {
        drag.moved = true;
        box.classList.add("is-dragging");
      }
      if (drag.moved) {
        view.x = drag.vx + dx;
        view.y = drag.vy + dy;
        userMoved = true;
        applyView();
      }
    });
    window.addEventListener("pointerup", function () {
      box.classList.remove("is-dragging");
      setTimeout(function () { drag = null; }, 0);
    });
    box.addEventListener("click", function (event) {
      if (drag && drag.moved) return;
      const g = event.target.closest && event.target.closest("g.node");
      select(g ? g.getAttribute("data-id") : null);
    });
    box.addEventListener("dblclick", function (event) {
      const g = event.target.closest && event.target.closest("g.node");
      if (g && g.getAttribute("data-id") !== config.task) window.location.href = S.url(config.task_url, g.getAttribute("data-id"));
    });
    box.addEventListener("mouseover", function (event) {
      const g = event.target.closest && event.target.closest("g.node");
      const id = g ? g.getAttribute("data-id") : null;
      highlight(id || selected);
      const node = id && nodes.get(id);
      if (!node) { tooltip.hidden = true; return; }
      tooltip.textContent = node.title + " — " + (node.blocked ? "blocked, " : "") + node.status +
        (node.assigned_agent ? " · " + agentName(node.assigned_agent) : "");
      tooltip.hidden = false;
    });
    box.addEventListener("mousemove", function (event) {
      if (tooltip.hidden) return;
      const rect = box.getBoundingClientRect();
      tooltip.style.left = Math.min(event.clientX - rect.left + 14, rect.width - 260) + "px";
      tooltip.style.top = event.clientY - rect.top + 16 + "px";
    });
    box.addEventListener("mouseleave", function () { tooltip.hidden = true; });
    document.getElementById("graph-fit").addEventListener("click", function () { userMoved = false; fit(); });
    document.getElementById("graph-in").addEventListener("click", function () {
      const r = box.getBoundingClientRect();
      zoomAt(1.3, r.width / 2, r.height / 2);
    });
    document.getElementById("graph-out").addEventListener("click", function () {
      const r = box.getBoundingClientRect();
      zoomAt(1 / 1.3, r.width / 2, r.height / 2);
    });
    window.addEventListener("resize", function () {
      measure();
      if (!userMoved) fit();
      if (snap) renderTimeline();
    });
  }

  let highlighted = null;
  function highlight(id) {
    if (!graphSvg || highlighted === id) return;
    graphSvg.querySelectorAll("path.edge.hot").forEach(function (p) { p.classList.remove("hot"); });
    highlighted = id;
    if (!id) return;
    graphSvg.querySelectorAll('path.edge[data-from="' + id + '"], path.edge[data-to="' + id + '"]').forEach(function (p) {
      p.classList.add("hot");
    });
  }

  function select(id) {
    selected = id;
    if (graphSvg) {
      graphSvg.querySelectorAll("g.node.selected").forEach(function (g) { g.classList.remove("selected"); });
      if (id) {
        const g = graphSvg.querySelector('g.node[data-id="' + id + '"]');
        if (g) g.classList.add("selected");
      }
    }
    highlight(id);
    renderDetail();
  }

  function renderDetail() {
    const node = selected && nodes.get(selected);
    if (!node) {
      els.detail.hidden = true;
      return;
    }
    const waitsFor = snap.dependencies.filter(function (d) { return d.task === node.id; });
    const waitedBy = snap.dependencies.filter(function (d) { return d.depends_on === node.id; });
    const row = function (label, value) { return value === null || value === "" || value === undefined ? null : [h("dt", null, label), h("dd", null, value)]; };
    const list = function (deps, key) {
      return deps.length ? h("div", null, deps.map(function (d) {
        const other = nodes.get(d[key]);
        return h("div", null, h("span", { class: "pill st-" + (other ? other.status : "pending") }, other ? other.status : "?"), " ", other ? S.clip(other.title, 40) : d[key].slice(0, 8));
      })) : null;
    };
    const runs = snap.runs.filter(function (r) { return r.task === node.id; });
    els.detail.replaceChildren(
      h("button", { class: "close", type: "button", title: "Close", id: "graph-detail-close" }, "×"),
      h("h3", null, node.title),
      h("div", null, h("span", { class: "pill st-" + node.status }, node.status), " ", node.blocked ? h("span", { class: "pill blocked" }, "blocked") : null),
      h("dl", null,
        row("Agent", node.assigned_agent ? agentName(node.assigned_agent) : "unassigned"),
        row("Progress", (node.progress || 0) + "%"),
        row("Priority", String(node.priority || 0)),
        row("Tokens", S.int((node.prompt_tokens || 0) + (node.completion_tokens || 0))),
        row("Cost", S.cost(node.cost)),
        row("Runs", runs.length ? runs.length + " (" + runs.map(function (r) { return r.status; }).join(", ") + ")" : ""),
        row("Started", node.started_at ? S.clock(node.started_at) : ""),
        row("Ended", node.completed_at ? S.clock(node.completed_at) + " (" + S.duration(S.ms(node.completed_at) - S.ms(node.started_at)) + ")" : ""),
        row("Waits for", list(waitsFor, "depends_on")),
        row("Needed by", list(waitedBy, "task")),
        row("Error", node.error || ""),
        row("Result", node.result_summary || "")
      ),
      h("div", { class: "task-links" },
        node.id !== config.task ? h("a", { href: S.url(config.task_url, node.id) }, "Open its swarm view") : null,
        h("a", { href: S.url(config.admin_task_url, node.id) }, "Admin page"))
    );
    els.detail.hidden = false;
    document.getElementById("graph-detail-close").addEventListener("click", function (event) {
      event.stopPropagation();
      select(null);
    });
  }

  // Agents --------------------------------------------------------------------

  function renderAgents() {
    const list = snap.agents.slice().sort(function (a, b) {
      return (b.involved - a.involved) || Number(b.cost) - Number(a.cost) || a.name.localeCompare(b.name);
    });
    if (!list.length) {
      els.agents.replaceChildren(h("p", { class: "muted" }, "No agent has worked on this task yet."));
      return;
    }
    // The picture: agents laid out by delegation, planner left, workers right.
    const ids = list.map(function (a) { return a.id; });
    const edges = [];
    snap.delegations.forEach(function (d) { edges.push({ from: d.from, to: d.to, label: d.tasks + (d.tasks === 1 ? " task" : " tasks") }); });
    list.forEach(function (a) {
      if (a.parent && agents.has(a.parent) && !snap.delegations.some(function (d) { return d.from === a.parent && d.to === a.id; })) {
        edges.push({ from: a.parent, to: a.id, reports: true });
      }
    });
    const AW = 170;
    const AH = 38;
    const lay = S.layered(ids, edges.map(function (e) { return [e.from, e.to]; }), { nodeW: AW, nodeH: AH, gapX: 90, gapY: 8, maxRows: 8, margin: 10 });
    const parts = ['<defs><marker id="agent-arrow" viewBox="0 0 8 8" refX="7" refY="4" markerWidth="7" markerHeight="7" orient="auto"><path d="M0,0L8,4L0,8z" fill="#8592a6"></path></marker></defs>'];
    edges.forEach(function (e) {
      const a = lay.pos.get(e.from);
      const b = lay.pos.get(e.to);
      if (!a || !b) return;
      parts.push('<path class="agent-edge' + (e.reports ? " reports" : "") + '" d="' + S.edgePath(a, b, AW, AH) + '"' + (e.reports ? "" : ' marker-end="url(#agent-arrow)"') + "></path>");
      if (e.label) {
        parts.push('<text class="agent-edge-label" x="' + ((a.x + AW + b.x) / 2) + '" y="' + ((a.y + b.y + AH) / 2 - 4) + '" text-anchor="middle">' + S.esc(e.label) + "</text>");
      }
    });
    list.forEach(function (a) {
      const p = lay.pos.get(a.id);
      parts.push('<g class="agent-node ag-' + a.status + '" transform="translate(' + p.x + "," + p.y + ')"><title>' + S.esc(a.name + " (" + (a.role || "agent") + ", " + a.status + ")") + "</title>" +
        '<rect width="' + AW + '" height="' + AH + '" rx="19"></rect>' +
        '<circle cx="16" cy="' + AH / 2 + '" r="5" fill="var(--st-' + ({ busy: "running", waiting: "waiting", error: "failed", offline: "cancelled" }[a.status] || "pending") + ')"></circle>' +
        '<text x="28" y="16">' + S.esc(S.clip(a.name, 20)) + "</text>" +
        '<text class="sub" x="28" y="29">' + S.esc(S.clip((a.role || "agent") + " · " + S.tokens(a.prompt_tokens + a.completion_tokens) + " tok · " + S.cost(a.cost), 26)) + "</text></g>");
    });
    const picture = h("div", { class: "agents-graph" });
    picture.innerHTML = '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ' + lay.width + " " + lay.height + '" style="max-height:' + Math.min(lay.height, 320) + 'px">' + parts.join("") + "</svg>";

    const body = h("tbody");
    list.forEach(function (a) {
      body.appendChild(h("tr", { class: a.involved ? "" : "is-uninvolved", "data-agent": a.id },
        h("td", { class: "agent-name" },
          h("span", { class: "dot ag-" + a.status }), " ", h("a", { href: S.url(config.admin_agent_url, a.id) }, a.name),
          h("div", { class: "event-meta" }, [a.role || "agent", a.model, a.involved ? "" : "delegates only"].filter(Boolean).join(" · "))),
        h("td", null, a.parent ? agentName(a.parent) : ""),
        h("td", { class: "num" }, S.int(a.tasks_assigned)),
        h("td", { class: "num" }, S.int(a.runs) + (a.runs_failed ? " (" + a.runs_failed + " failed)" : "")),
        h("td", { class: "num" }, S.int(a.messages)),
        h("td", { class: "num", title: S.int(a.prompt_tokens) + " prompt + " + S.int(a.completion_tokens) + " completion" }, S.tokens(a.prompt_tokens + a.completion_tokens)),
        h("td", { class: "num" }, S.cost(a.cost)),
        h("td", { class: "heartbeat", "data-at": a.last_heartbeat_at || "" }, S.ago(a.last_heartbeat_at))
      ));
    });
    const table = h("table", { class: "swarm-table" },
      h("thead", null, h("tr", null,
        h("th", null, "Agent"), h("th", null, "Delegated by"), h("th", { class: "num" }, "Tasks"),
        h("th", { class: "num" }, "Runs"), h("th", { class: "num" }, "Msgs"), h("th", { class: "num" }, "Tokens"),
        h("th", { class: "num" }, "Cost"), h("th", null, "Heartbeat"))),
      body);
    els.agents.replaceChildren(picture, h("div", { class: "table-scroll" }, table));
  }

  // Timeline ------------------------------------------------------------------

  const TICKS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800];

  function renderTimeline() {
    const runs = snap.runs;
    if (!runs.length) {
      els.timeline.replaceChildren(h("p", { class: "muted" }, "No runs yet."));
      return;
    }
    const now = Date.now();
    let t0 = Infinity;
    let last = -Infinity;
    let open = false;
    runs.forEach(function (r) {
      const start = S.ms(r.started_at);
      const end = r.ended_at ? S.ms(r.ended_at) : null;
      t0 = Math.min(t0, start);
      last = Math.max(last, end || start);
      if (!end) open = true;
    });
    // Follow "now" while something runs or the last end was recent.
    const span0 = Math.max(last - t0, 1000);
    const showNow = open || now - last < span0 * 0.5 + 60000;
    let t1 = showNow ? Math.max(now, last) : last;
    const pad = (t1 - t0) * 0.03 + 500;
    t0 -= pad;
    t1 += pad;

    // Lanes: one per agent, split where runs of an agent overlap.
    const lanes = [];
    const byAgent = new Map();
    runs.slice().sort(function (a, b) { return S.ms(a.started_at) - S.ms(b.started_at); }).forEach(function (r) {
      const key = r.agent || "none";
      if (!byAgent.has(key)) byAgent.set(key, []);
      const rows = byAgent.get(key);
      const start = S.ms(r.started_at);
      const end = r.ended_at ? S.ms(r.ended_at) : now;
      let row = rows.find(function (rw) { return rw.end <= start; });
      if (!row) { row = { end: 0, runs: [] }; rows.push(row); }
      row.end = end;
      row.runs.push(r);
    });
    byAgent.forEach(function (rows, key) {
      rows.forEach(function (row, i) { lanes.push({ agent: key, label: i === 0 ? (key === "none" ? "(no agent)" : agentName(key)) : "", runs: row.runs }); });
    });

    const width = timelineWidth || 900;
    const labelW = 140;
    const laneH = 22;
    const top = 22;
    const height = top + lanes.length * laneH + 6;
    const x = function (t) { return labelW + ((t - t0) / (t1 - t0)) * (width - labelW - 12); };
    const parts = ['<defs><pattern id="run-open" width="8" height="8" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="8" height="8" fill="#2f7ae5"></rect><rect width="3" height="8" fill="#6ea4ef"></rect></pattern></defs>'];
    lanes.forEach(function (lane, i) {
      if (i % 2 === 0) parts.push('<rect class="lane-bg" x="0" y="' + (top + i * laneH) + '" width="' + width + '" height="' + laneH + '"></rect>');
      parts.push('<text class="lane-label" x="6" y="' + (top + i * laneH + 15) + '">' + S.esc(S.clip(lane.label, 20)) + "</text>");
    });
    // Ticks at a round step, about eight of them.
    const span = (t1 - t0) / 1000;
    const step = TICKS.find(function (s) { return span / s <= 8; }) || TICKS[TICKS.length - 1];
    const first = Math.ceil(t0 / 1000 / step) * step * 1000;
    const nowX = showNow ? x(now) : -1000;
    for (let t = first; t <= t1; t += step * 1000) {
      const tx = x(t);
      const label = tx + 50 < nowX - 24 || tx > nowX + 4 ? S.clock(t) : "";
      parts.push('<g class="tick"><line x1="' + tx + '" x2="' + tx + '" y1="' + (top - 4) + '" y2="' + height + '"></line><text x="' + (tx + 3) + '" y="12">' + label + "</text></g>");
    }
    lanes.forEach(function (lane, i) {
      lane.runs.forEach(function (r) {
        const start = S.ms(r.started_at);
        const end = r.ended_at ? S.ms(r.ended_at) : now;
        const bx = x(start);
        const bw = Math.max(3, x(end) - bx);
        const task = nodes.get(r.task);
        const tip = (task ? task.title : "task " + r.task.slice(0, 8)) + "\n" + agentName(r.agent) + " · " + r.status +
          " · " + S.duration(end - start) + (r.ended_at ? "" : " so far") +
          "\n" + S.int(r.prompt_tokens + r.completion_tokens) + " tokens · " + S.cost(r.cost) + (r.error ? "\n" + r.error : "");
        parts.push('<rect class="run st-' + r.status + (r.ended_at ? "" : " open") + '" data-run="' + r.id + '" data-task="' + r.task + '" x="' + bx + '" y="' + (top + i * laneH + 4) + '" width="' + bw + '" height="' + (laneH - 8) + '" rx="3"><title>' + S.esc(tip) + "</title></rect>");
      });
    });
    if (showNow) {
      const nx = x(now);
      parts.push('<line class="now-line" id="now-line" x1="' + nx + '" x2="' + nx + '" y1="' + (top - 6) + '" y2="' + height + '"></line><text class="now-label" x="' + (nx - 4) + '" y="12" text-anchor="end">now</text>');
    }
    els.timeline.innerHTML = '<svg xmlns="http://www.w3.org/2000/svg" width="' + width + '" height="' + height + '" viewBox="0 0 ' + width + " " + height + '">' + parts.join("") + "</svg>";
    const note = snap.runs_more ? "The latest " + runs.length + " runs." : runs.length + (runs.length === 1 ? " run" : " runs") + ".";
    els.timeline.appendChild(h("div", { class: "graph-note" }, note + " Hatched bars are still running; the red line is now. Click a run to find its task in the graph."));
  }

  // Conversations ---------------------------------------------------------------

  const convState = new Map(); // id -> {key, node}

  function toolCall(call) {
    const fn = call.function || {};
    let args = fn.arguments;
    try { args = JSON.stringify(JSON.parse(args), null, 2); } catch (e) { args = String(args === undefined ? "" : args); }
    return h("details", { class: "tool-call" },
      h("summary", null, h("span", { class: "call-tag" }, "tool call"), " ", h("code", null, (fn.name || call.type || "tool") + "(" + S.clip(String(fn.arguments || "").replace(/\s+/g, " "), 60) + ")"), call.id ? h("span", { class: "muted" }, "  " + call.id) : null),
      h("pre", null, args));
  }

  function message(m, conv) {
    const who = m.sender ? agentName(m.sender) : m.role === "tool" ? "tool" : m.role;
    const to = (m.recipients || []).map(agentName).join(", ");
    const usage = [];
    if (m.prompt_tokens || m.completion_tokens) usage.push(S.int(m.prompt_tokens) + " → " + S.int(m.completion_tokens) + " tokens");
    if (Number(m.cost)) usage.push(S.cost(m.cost));
    if (m.latency_ms) usage.push(S.duration(m.latency_ms) === "0 s" ? Math.round(m.latency_ms) + " ms" : S.duration(m.latency_ms));
    const body = [];
    if (m.content) {
      if (m.role === "tool" && m.content.length > 240) {
        body.push(h("details", { class: "tool-call" }, h("summary", null, S.clip(m.content, 120)), h("pre", null, m.content)));
      } else {
        body.push(h("div", { class: "msg-body" }, m.content + (m.truncated ? " …" : "")));
      }
    }
    (Array.isArray(m.tool_calls) ? m.tool_calls : []).forEach(function (call) { body.push(toolCall(call)); });
    return h("div", { class: "msg r-" + m.role, "data-seq": m.seq },
      h("div", { class: "msg-head" },
        h("span", null, "#" + m.seq),
        h("span", { class: "who" }, who),
        to ? h("span", null, "→ " + to) : null,
        h("span", { class: "role" }, m.role + (m.tool_call_id ? " · result of " + m.tool_call_id : "")),
        m.model ? h("span", { class: "mono" }, m.model) : null,
        m.revision > 1 ? h("span", { title: "revised; earlier content is in the event message.revised" }, "edited") : null,
        h("span", { class: "usage" }, usage.join(" · ")),
        h("span", null, S.clock(m.created_at))),
      body);
  }

  function renderConversations(first) {
    const list = snap.conversations;
    if (!list.length) {
      els.conversations.replaceChildren(h("p", { class: "muted" }, "No conversations yet."));
      convState.clear();
      return;
    }
    const seen = new Set();
    const nodesOut = list.map(function (conv, index) {
      seen.add(conv.id);
      const lastSeq = conv.messages.length ? conv.messages[conv.messages.length - 1].seq : 0;
      const key = conv.message_count + ":" + lastSeq + ":" + conv.cost + ":" + conv.status;
      const known = convState.get(conv.id);
      if (known && known.key === key) return known.node;
      const wasOpen = known ? known.node.open : first && index < 2;
      const task = nodes.get(conv.task);
      const earlier = conv.message_count - conv.messages.length;
      const node = h("details", { class: "conv", "data-conv": conv.id, open: wasOpen || null },
        h("summary", null,
          h("span", { class: "conv-title" }, conv.title || "Conversation " + conv.id.slice(0, 8)),
          h("div", { class: "conv-meta" }, [
            conv.participants.map(agentName).join(", ") || "no agents",
            S.int(conv.message_count) + " messages",
            S.tokens(conv.prompt_tokens + conv.completion_tokens) + " tokens",
            S.cost(conv.cost),
            conv.last_message_at ? "last " + S.ago(conv.last_message_at) : "",
            task && task.id !== config.task ? "on “" + S.clip(task.title, 50) + "”" : "",
          ].filter(Boolean).join(" · "))),
        h("div", { class: "transcript" },
          earlier > 0 ? h("div", { class: "earlier" }, earlier + " earlier messages: ", h("a", { href: S.url(config.admin_conversation_url, conv.id) }, "all of them in the admin")) : null,
          conv.messages.map(function (m) { return message(m, conv); })));
      if (known && !first) node.classList.add("flash");
      convState.set(conv.id, { key: key, node: node });
      return node;
    });
    convState.forEach(function (_, id) { if (!seen.has(id)) convState.delete(id); });
    if (snap.conversations_more) nodesOut.push(h("p", { class: "muted" }, "Only the " + list.length + " most recent conversations are shown."));
    els.conversations.replaceChildren.apply(els.conversations, nodesOut);
  }

  // Events --------------------------------------------------------------------

  function eventRow(event, fresh) {
    const n = names();
    const task = event.task && nodes.get(event.task);
    const actor = event.actor ? event.actor.label || event.actor.type : "";
    return h("tr", { "data-position": event.position, class: fresh ? "flash" : null },
      h("td", { class: "num mono muted" }, String(event.position)),
      h("td", { class: "mono" }, S.clock(event.occurred_at)),
      h("td", null,
        h("div", null, h("span", { class: S.kindClass(event.kind) }, event.kind), " ", S.summary(event, n, config.task)),
        h("div", { class: "event-meta" },
          actor ? "by " + S.clip(actor, 32) : "",
          task && task.id !== config.task ? [actor ? " · " : "", h("a", { href: S.url(config.task_url, task.id), title: task.title }, S.clip(task.title, 50))] : null)));
  }

  function renderEvents() {
    const body = h("tbody");
    events.slice(-MAX_EVENTS_SHOWN).reverse().forEach(function (e) { body.appendChild(eventRow(e, false)); });
    els.events.replaceChildren(h("table", { class: "swarm-table events" },
      h("thead", null, h("tr", null, h("th", { class: "num" }, "#"), h("th", null, "Time"), h("th", null, "What happened"))),
      body));
  }

  function prependEvents(list) {
    const body = els.events.querySelector("tbody");
    if (!body) return renderEvents();
    list.forEach(function (e) { body.insertBefore(eventRow(e, true), body.firstChild); });
    while (body.children.length > MAX_EVENTS_SHOWN) body.removeChild(body.lastChild);
  }

  // Snapshot and events -----------------------------------------------------------

  function absorb(snapshot) {
    snap = snapshot;
    nodes = new Map();
    snap.nodes.forEach(function (node) { nodes.set(node.id, node); });
    agents = new Map();
    snap.agents.forEach(function (a) { agents.set(a.id, a); });
    convIds = new Set(snap.conversations.map(function (c) { return c.id; }));
    patches = patches.filter(function (e) { return e.position > snap.position; });
    patches.forEach(function (e) { patch(e, new Set()); });
    // Events: the snapshot's, and any streamed since that it does not hold.
    const byPosition = new Map();
    snap.events.concat(events).forEach(function (e) { byPosition.set(e.position, e); });
    events = Array.from(byPosition.values()).sort(function (a, b) { return a.position - b.position; }).slice(-MAX_EVENTS_SHOWN);
    recomputeBlocked();
  }

  // The head and the graph first; the other panels in the next task, so a
  // big task's picture shows (and answers) as soon as it is drawn.
  function drawAll(first, then) {
    if (first) measure();
    renderHead();
    const key = Array.from(nodes.keys()).sort().join(",") + "|" + snap.dependencies.map(function (d) { return d.task + ">" + d.depends_on; }).sort().join(",");
    if (key !== structureKey) {
      structureKey = key;
      drawGraph();
    } else {
      restyleGraph(null);
    }
    renderDetail();
    if (first) {
      // After the frame that paints the graph: the moment it can be seen.
      requestAnimationFrame(function () {
        setTimeout(function () {
          performance.mark("swarm-graph");
          window.swarmGraphAt = performance.now();
          drawPanels(first);
          if (then) then();
        }, 0);
      });
      return;
    }
    drawPanels(first);
  }

  function drawPanels(first) {
    renderAgents();
    renderTimeline();
    renderConversations(first);
    renderEvents();
  }

  const refetch = S.Refetcher(config.snapshot_url, function (snapshot) {
    absorb(snapshot);
    drawAll(false);
  }, { delay: 100, gap: 500 });

  function concerns(event) {
    if (event.task && nodes.has(event.task)) return true;
    if (event.conversation && convIds.has(event.conversation)) return true;
    const p = event.payload || {};
    if (event.kind === "task.created" && p.parent && nodes.has(p.parent)) return true;
    if (/^agent\./.test(event.kind) && p.agent && agents.has(p.agent)) return true;
    return false;
  }

  // Status, progress and heartbeats change the picture at once. Returns
  // whether the event was one of those; `changed` collects the tasks.
  function patch(event, changed) {
    const p = event.payload || {};
    const node = event.task && nodes.get(event.task);
    if (event.kind === "task.status_changed" && node) {
      node.status = p.to;
      if (p.error) node.error = p.error;
      if (p.result_summary) node.result_summary = p.result_summary;
      if (p.to === "running" && !node.started_at) node.started_at = event.occurred_at;
      if (S.TERMINAL[p.to]) node.completed_at = event.occurred_at;
      changed.add(node.id);
      return true;
    }
    if (event.kind === "task.progress" && node) {
      node.progress = p.progress;
      changed.add(node.id);
      return true;
    }
    if (event.kind === "agent.heartbeat" && agents.has(p.agent)) {
      const agent = agents.get(p.agent);
      agent.status = p.status;
      agent.last_heartbeat_at = event.occurred_at;
      return true;
    }
    return false;
  }

  // Patches received lately, replayed over a snapshot that is older than
  // them (a refetch answered after they arrived), so nothing goes back.
  let patches = [];

  function onEvents(list) {
    const mine = list.filter(concerns);
    positionShown.textContent = list[list.length - 1].position;
    if (!mine.length) return;
    const changed = new Set();
    let stale = false;
    mine.forEach(function (event) {
      if (patch(event, changed)) {
        patches.push(event);
        // Usage, runs and heartbeats' lists may follow: ask for them too.
        if (event.kind !== "task.progress") stale = true;
      } else {
        stale = true;
      }
    });
    if (patches.length > 500) patches = patches.slice(-500);
    const known = new Set(events.map(function (e) { return e.position; }));
    const fresh = mine.filter(function (e) { return !known.has(e.position); });
    events = events.concat(fresh).slice(-MAX_EVENTS_SHOWN);
    if (changed.size) {
      recomputeBlocked();
      restyleGraph(changed);
      renderHead();
      renderDetail();
    }
    prependEvents(fresh);
    if (stale) refetch.schedule();
  }

  function tick() {
    if (!snap) return;
    renderTimeline();
    document.querySelectorAll("[data-since]").forEach(function (el) { el.textContent = S.duration(Date.now() - S.ms(el.getAttribute("data-since"))); });
    document.querySelectorAll("td.heartbeat").forEach(function (cell) { cell.textContent = S.ago(cell.getAttribute("data-at") || null); });
  }

  els.timeline.addEventListener("click", function (event) {
    const bar = event.target.closest && event.target.closest("rect.run");
    if (!bar) return;
    select(bar.getAttribute("data-task"));
    els.graphBox.scrollIntoView({ behavior: "smooth", block: "center" });
  });

  wireGraph();
  // The same request as the page's preload (task.html): its answer is used.
  S.fetchJSON(config.snapshot_url).then(function (snapshot) {
    performance.mark("swarm-snapshot");
    absorb(snapshot);
    positionShown.textContent = snapshot.position;
    drawAll(true, function () {
      performance.mark("swarm-drawn");
      document.body.setAttribute("data-swarm-ready", "1");
      window.swarmReadyAt = performance.now();
      const feed = S.Feed(config, snapshot.position, onEvents, function (state) { S.showState(live, state); });
      feed.start();
      setInterval(tick, 1000);
    });
  }).catch(function (error) {
    els.head.replaceChildren(h("p", { class: "errornote" }, "This task could not load: " + error.message));
  });
})();
