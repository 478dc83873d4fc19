/* The swarm view, shared part: formatting, the event feed, snapshot refetches.
   Plain JavaScript (no build step, no library): see docs/swarm-view.md. */
(function () {
  "use strict";

  const Swarm = (window.Swarm = window.Swarm || {});
  const ZERO_ID = "00000000-0000-0000-0000-000000000000";

  Swarm.config = function () {
    return JSON.parse(document.getElementById("swarm-config").textContent);
  };

  /** A URL of a page made from the config's template with the zero id. */
  Swarm.url = function (template, id) {
    return template.replace(ZERO_ID, id);
  };

  /** document.createElement with attributes and children (strings are text). */
  Swarm.h = function (tag, attrs) {
    const node = document.createElement(tag);
    if (attrs) {
      for (const name of Object.keys(attrs)) {
        const value = attrs[name];
        if (value === null || value === undefined || value === false) continue;
        if (name === "class") node.className = value;
        else if (name === "text") node.textContent = value;
        else if (name === "style" && typeof value === "object") Object.assign(node.style, value);
        else node.setAttribute(name, value === true ? "" : value);
      }
    }
    for (let i = 2; i < arguments.length; i++) {
      const child = arguments[i];
      if (child === null || child === undefined || child === false) continue;
      if (Array.isArray(child)) {
        child.forEach(function (c) {
          if (c !== null && c !== undefined && c !== false) {
            node.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
          }
        });
      } else {
        node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
      }
    }
    return node;
  };

  const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
  Swarm.esc = function (text) {
    return String(text === null || text === undefined ? "" : text).replace(/[&<>"']/g, function (c) {
      return ESCAPES[c];
    });
  };

  Swarm.clip = function (text, n) {
    text = String(text === null || text === undefined ? "" : text);
    return text.length > n ? text.slice(0, n - 1) + "…" : text;
  };

  Swarm.int = function (n) {
    return Number(n || 0).toLocaleString("en-US");
  };

  Swarm.tokens = function (n) {
    n = Number(n || 0);
    if (n >= 1e6) return (n / 1e6).toFixed(n >= 1e7 ? 0 : 1) + "M";
    if (n >= 1e4) return Math.round(n / 1e3) + "k";
    if (n >= 1e3) return (n / 1e3).toFixed(1) + "k";
    return String(n);
  };

  Swarm.cost = function (value) {
    const n = Number(value || 0);
    if (n === 0) return "$0";
    if (n < 0.01) return "$" + n.toFixed(4);
    if (n < 100) return "$" + n.toFixed(2);
    return "$" + Math.round(n).toLocaleString("en-US");
  };

  Swarm.ms = function (value) {
    return value ? Date.parse(value) : null;
  };

  /** "4 s", "3 min 10 s", "2 h 5 min", "3 d 2 h". */
  Swarm.duration = function (ms) {
    if (ms === null || ms === undefined || isNaN(ms)) return "";
    const s = Math.max(0, Math.round(ms / 1000));
    if (s < 60) return s + " s";
    const m = Math.floor(s / 60);
    if (m < 60) return m + " min" + (s % 60 ? " " + (s % 60) + " s" : "");
    const h = Math.floor(m / 60);
    if (h < 48) return h + " h" + (m % 60 ? " " + (m % 60) + " min" : "");
    return Math.floor(h / 24) + " d " + (h % 24) + " h";
  };

  Swarm.ago = function (value, now) {
    const t = Swarm.ms(value);
    if (t === null) return "never";
    const diff = (now || Date.now()) - t;
    if (diff < 5000) return "just now";
    return Swarm.duration(diff) + " ago";
  };

  Swarm.clock = function (value) {
    const t = typeof value === "number" ? value : Swarm.ms(value);
    if (t === null) return "";
    const d = new Date(t);
    const pad = function (n) { return String(n).padStart(2, "0"); };
    return pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
  };

  Swarm.STATUSES = ["pending", "queued", "running", "waiting", "completed", "failed", "cancelled"];
  Swarm.TERMINAL = { completed: true, failed: true, cancelled: true };

  /** A stacked bar and a legend of counts by status. */
  Swarm.statusStack = function (counts) {
    const total = Swarm.STATUSES.reduce(function (sum, s) { return sum + (counts[s] || 0); }, 0);
    const bar = Swarm.h("div", { class: "stack", title: total + " tasks" });
    const legend = Swarm.h("div", { class: "legend" });
    Swarm.STATUSES.forEach(function (status) {
      const n = counts[status] || 0;
      if (!n) return;
      bar.appendChild(Swarm.h("span", { class: "st-" + status, style: { width: (100 * n) / total + "%" }, title: n + " " + status }));
      legend.appendChild(Swarm.h("span", { class: "st-" + status }, n + " " + status));
    });
    return { bar: bar, legend: legend, total: total };
  };

  /**
   * One readable line for an event: what happened, not its raw JSON. The
   * task it concerns is shown beside it, so task events do not repeat it.
   * `names` maps agent and task ids to names; `root` is the page's task.
   */
  Swarm.summary = function (event, names, root) {
    const p = event.payload || {};
    const agent = function (id) { return (id && names.agents[id]) || (id ? "agent " + String(id).slice(0, 8) : "someone"); };
    const task = function (id) { return (id && names.tasks[id]) || (id ? "task " + String(id).slice(0, 8) : ""); };
    const usage = function () {
      const tokens = (p.prompt_tokens || 0) + (p.completion_tokens || 0);
      return (tokens ? ", " + Swarm.tokens(tokens) + " tokens" : "") + (Number(p.cost) ? ", " + Swarm.cost(p.cost) : "");
    };
    switch (event.kind) {
      case "task.created":
        return "created" + (p.parent && p.parent !== root ? " under “" + Swarm.clip(task(p.parent), 40) + "”" : "") +
          (p.assigned_agent ? " for " + agent(p.assigned_agent) : "") +
          (p.depends_on && p.depends_on.length ? ", waits for " + p.depends_on.length : "");
      case "task.status_changed":
        return p.from + " → " + p.to + (p.error ? ": " + Swarm.clip(p.error, 60) : "") +
          (p.result_summary ? ": " + Swarm.clip(p.result_summary, 60) : "");
      case "task.progress":
        return "progress " + p.progress + "%";
      case "task.updated":
        return "changed " + Object.keys(p.changes || {}).join(", ");
      case "task.dependency_added":
        return "now waits for “" + Swarm.clip(task(p.depends_on), 40) + "”";
      case "task.dependency_removed":
        return "no longer waits for “" + Swarm.clip(task(p.depends_on), 40) + "”";
      case "run.started":
        return agent(p.agent) + " started a run" + (p.model ? " (" + p.model + ")" : "");
      case "run.updated":
        return agent(p.agent) + "’s run " + p.status + usage() + (p.error ? ": " + Swarm.clip(p.error, 50) : "");
      case "message.created":
        return "#" + p.seq + " " + p.role + (p.sender ? " from " + agent(p.sender) : "") + usage() + (p.model ? " (" + p.model + ")" : "");
      case "message.updated":
        return "#" + p.seq + (p.sender ? " was sent by " + agent(p.sender) : " changed " + Object.keys(p.changes || {}).join(", "));
      case "conversation.created":
        return "conversation opened" + (p.title ? ": “" + Swarm.clip(p.title, 60) + "”" : "");
      case "agent.heartbeat":
        return agent(p.agent) + " is " + p.status;
      case "agent.registered":
        return "agent " + (p.name || agent(p.agent)) + " registered" + (p.role ? " as " + p.role : "");
      case "agent.updated":
        return agent(p.agent) + ": changed " + Object.keys(p.changes || {}).join(", ");
      default: {
        const keys = Object.keys(p).slice(0, 4);
        return keys.map(function (k) {
          const v = p[k];
          return k + "=" + Swarm.clip(typeof v === "object" ? JSON.stringify(v) : String(v), 40);
        }).join(", ");
      }
    }
  };

  Swarm.kindClass = function (kind) {
    return "kind k-" + String(kind).split(".")[0];
  };

  /** GET a JSON body (plain same-origin GET, as a preload of it). */
  Swarm.fetchJSON = function (url) {
    return fetch(url, { credentials: "same-origin" }).then(function (response) {
      if (response.status === 401 || response.status === 403) {
        window.location.href = "/admin/login/?next=" + encodeURIComponent(window.location.pathname + window.location.search);
        throw new Error("not logged in");
      }
      if (!response.ok) throw new Error(url + " answered " + response.status);
      return response.json();
    });
  };

  /**
   * Refetches a snapshot when asked, at most one request in flight and at
   * most one every `gap` ms, so a burst of events costs one or two requests
   * and a change shows within well under two seconds.
   */
  Swarm.Refetcher = function (url, onData, options) {
    options = options || {};
    const delay = options.delay === undefined ? 120 : options.delay;
    const gap = options.gap === undefined ? 500 : options.gap;
    let timer = null;
    let inFlight = false;
    let again = false;
    let last = 0;

    function run() {
      timer = null;
      if (inFlight) { again = true; return; }
      inFlight = true;
      last = Date.now();
      Swarm.fetchJSON(url).then(onData).catch(function (error) {
        if (options.onError) options.onError(error);
      }).then(function () {
        inFlight = false;
        if (again) { again = false; schedule(); }
      });
    }

    function schedule() {
      if (timer !== null) return;
      if (inFlight) { again = true; return; }
      const wait = Math.max(delay, gap - (Date.now() - last));
      timer = setTimeout(run, wait);
    }

    return { schedule: schedule, now: run };
  };

  /**
   * Follows the project's events after `after`: over the WebSocket stream
   * with the staff session (default project), else by polling the feed
   * endpoint. Resumes after the last position on reconnect, so nothing is
   * missed or seen twice. `onEvents(list)`, `onState("live" | "polling" |
   * "reconnecting")`.
   */
  Swarm.Feed = function (config, after, onEvents, onState) {
    let position = after;
    let socket = null;
    let stopped = false;
    let pollTimer = null;

    function deliver(events) {
      const fresh = events.filter(function (e) { return e.position > position; });
      if (!fresh.length) return;
      position = fresh[fresh.length - 1].position;
      onEvents(fresh);
    }

    function poll() {
      if (stopped) return;
      Swarm.fetchJSON(config.feed_url + "&after=" + position).then(function (page) {
        onState("polling");
        deliver(page.events);
        position = Math.max(position, page.position);
        pollTimer = setTimeout(poll, page.events.length >= 500 ? 0 : config.poll_ms);
      }).catch(function () {
        onState("reconnecting");
        pollTimer = setTimeout(poll, 2000);
      });
    }

    function connect() {
      if (stopped) return;
      const scheme = window.location.protocol === "https:" ? "wss" : "ws";
      socket = new WebSocket(scheme + "://" + window.location.host + "/ws/v1/events/?batch=1&after=" + position);
      socket.onopen = function () { onState("live"); };
      socket.onmessage = function (message) {
        const frame = JSON.parse(message.data);
        if (frame.type === "events") deliver(frame.events);
        else if (frame.type === "event") deliver([frame]);
        else if (frame.type === "heartbeat" || frame.type === "ready") position = Math.max(position, frame.position);
      };
      socket.onclose = function (close) {
        socket = null;
        if (stopped) return;
        if (close.code === 4401 || close.code === 4403) {
          // The session cannot stream (logged out, or not staff): read over HTTP.
          poll();
          return;
        }
        onState("reconnecting");
        setTimeout(connect, 1500);
      };
    }

    return {
      start: function () { if (config.stream) connect(); else poll(); },
      stop: function () {
        stopped = true;
        if (socket) socket.close();
        if (pollTimer) clearTimeout(pollTimer);
      },
      position: function () { return position; },
    };
  };

  // A select that switches the page (the board's project) submits its form.
  document.addEventListener("change", function (event) {
    if (event.target.hasAttribute && event.target.hasAttribute("data-autosubmit")) event.target.form.submit();
  });

  /** The header's live indicator. */
  Swarm.showState = function (element, state) {
    element.classList.remove("is-live", "is-polling", "is-down");
    if (state === "live") { element.classList.add("is-live"); element.textContent = "live"; }
    else if (state === "polling") { element.classList.add("is-polling"); element.textContent = "live (polling)"; }
    else { element.classList.add("is-down"); element.textContent = state; }
  };
})();
