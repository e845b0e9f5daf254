// The task graph of a job: tasks in columns by depth (the longest chain of
// needs before them), edges from each need to its dependent.
import { s, short } from './dom.js';

const W = 184, H = 50, COL = 72, ROW = 14, PAD = 4;

// layout assigns every task a column and a row.
export function layout(tasks) {
  const byName = new Map(tasks.map((t) => [t.name, t]));
  const depth = new Map();
  const visit = (name, seen = new Set()) => {
    if (depth.has(name)) return depth.get(name);
    if (seen.has(name)) return 0; // a cycle cannot be submitted; stay safe anyway
    seen.add(name);
    const needs = (byName.get(name)?.spec?.needs || []).filter((n) => byName.has(n));
    const d = needs.length ? 1 + Math.max(...needs.map((n) => visit(n, seen))) : 0;
    depth.set(name, d);
    return d;
  };
  tasks.forEach((t) => visit(t.name));
  const cols = [];
  tasks.forEach((t) => (cols[depth.get(t.name)] ||= []).push(t.name));
  // Order each column by the mean row of its needs, which keeps edges short.
  const row = new Map();
  cols.forEach((col, c) => {
    if (c > 0) {
      const key = (n) => {
        const needs = byName.get(n).spec?.needs || [];
        const rows = needs.map((x) => row.get(x)).filter((r) => r !== undefined);
        return rows.length ? rows.reduce((a, b) => a + b, 0) / rows.length : 0;
      };
      col.sort((a, b) => key(a) - key(b));
    }
    col.forEach((n, r) => row.set(n, r));
  });
  const rows = Math.max(1, ...cols.map((c) => c.length));
  const pos = new Map();
  cols.forEach((col, c) => {
    // Center shorter columns against the tallest.
    const offset = ((rows - col.length) * (H + ROW)) / 2;
    col.forEach((n, r) => pos.set(n, { x: PAD + c * (W + COL), y: PAD + offset + r * (H + ROW), col: c }));
  });
  return { pos, cols, width: PAD * 2 + cols.length * W + (cols.length - 1) * COL, height: PAD * 2 + rows * H + (rows - 1) * ROW };
}

// lane picks the height at which an edge that skips columns passes them:
// clear of their nodes and as close as possible to both ends.
function lane(boxes, y1, y2) {
  const clear = (y) => boxes.every((b) => y < b.y - 3 || y > b.y + H + 3);
  const candidates = [y1, y2];
  boxes.forEach((b) => candidates.push(b.y - ROW / 2, b.y + H + ROW / 2));
  return candidates.filter(clear).sort((a, b) => (Math.abs(a - y1) + Math.abs(a - y2)) - (Math.abs(b - y1) + Math.abs(b - y2)))[0];
}

// edgePath draws a need's edge to its dependent; an edge that skips
// columns runs along a lane between the nodes it passes.
function edgePath(a, b, { pos, cols }) {
  const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x - 6, y2 = b.y + H / 2;
  if (b.col - a.col <= 1) {
    const mid = (x1 + x2) / 2;
    return { d: `M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2},${y2}` };
  }
  const boxes = cols.slice(a.col + 1, b.col).flat().map((n) => pos.get(n));
  const y = lane(boxes, y1, y2);
  const xa = x1 + COL, xb = b.x - COL, ma = x1 + COL / 2, mb = xb + COL / 2;
  return { d: `M${x1},${y1} C${ma},${y1} ${ma},${y} ${xa},${y} L${xb},${y} C${mb},${y} ${mb},${y2} ${x2},${y2}`, y };
}

function clip(text, max) {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

// render draws the graph; onSelect(name) is called when a node is chosen
// with the mouse or the keyboard (Enter or Space).
export function render(tasks, selected, onSelect) {
  const lay = layout(tasks);
  const { pos, width } = lay;
  let { height } = lay;
  let top = 0;
  const edges = [];
  for (const t of tasks) {
    for (const n of t.spec?.needs || []) {
      const a = pos.get(n), b = pos.get(t.name);
      if (!a || !b) continue;
      const e = edgePath(a, b, lay);
      if (e.y !== undefined) { top = Math.min(top, e.y - PAD); height = Math.max(height, e.y + PAD); }
      edges.push(s('path', { class: 'edge', d: e.d, 'marker-end': 'url(#arrow)' }));
    }
  }
  const nodes = tasks.map((t) => {
    const p = pos.get(t.name);
    const st = short(t.state);
    const attempts = t.attempt > 1 ? ` · attempt ${t.attempt}` : '';
    const pick = () => onSelect(t.name);
    return s('g', {
      class: `node${t.name === selected ? ' selected' : ''}`,
      transform: `translate(${p.x},${p.y})`,
      tabindex: 0,
      role: 'button',
      'data-task': t.name,
      'data-state': st,
      'data-key': `node-${t.name}`,
      'aria-label': `Task ${t.name}, ${st}${attempts}. Show its log.`,
      'aria-pressed': t.name === selected ? 'true' : 'false',
      onclick: pick,
      onkeydown: (e) => {
        if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); pick(); }
      },
    },
    s('title', { text: `${t.name}: ${st}${attempts}` }),
    s('rect', { class: 'box', width: W, height: H, rx: 7 }),
    s('rect', { class: `stripe ${st}`, width: 5, height: H - 2, x: 1, y: 1, rx: 2 }),
    s('text', { class: 'name', x: 16, y: 21, text: clip(t.name, 22) }),
    s('text', { class: 'state', x: 16, y: 38, text: `${st}${attempts}` }));
  });
  height -= top;
  return s('svg', { class: 'dag', width, height, viewBox: `0 ${top} ${width} ${height}`, role: 'group', 'aria-label': 'Task graph' },
    s('defs', {}, s('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' },
      s('path', { d: 'M0,0 L10,5 L0,10 z', class: 'arrow' }))),
    edges, nodes);
}
