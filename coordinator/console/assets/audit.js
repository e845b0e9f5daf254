// The audit log: who made which mutating API call, from where, and how it
// ended. The API shows it to admins only; anyone else sees its refusal.
import { h, replace, when } from './dom.js';
import { table, errorNote } from './views.js';

// SINCE are the windows the filter offers, as /api/audit reads them.
const SINCE = [['1h', 'Last hour'], ['24h', 'Last 24 hours'], ['168h', 'Last 7 days'], ['all', 'All kept']];

function role(r) {
  return r ? r.replace(/^ROLE_/, '').toLowerCase() : '—';
}

function row(e) {
  const a = e.actor || {};
  const ok = e.result === 'ok';
  return h('tr', { 'data-index': e.index || null, 'data-method': e.method, 'data-result': ok ? 'ok' : 'error', class: ok ? null : 'audit-error' },
    h('td', { class: 'nowrap' }, when(e.at)),
    h('td', {}, a.name || h('span', { class: 'sub' }, 'no token'), a.tokenId ? h('div', { class: 'sub mono' }, a.tokenId) : null,
      h('div', { class: 'show-narrow' }, h('span', { class: 'chip' }, role(a.role)))),
    h('td', { class: 'hide-narrow' }, h('span', { class: 'chip' }, role(a.role))),
    h('td', { class: 'mono hide-narrow' }, a.peer || '—'),
    h('td', { class: 'mono' }, e.method || '—'),
    h('td', { class: 'audit-target' }, e.target || h('span', { class: 'sub' }, '—')),
    h('td', { class: 'audit-result' }, ok ? h('span', { class: 'badge succeeded' }, 'ok')
      : [h('span', { class: 'badge failed' }, 'error'), h('div', { class: 'fail' }, e.result || 'unknown')]));
}

export function auditView(root, ctx) {
  const params = new URLSearchParams(location.search);
  const since = h('select', { id: 'audit-since', 'aria-label': 'Show audit events since' },
    SINCE.map(([v, label]) => h('option', { value: v }, label)));
  since.value = SINCE.some(([v]) => v === params.get('since')) ? params.get('since') : '24h';
  const refresh = h('button', { class: 'btn small', type: 'button', id: 'audit-refresh' }, 'Refresh');
  const status = h('span', { class: 'sub', role: 'status', 'aria-live': 'polite' });
  const count = h('span', { class: 'count' });
  const body = h('div', { id: 'audit' });
  let data = null;
  let loading = null;
  let closed = false;

  async function load() {
    const ac = new AbortController();
    if (loading) loading.abort();
    loading = ac;
    status.textContent = 'Loading…';
    body.setAttribute('aria-busy', 'true');
    let next;
    try {
      const r = await fetch(`/api/audit?since=${encodeURIComponent(since.value)}`, { cache: 'no-store', signal: ac.signal });
      next = await r.json().catch(() => ({ error: `${r.status} ${r.statusText}` }));
      if (!r.ok && !next.error) next = { error: `${r.status} ${r.statusText}` };
      if (r.status === 401) ctx.checkSession();
    } catch (err) {
      if (ac.signal.aborted) return;
      next = { error: `The console cannot be reached: ${err.message}` };
    }
    if (closed || loading !== ac) return;
    loading = null;
    data = next;
    body.removeAttribute('aria-busy');
    const n = (data.events || []).length;
    status.textContent = data.error ? 'Not loaded.' : `Loaded ${n} event${n === 1 ? '' : 's'} at ${new Date().toLocaleTimeString()}.`;
    update();
  }

  since.addEventListener('change', () => {
    const p = new URLSearchParams();
    if (since.value !== '24h') p.set('since', since.value);
    history.replaceState(null, '', `/audit${p.toString() ? `?${p}` : ''}`);
    load();
  });
  refresh.addEventListener('click', load);

  root.append(
    h('div', { class: 'page-head' }, h('h1', { tabindex: -1 }, 'Audit log')),
    h('section', { class: 'panel' },
      h('h2', {}, 'API calls that change something', count),
      h('div', { class: 'filters' },
        h('label', {}, 'Since', since), refresh, status),
      body));

  function update() {
    if (!data) { replace(body, h('div', { class: 'empty' }, 'Loading…')); return; }
    const events = (data.events || []).slice().reverse(); // the API lists oldest first
    count.textContent = data.error ? '' : String(events.length);
    replace(body, errorNote(data), data.error ? null : table(
      [['Time'], ['Who'], ['Role', 'hide-narrow'], ['From', 'hide-narrow'], ['Call'], ['Target'], ['Result']],
      events.map(row),
      since.value === 'all' ? 'No audited calls yet.' : 'No audited calls in this window.'));
  }
  update();
  load();
  return { update, close() { closed = true; if (loading) loading.abort(); } };
}
