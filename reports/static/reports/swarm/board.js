/* The swarm board: running, waiting, blocked and failed tasks, top-level
   tasks and agents of a project, kept current by the event stream. */
(function () {
  "use strict";

  const S = window.Swarm;
  const h = S.h;
  const config = S.config();
  const root = document.getElementById("swarm-board");
  const live = document.getElementById("swarm-live");
  const positionShown = document.getElementById("swarm-position");
  let data = null;
  let feed = null;

  function taskUrl(id) {
    return S.url(config.task_url, id);
  }

  function card(task, options) {
    options = options || {};
    const classes = ["card", "st-" + task.status];
    if (options.blocked) classes.push("is-blocked");
    const meta = [];
    if (task.agent_name) meta.push(h("span", { title: "assigned agent" }, "● " + task.agent_name));
    if (task.parent_title) meta.push(h("span", { title: "part of" }, "↳ " + S.clip(task.parent_title, 36)));
    if (options.blocked) meta.push(h("span", null, "waits for " + task.unmet + " unfinished"));
    if (task.status === "running" && task.started_at) meta.push(h("span", { "data-since": task.started_at }, S.ago(task.started_at)));
    else if (task.status === "failed") meta.push(h("span", null, S.ago(task.updated_at)));
    else meta.push(h("span", null, task.status + " · " + S.ago(task.created_at)));
    const node = h(
      "a",
      { class: classes.join(" "), href: taskUrl(task.id), "data-task": task.id, title: task.title },
      h("div", { class: "card-title" }, task.title),
      h("div", { class: "card-meta" }, meta)
    );
    if (task.status === "running" || task.progress) {
      node.appendChild(h("div", { class: "bar" }, h("span", { style: { width: (task.progress || 0) + "%" } })));
    }
    if (task.error) node.appendChild(h("div", { class: "card-error", title: task.error }, task.error));
    if (options.subtasks) {
      const stack = S.statusStack(task.subtasks || {});
      if (stack.total) {
        node.appendChild(stack.bar);
        node.appendChild(h("div", { class: "card-meta" }, stack.total + " subtasks · " + Object.keys(task.subtasks).filter(function (s) { return task.subtasks[s]; }).map(function (s) { return task.subtasks[s] + " " + s; }).join(", ")));
      }
    }
    return node;
  }

  function column(name, label, column, hint) {
    const list = h("div", { class: "cards", id: "col-" + name });
    if (!column.tasks.length) list.appendChild(h("div", { class: "empty" }, hint));
    column.tasks.forEach(function (task) { list.appendChild(card(task, { blocked: name === "blocked" })); });
    const count = column.tasks.length + (column.more ? "+" : "");
    return h(
      "section",
      { class: "swarm-panel board-col col-" + name, "data-column": name },
      h("h2", null, h("span", { class: "dot" }), label, " ", h("span", { class: "swarm-count" }, "(" + count + ")")),
      list
    );
  }

  function agentsTable(agents, running) {
    const current = {};
    running.forEach(function (task) { if (task.assigned_agent) current[task.assigned_agent] = task; });
    const names = {};
    agents.forEach(function (a) { names[a.id] = a.name; });
    const order = { busy: 0, waiting: 1, error: 2, idle: 3, offline: 4 };
    const sorted = agents.slice().sort(function (a, b) {
      return (order[a.status] - order[b.status]) || a.name.localeCompare(b.name);
    });
    const body = h("tbody");
    sorted.forEach(function (agent) {
      const task = current[agent.id];
      body.appendChild(
        h(
          "tr",
          { "data-agent": agent.id },
          h("td", { class: "nowrap" }, h("span", { class: "dot ag-" + agent.status }), " ", h("a", { href: S.url(config.admin_agent_url, agent.id) }, agent.name)),
          h("td", null, agent.role || ""),
          h("td", { class: "mono nowrap" }, agent.model || ""),
          h("td", null, agent.parent ? names[agent.parent] || "" : ""),
          h("td", { class: "agent-status" }, h("span", { class: "pill ag-" + agent.status }, agent.status)),
          h("td", { class: "num" }, S.int(agent.tasks_completed) + (agent.tasks_failed ? " / " + S.int(agent.tasks_failed) + " failed" : "")),
          h("td", { class: "num" }, S.tokens((agent.prompt_tokens || 0) + (agent.completion_tokens || 0))),
          h("td", { class: "num" }, S.cost(agent.cost)),
          h("td", { class: "heartbeat", "data-at": agent.last_heartbeat_at || "" }, S.ago(agent.last_heartbeat_at)),
          h("td", null, task ? h("a", { href: taskUrl(task.id) }, S.clip(task.title, 60)) : h("span", { class: "muted" }, "—"))
        )
      );
    });
    return h(
      "table",
      { class: "swarm-table", id: "agents" },
      h("thead", null, h("tr", null, ["Agent", "Role", "Model", "Reports to", "State", "Tasks done", "Tokens", "Cost", "Last heartbeat", "Working on"].map(function (t) {
        return h("th", { class: ["Tasks done", "Tokens", "Cost"].indexOf(t) >= 0 ? "num" : null }, t);
      }))),
      body
    );
  }

  function render() {
    const cols = data.columns;
    const previous = new Set(Array.from(root.querySelectorAll("[data-task]")).map(function (n) { return n.getAttribute("data-column-task"); }));
    const roots = h("div", { class: "roots" });
    data.roots.forEach(function (task) { roots.appendChild(card(task, { subtasks: true })); });
    if (!data.roots.length) roots.appendChild(h("div", { class: "muted" }, "No tasks yet. Agents create them through the API (or run make demo)."));
    const view = h(
      "div",
      null,
      h("section", { class: "swarm-panel" }, h("h2", null, "Latest top-level tasks"), roots),
      h(
        "div",
        { class: "swarm-grid cols-4 swarm-section" },
        column("running", "Running", cols.running, "Nothing running."),
        column("waiting", "Waiting", cols.waiting, "Nothing waiting."),
        column("blocked", "Blocked", cols.blocked, "Nothing blocked."),
        column("failed", "Failed in the last 24 h", cols.failed, "No failures.")
      ),
      h(
        "section",
        { class: "swarm-panel" },
        h("h2", null, "Agents ", h("span", { class: "swarm-count" }, "(" + data.agents.length + ")")),
        data.agents.length ? agentsTable(data.agents, cols.running.tasks) : h("div", { class: "muted" }, "No agents registered.")
      )
    );
    root.replaceChildren(view);
    // Flash what is new in a column since the last picture.
    root.querySelectorAll(".board-col [data-task]").forEach(function (node) {
      const key = node.closest(".board-col").getAttribute("data-column") + ":" + node.getAttribute("data-task");
      node.setAttribute("data-column-task", key);
      if (previous.size && !previous.has(key)) node.classList.add("flash");
    });
    positionShown.textContent = data.position;
    document.body.setAttribute("data-swarm-ready", "1");
  }

  function tick() {
    if (!data) return;
    root.querySelectorAll("td.heartbeat").forEach(function (cell) {
      cell.textContent = S.ago(cell.getAttribute("data-at") || null);
    });
    root.querySelectorAll("[data-since]").forEach(function (cell) {
      cell.textContent = S.ago(cell.getAttribute("data-since"));
    });
  }

  const refetch = S.Refetcher(config.snapshot_url, function (snapshot) {
    data = snapshot;
    render();
  }, { delay: 150, gap: 600 });

  function onEvents(events) {
    let stale = false;
    events.forEach(function (event) {
      const kind = event.kind;
      if (kind === "agent.heartbeat" && data) {
        const agent = data.agents.find(function (a) { return a.id === event.payload.agent; });
        if (agent) {
          agent.status = event.payload.status;
          agent.last_heartbeat_at = event.occurred_at;
          const row = root.querySelector('tr[data-agent="' + agent.id + '"]');
          if (row) {
            row.querySelector(".agent-status").replaceChildren(h("span", { class: "pill ag-" + agent.status }, agent.status));
            row.querySelector("td .dot").className = "dot ag-" + agent.status;
            const beat = row.querySelector("td.heartbeat");
            beat.setAttribute("data-at", agent.last_heartbeat_at);
            beat.textContent = S.ago(agent.last_heartbeat_at);
          }
        } else {
          stale = true;
        }
      } else if (/^(task|run|agent)\./.test(kind)) {
        stale = true;
      }
    });
    positionShown.textContent = events[events.length - 1].position;
    if (stale) refetch.schedule();
  }

  S.fetchJSON(config.snapshot_url).then(function (snapshot) {
    data = snapshot;
    render();
    feed = S.Feed(config, snapshot.position, onEvents, function (state) { S.showState(live, state); });
    feed.start();
    setInterval(tick, 1000);
  }).catch(function (error) {
    root.replaceChildren(h("p", { class: "errornote" }, "The board could not load: " + error.message));
  });
})();
