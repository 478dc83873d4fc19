/* A layered (Sugiyama-style) layout in plain JavaScript, left to right.

   1. Layers by longest path from the sources (a node sits one layer right of
      its furthest predecessor); a cycle, should one exist, is broken at the
      node with the fewest open predecessors.
   2. Order inside a layer by the barycentre of the neighbours, a few sweeps
      down and up, which removes most crossings.
   3. A layer taller than `maxRows` (a number, or a function of the list of
      layer sizes) wraps into several columns, so a task with a thousand
      subtasks stays a compact block instead of a list a hundred screens
      tall.

   O(nodes + edges) per sweep: a thousand nodes lay out in a few ms. */
(function () {
  "use strict";

  const Swarm = (window.Swarm = window.Swarm || {});

  /**
   * ids: node ids in a stable initial order; edges: [[from, to], ...].
   * Returns {pos: Map(id -> {x, y, layer}), width, height, layers}.
   */
  Swarm.layered = function (ids, edges, options) {
    const o = Object.assign(
      { nodeW: 180, nodeH: 40, gapX: 46, gapY: 10, wrapGap: 14, maxRows: 24, sweeps: 4, margin: 16 },
      options || {}
    );
    const n = ids.length;
    const index = new Map();
    ids.forEach(function (id, i) { index.set(id, i); });
    const succ = Array.from({ length: n }, function () { return []; });
    const pred = Array.from({ length: n }, function () { return []; });
    edges.forEach(function (edge) {
      const a = index.get(edge[0]);
      const b = index.get(edge[1]);
      if (a === undefined || b === undefined || a === b) return;
      succ[a].push(b);
      pred[b].push(a);
    });

    // 1. Longest-path layers (Kahn's order; cycles broken).
    const layer = new Array(n).fill(0);
    const open = pred.map(function (p) { return p.length; });
    const done = new Array(n).fill(false);
    let queue = [];
    for (let i = 0; i < n; i++) if (open[i] === 0) queue.push(i);
    let handled = 0;
    let head = 0;
    let scan = 0;
    while (handled < n) {
      if (head >= queue.length) {
        // A cycle: take the first unhandled node with the fewest open preds.
        let best = -1;
        for (let i = scan; i < n; i++) {
          if (!done[i] && (best < 0 || open[i] < open[best])) best = i;
        }
        queue.push(best);
        open[best] = 0;
      }
      const v = queue[head++];
      if (done[v]) continue;
      done[v] = true;
      handled++;
      while (scan < n && done[scan]) scan++;
      for (const w of succ[v]) {
        if (done[w]) continue;
        layer[w] = Math.max(layer[w], layer[v] + 1);
        open[w]--;
        if (open[w] === 0) queue.push(w);
      }
    }

    // 2. Order inside layers by barycentres.
    const depth = n ? Math.max.apply(null, layer) + 1 : 0;
    const layers = Array.from({ length: depth }, function () { return []; });
    for (let i = 0; i < n; i++) layers[layer[i]].push(i);
    const frac = new Float64Array(n);
    function place(list) {
      const size = list.length;
      list.forEach(function (v, k) { frac[v] = (k + 0.5) / size; });
    }
    layers.forEach(place);
    function sweep(list, neighbours) {
      const key = new Map();
      for (const v of list) {
        const ns = neighbours[v];
        if (!ns.length) { key.set(v, frac[v]); continue; }
        let sum = 0;
        for (const u of ns) sum += frac[u];
        key.set(v, sum / ns.length);
      }
      list.sort(function (a, b) { return key.get(a) - key.get(b) || a - b; });
      place(list);
    }
    for (let s = 0; s < o.sweeps; s++) {
      for (let l = 1; l < depth; l++) sweep(layers[l], pred);
      for (let l = depth - 2; l >= 0; l--) sweep(layers[l], succ);
    }

    // 3. Coordinates, wrapping tall layers into columns.
    const sizes = layers.map(function (list) { return list.length; });
    const maxRows = Math.max(1, typeof o.maxRows === "function" ? o.maxRows(sizes) : o.maxRows);
    const rowH = o.nodeH + o.gapY;
    const rowsOf = layers.map(function (list) { return Math.min(list.length, maxRows); });
    const tallest = Math.max.apply(null, rowsOf.concat([1]));
    const height = tallest * rowH - o.gapY + 2 * o.margin;
    const pos = new Map();
    let x = o.margin;
    layers.forEach(function (list, l) {
      const rows = rowsOf[l];
      const cols = Math.ceil(list.length / maxRows);
      const top = o.margin + ((tallest - rows) * rowH) / 2;
      list.forEach(function (v, k) {
        const col = Math.floor(k / maxRows);
        const row = k % maxRows;
        pos.set(ids[v], { x: x + col * (o.nodeW + o.wrapGap), y: top + row * rowH, layer: l });
      });
      x += cols * (o.nodeW + o.wrapGap) - o.wrapGap + o.gapX;
    });
    const width = Math.max(x - o.gapX + o.margin, 2 * o.margin);
    return { pos: pos, width: width, height: height, layers: depth };
  };

  /**
   * The rows per column that give a drawing closest to `aspect` (width /
   * height) for layers of `sizes` nodes, between `min` and `max` rows.
   */
  Swarm.rowsForAspect = function (sizes, aspect, o) {
    let best = o.min;
    let bestScore = Infinity;
    const widest = Math.max.apply(null, sizes.concat([1]));
    for (let rows = o.min; rows <= Math.max(o.min, Math.min(o.max, widest)); rows++) {
      let width = 0;
      sizes.forEach(function (n) { width += Math.ceil(n / rows) * (o.nodeW + o.wrapGap) + o.gapX; });
      const height = Math.min(rows, widest) * (o.nodeH + o.gapY);
      const score = Math.abs(Math.log(width / height / aspect));
      if (score < bestScore - 1e-9) { best = rows; bestScore = score; }
    }
    return best;
  };

  /** A smooth left-to-right path from one box's right edge to another's left. */
  Swarm.edgePath = function (a, b, nodeW, nodeH) {
    const x1 = a.x + nodeW;
    const y1 = a.y + nodeH / 2;
    const x2 = b.x;
    const y2 = b.y + nodeH / 2;
    if (x2 > x1) {
      const dx = Math.max(20, (x2 - x1) / 2);
      if (Math.abs(y2 - y1) < nodeH && x2 - x1 > nodeW) {
        // Along a row past other boxes: bow over them instead of behind.
        const lift = Math.min(90, 22 + (x2 - x1) / 10);
        return "M" + x1 + "," + y1 + "C" + (x1 + dx / 2) + "," + (y1 - lift) + " " + (x2 - dx / 2) + "," + (y2 - lift) + " " + x2 + "," + y2;
      }
      return "M" + x1 + "," + y1 + "C" + (x1 + dx) + "," + y1 + " " + (x2 - dx) + "," + y2 + " " + x2 + "," + y2;
    }
    // Same or earlier column (a wrapped layer or a broken cycle): loop around.
    const lift = Math.min(a.y, b.y) - 18;
    return "M" + x1 + "," + y1 + "C" + (x1 + 30) + "," + lift + " " + (x2 - 30) + "," + lift + " " + x2 + "," + y2;
  };
})();
