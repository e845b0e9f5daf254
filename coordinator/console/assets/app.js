// Gantry console: routing, the live overview stream and the shell.
import { h, replace } from './dom.js';
import * as views from './views.js';
import * as apps from './apps.js';
import * as projects from './projects.js';
import * as audit from './audit.js';

const state = { cluster: null, agents: null, queue: null, jobs: null, apps: null };
const viewEl = document.getElementById('view');
const statsEl = document.getElementById('stats');
const live = document.getElementById('live');
const toast = document.getElementById('toast');
let current = null;

// ---- Actions ----------------------------------------------------------------

function notify(msg) {
  toast.textContent = msg;
  toast.hidden = false;
  clearTimeout(notify.timer);
  notify.timer = setTimeout(() => { toast.hidden = true; }, 5000);
}

// post sends a write; body, if given, goes as JSON.
async function post(path, body) {
  const init = { method: 'POST', headers: { 'X-Gantry-Console': '1' } };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  try {
    const r = await fetch(path, init);
    const body = await r.json().catch(() => ({}));
    if (r.status === 401) checkSession();
    if (!r.ok) throw new Error(body.error || `${r.status} ${r.statusText}`);
    return body;
  } catch (err) {
    notify(err.message);
    return null;
  }
}

// confirm asks in a modal dialog; it resolves true when confirmed.
function confirm(title, body, action) {
  const dlg = document.getElementById('confirm');
  document.getElementById('confirm-title').textContent = title;
  document.getElementById('confirm-body').textContent = body;
  document.getElementById('confirm-ok').textContent = action;
  const back = document.activeElement;
  return new Promise((resolve) => {
    dlg.addEventListener('close', () => {
      resolve(dlg.returnValue === 'ok');
      if (back && back.isConnected) back.focus();
    }, { once: true });
    dlg.returnValue = '';
    dlg.showModal();
    document.getElementById('confirm-ok').focus();
  });
}

const ctx = { state, post, confirm, notify, checkSession };

// ---- Session ----------------------------------------------------------------

// The console acts with the API token of the user's session; the API's
// role decides what the buttons may do.
function toLogin() {
  location.replace(`/login?next=${encodeURIComponent(location.pathname + location.search)}`);
}

// checkSession shows who is logged in, or sends the browser to the login
// page when the console needs a login and has none. It resolves false
// then.
async function checkSession() {
  let s;
  try {
    const r = await fetch('/api/session', { cache: 'no-store' });
    if (!r.ok) return true; // the coordinator cannot tell now; the page shows its errors
    s = await r.json();
  } catch {
    return true;
  }
  if (s.required && !s.name) {
    toLogin();
    return false;
  }
  document.getElementById('user-name').textContent = s.name || '';
  document.getElementById('user-role').textContent = s.role || '';
  document.getElementById('user').hidden = !s.name;
  return true;
}

document.getElementById('logout').addEventListener('click', async () => {
  await fetch('/api/logout', { method: 'POST', headers: { 'X-Gantry-Console': '1' } }).catch(() => {});
  location.replace('/login');
});

// ---- Routing ----------------------------------------------------------------

const routes = [
  [/^\/(?:jobs)?$/, 'jobs', () => views.jobsView],
  [/^\/jobs\/([^/]+)$/, 'jobs', () => views.jobView],
  [/^\/apps$/, 'apps', () => apps.appsView],
  [/^\/apps\/([^/]+)$/, 'apps', () => apps.appView],
  [/^\/projects$/, 'projects', () => projects.projectsView],
  [/^\/projects\/([^/]+)$/, 'projects', () => projects.projectView],
  [/^\/queue$/, 'queue', () => views.queueView],
  [/^\/agents$/, 'agents', () => views.agentsView],
  [/^\/cluster$/, 'cluster', () => views.clusterView],
  [/^\/audit$/, 'audit', () => audit.auditView],
];

function route(moveFocus) {
  if (current && current.close) current.close();
  const path = location.pathname;
  let found = null;
  for (const [re, section, view] of routes) {
    const m = path.match(re);
    if (m) { found = { section, view: view(), arg: m[1] && decodeURIComponent(m[1]) }; break; }
  }
  document.querySelectorAll('nav a').forEach((a) => {
    if (found && a.dataset.section === found.section) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  });
  const root = h('div');
  viewEl.replaceChildren(root);
  statsEl.hidden = Boolean(found && found.arg);
  if (!found) {
    root.append(h('div', { class: 'page-head' }, h('h1', { tabindex: -1 }, 'Not found')), h('p', {}, h('a', { href: '/jobs', 'data-nav': true }, 'Back to jobs')));
    current = null;
  } else {
    current = found.view(root, ctx, found.arg);
  }
  const kind = { apps: 'App', projects: 'Project' }[found && found.section];
  document.title = `${found && found.arg ? (kind ? `${found.arg} · ${kind}` : 'Job') : (found ? found.section[0].toUpperCase() + found.section.slice(1) : 'Not found')} · Gantry`;
  if (moveFocus) {
    const h1 = root.querySelector('h1');
    if (h1) h1.focus();
  }
}

document.addEventListener('click', (e) => {
  const a = e.target.closest('a[href]');
  if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || url.pathname.startsWith('/api/') || url.pathname.startsWith('/assets/')) return;
  e.preventDefault();
  if (url.pathname + url.search !== location.pathname + location.search) history.pushState(null, '', url);
  route(true);
});
window.addEventListener('popstate', () => route(true));

// ---- Live overview ----------------------------------------------------------

let pending = false;
function refresh() {
  if (pending) return;
  pending = true;
  requestAnimationFrame(() => {
    pending = false;
    views.stats(statsEl, state);
    const c = state.cluster;
    document.getElementById('cluster-name').textContent = c && c.cluster ? c.cluster : '';
    if (current && current.update) current.update();
  });
}

let overview = null;

function connect() {
  const es = new EventSource('/api/events?limit=200');
  overview = es;
  for (const name of ['cluster', 'agents', 'queue', 'jobs', 'apps']) {
    es.addEventListener(name, (e) => {
      state[name] = JSON.parse(e.data);
      if (state[name].code === '16') checkSession(); // Unauthenticated: the token was revoked
      refresh();
    });
  }
  es.addEventListener('open', () => {
    live.className = 'live on';
    live.querySelector('.live-text').textContent = 'Live';
  });
  es.addEventListener('error', async () => {
    live.className = 'live off';
    live.querySelector('.live-text').textContent = 'Reconnecting';
    // The browser retries a broken stream by itself, but not one refused
    // with an HTTP error (the session ended): ask why, then try again.
    if (es.readyState === EventSource.CLOSED && await checkSession()) setTimeout(() => { if (overview === es) connect(); }, 2000);
  });
}

// A page kept in the back/forward cache would keep its streams open and
// hold the browser's few connections to the console, stalling the next
// page's requests: close them when the page is hidden, open them again
// when it comes back.
window.addEventListener('pagehide', () => {
  if (current && current.close) current.close();
  if (overview) overview.close();
  overview = null;
});
window.addEventListener('pageshow', (e) => {
  if (!e.persisted) return;
  checkSession();
  route(false);
  connect();
});

// Relative times ("5s ago") move on even when nothing changes.
setInterval(refresh, 5000);

checkSession();
route(false);
refresh();
connect();
