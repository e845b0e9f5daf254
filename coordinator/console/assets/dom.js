// Small DOM and formatting helpers. Everything the server sends is inserted
// as text, never as HTML.

const SVG_NS = 'http://www.w3.org/2000/svg';

function build(el, attrs, children) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') el.setAttribute('class', v);
    else if (k === 'text') el.textContent = v;
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// h builds an HTML element: h('a', {href: '/x', class: 'y'}, 'text', child).
export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

// s builds an SVG element.
export function s(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

// replace swaps el's children, keeping keyboard focus on the element with
// the same data-key (buttons and links survive live re-renders).
export function replace(el, ...children) {
  const active = document.activeElement;
  const key = active && el.contains(active) ? active.getAttribute('data-key') : null;
  el.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
  if (key) {
    const next = el.querySelector(`[data-key="${CSS.escape(key)}"]`);
    if (next) next.focus({ preventScroll: true });
  }
}

// short turns an enum name into its last word: JOB_STATE_RUNNING -> running.
export function short(enumName, fallback = 'unknown') {
  if (!enumName) return fallback;
  return enumName.replace(/^[A-Z]+_STATE_/, '').toLowerCase();
}

export function badge(state, label) {
  return h('span', { class: `badge ${state}` }, label || state);
}

export function ms(ts) {
  return ts ? Date.parse(ts) : NaN;
}

// dur formats milliseconds compactly: 850ms, 4.2s, 3m 05s, 2h 10m.
export function dur(msec) {
  if (!Number.isFinite(msec) || msec < 0) return '—';
  if (msec < 1000) return `${Math.round(msec)}ms`;
  const sec = msec / 1000;
  if (sec < 60) return `${sec < 10 ? sec.toFixed(1) : Math.round(sec)}s`;
  const m = Math.floor(sec / 60);
  if (m < 60) return `${m}m ${String(Math.floor(sec % 60)).padStart(2, '0')}s`;
  const hr = Math.floor(m / 60);
  return `${hr}h ${String(m % 60).padStart(2, '0')}m`;
}

// protoDur parses a protobuf JSON duration ("1.500s").
export function protoDur(d) {
  return d ? parseFloat(d) * 1000 : NaN;
}

export function ago(ts, now = Date.now()) {
  const t = ms(ts);
  if (!Number.isFinite(t)) return '—';
  const d = now - t;
  if (d < 1500) return 'just now';
  return `${dur(d).replace(/\.\d/, '')} ago`;
}

// when renders a relative time with the exact time as a tooltip.
export function when(ts) {
  if (!ts) return h('span', { class: 'sub' }, '—');
  return h('time', { datetime: ts, title: new Date(ts).toLocaleString() }, ago(ts));
}

export function labels(m) {
  const keys = Object.keys(m || {}).sort();
  if (!keys.length) return h('span', { class: 'sub' }, 'any');
  return keys.map((k) => h('span', { class: 'chip' }, `${k}=${m[k]}`));
}

export function num(v) {
  return Number(v || 0);
}
