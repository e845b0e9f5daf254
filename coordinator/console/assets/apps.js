// The GitOps pages: the list of applications and one application with its
// drift, its deploy history and the sync, rollback and unpin actions.
import { h, replace, badge, ms, dur, protoDur, ago, when } from './dom.js';
import { jobLink, table, errorNote } from './views.js';

const CREATE = 'gantry app create NAME --repo URL --path DIR --cluster C --namespace NS --auto-sync';

// word turns an enum name into a CSS-friendly word: SYNC_STATUS_OUT_OF_SYNC
// -> out-of-sync. Unset enums (zero values are omitted in JSON) are unknown.
function word(v, prefix) {
  if (!v || v.endsWith('_UNSPECIFIED')) return 'unknown';
  return v.replace(prefix, '').toLowerCase().replace(/_/g, '-');
}

const syncOf = (s) => word(s?.sync, 'SYNC_STATUS_');
const healthOf = (s) => word(s?.health, 'HEALTH_STATUS_');
const resultOf = (r) => word(r?.result, 'DEPLOY_RESULT_');
const label = (w) => w.replace(/-/g, ' ');

function appHref(name) {
  return `/apps/${encodeURIComponent(name)}`;
}

function shortRev(rev) {
  return rev ? rev.slice(0, 7) : '';
}

// commit shows a short commit with the full one as a tooltip.
function commit(rev, none = '—') {
  if (!rev) return h('span', { class: 'sub' }, none);
  return h('code', { class: 'commit', title: rev }, shortRev(rev));
}

function destination(spec) {
  return `${spec?.cluster || '?'}/${spec?.namespace || '?'}`;
}

function deployDuration(r) {
  const start = ms(r.startedAt);
  if (!Number.isFinite(start)) return '—';
  if (r.finishedAt) return dur(ms(r.finishedAt) - start);
  return resultOf(r) === 'running' ? h('span', { 'data-since': r.startedAt }, dur(Date.now() - start)) : '—';
}

// tick moves relative times and running durations on in place, so that
// buttons and links are not replaced under the pointer between updates.
function tick(el) {
  const now = Date.now();
  el.querySelectorAll('time[datetime]').forEach((t) => { t.textContent = ago(t.dateTime, now); });
  el.querySelectorAll('[data-since]').forEach((d) => { d.textContent = dur(now - ms(d.dataset.since)); });
}

// lastDeploy: "#3 succeeded commit · 5m ago".
function lastDeploy(r) {
  if (!r) return h('span', { class: 'sub' }, 'never deployed');
  const res = resultOf(r);
  return h('span', { class: 'nowrap' }, `#${r.id || 0} `, badge(res, label(res)), ` ${r.trigger || ''} · `, when(r.startedAt));
}

function revisions(s) {
  const line = (name, rev) => h('div', { class: 'rev' }, h('span', { class: 'sub' }, `${name} `), commit(rev));
  return [
    line('deployed', s.deployedRevision),
    line('latest', s.latestRevision),
    s.pinnedRevision ? line('pinned', s.pinnedRevision) : null,
  ];
}

// ---- Applications -----------------------------------------------------------

export function appsView(root, ctx) {
  const body = h('div');
  const count = h('span', { class: 'count' });
  root.append(
    h('div', { class: 'page-head' }, h('h1', { tabindex: -1 }, 'Applications')),
    h('section', { class: 'panel' }, h('h2', {}, 'GitOps applications', count), body));
  let shown;
  function update() {
    const data = ctx.state.apps;
    if (data === shown) { tick(body); return; } // only the times moved on
    shown = data;
    if (!data) { replace(body, h('div', { class: 'empty' }, 'Loading…')); return; }
    const apps = data.apps || [];
    count.textContent = String(apps.length);
    replace(body, errorNote(data), table(
      [['Application'], ['Destination'], ['Sync'], ['Health'], ['Revision', 'hide-narrow'], ['Last deploy', 'hide-narrow']],
      apps.map((a) => {
        const name = a.spec?.name || '';
        const sync = syncOf(a);
        const health = healthOf(a);
        return h('tr', { 'data-app': name, 'data-sync': sync, 'data-health': health },
          h('td', {}, h('a', { href: appHref(name), 'data-nav': true, 'data-key': `app-${name}` }, name),
            h('div', { class: 'sub mono' }, a.spec?.repo ? `${a.spec.repo}${a.spec.path ? ` · ${a.spec.path}` : ''}` : 'deployed by pipelines')),
          h('td', { class: 'mono' }, destination(a.spec)),
          h('td', {}, badge(sync, label(sync)), a.reason ? h('div', { class: 'sub' }, a.reason) : null),
          h('td', {}, badge(health)),
          h('td', { class: 'hide-narrow' }, revisions(a)),
          h('td', { class: 'hide-narrow' }, lastDeploy(a.lastDeploy)));
      }),
      h('span', {}, 'No applications yet. Create one with ', h('code', { class: 'cmd' }, CREATE))));
  }
  update();
  return { update };
}

// ---- One application --------------------------------------------------------

// driftLine renders one drift item: "spec.replicas: 2 (git) != 1 (live)".
function driftLine(it) {
  if (!it.field) {
    if (!it.live) return [h('span', { class: 'drift-git' }, 'whole object missing'), ' (in Git, not live)'];
    return [h('span', { class: 'drift-live' }, 'whole object not in Git'), ' (live only)'];
  }
  const v = (x) => (x === undefined || x === '' ? 'absent' : x);
  return [h('span', { class: 'field' }, it.field), ': ', h('span', { class: 'drift-git' }, v(it.want)), ' (git) != ',
    h('span', { class: 'drift-live' }, v(it.live)), ' (live)'];
}

function driftView(d) {
  if (!d) return h('div', { class: 'empty' }, 'No report yet from an agent watching the live objects of this application.');
  const items = d.items || [];
  const groups = new Map();
  for (const it of items) {
    if (!groups.has(it.object)) groups.set(it.object, []);
    groups.get(it.object).push(it);
  }
  return [
    d.error ? h('p', { class: 'error-note' }, `Watch failed: ${d.error}`) : null,
    h('div', { class: 'drift-meta' },
      'Reported by ', h('b', {}, d.agent || 'the watching agent'), ' ', d.observedAt ? when(d.observedAt) : null,
      d.revision ? [' for commit ', commit(d.revision)] : null),
    items.length
      ? h('div', { class: 'drift' }, [...groups].map(([obj, its]) => h('div', { class: 'drift-object', 'data-object': obj },
        h('h3', {}, obj),
        h('ul', { 'aria-label': `Drift of ${obj}` }, its.map((it) => h('li', { 'data-field': it.field || '' }, driftLine(it)))))))
      : h('div', { class: 'empty' }, d.error ? 'The live objects could not be compared with Git.' : 'The live objects match Git.'),
  ];
}

function flag(on) {
  return h('span', { class: on ? 'flag on' : 'flag' }, on ? 'on' : 'off');
}

function sourceView(app) {
  const sp = app.spec || {};
  const row = (k, ...v) => [h('dt', {}, k), h('dd', {}, v)];
  if (!sp.repo) {
    return h('div', { class: 'panel-body sub' }, 'Deployed by pipelines: not followed in Git, so it cannot be synced or rolled back here.');
  }
  return h('div', { class: 'kv-grid' },
    h('dl', { class: 'kv', 'aria-label': 'Source' },
      row('Repository', h('span', { class: 'mono' }, sp.repo)),
      row('Path', h('span', { class: 'mono' }, sp.path || '.')),
      row('Branch', sp.revision ? h('span', { class: 'mono' }, sp.revision) : h('span', { class: 'sub' }, 'default branch')),
      row('Poll interval', sp.pollInterval ? dur(protoDur(sp.pollInterval)) : '1m (default)'),
      row('Created', when(app.createdAt))),
    h('dl', { class: 'kv', 'aria-label': 'Policy' },
      row('Auto-sync', flag(sp.autoSync)),
      row('Self-heal', flag(sp.selfHeal)),
      row('Prune', flag(sp.prune)),
      row('Health timeout', sp.healthTimeout ? dur(protoDur(sp.healthTimeout)) : '5m (default)')));
}

export function appView(root, ctx, name) {
  let data = null;
  let failure = null;
  const enc = encodeURIComponent(name);
  const badges = h('span', { class: 'head-badges' });
  const actions = h('span', { class: 'head-actions' });
  const meta = h('div', { class: 'meta' });
  const pin = h('div');
  const source = h('div');
  const drift = h('div');
  const history = h('div');
  const dCount = h('span', { class: 'count' });
  const hCount = h('span', { class: 'count' });
  const panels = [
    h('section', { class: 'panel', 'aria-label': 'Source and policy' }, h('h2', {}, 'Source and policy'), source),
    h('section', { class: 'panel', id: 'drift', 'aria-label': 'Drift' }, h('h2', {}, 'Drift', dCount), drift),
    h('section', { class: 'panel', id: 'history', 'aria-label': 'Deploy history' }, h('h2', {}, 'Deploy history', hCount), history),
  ];
  root.append(
    h('div', { class: 'crumbs' }, h('a', { href: '/apps', 'data-nav': true }, 'Apps'), ' / ', name),
    h('div', { class: 'page-head' }, h('h1', { tabindex: -1 }, name), badges, h('span', { class: 'spacer' }), actions),
    meta, pin, ...panels);

  const started = (r) => { if (r) ctx.notify(`Deploying ${shortRev(r.revision)} of ${name}: job ${r.jobId}`); };

  async function syncNow() {
    started(await ctx.post(`/api/apps/${enc}/sync`));
  }

  async function rollback(rec) {
    const ok = await ctx.confirm(`Roll back ${name} to ${shortRev(rec.revision)}?`,
      `Deploys commit ${rec.revision} (deploy #${rec.id}) again and pins ${name} to it; auto-sync is paused until you unpin it.`, 'Roll back');
    if (ok) started(await ctx.post(`/api/apps/${enc}/rollback?revision=${encodeURIComponent(rec.revision)}`));
  }

  async function unpin() {
    const branch = data?.app?.spec?.revision || 'the default branch';
    const ok = await ctx.confirm(`Unpin ${name}?`, data?.app?.spec?.autoSync
      ? `Auto-sync follows ${branch} again and deploys its newest commit.`
      : `Sync deploys the newest commit of ${branch} again.`, 'Unpin');
    if (ok && await ctx.post(`/api/apps/${enc}/unpin`)) ctx.notify(`${name} follows ${branch} again`);
  }

  function draw() {
    panels.forEach((p) => { p.hidden = !data; });
    if (!data) {
      replace(meta, failure ? h('p', { class: 'error-note' }, failure) : h('span', {}, 'Loading…'));
      return;
    }
    const app = data.app || {};
    const s = data.summary || {};
    const sp = app.spec || {};
    const sync = syncOf(s);
    const health = healthOf(s);
    const pinned = app.pinnedRevision || s.pinnedRevision;
    const deployed = s.deployedRevision || '';
    replace(badges,
      h('span', { class: 'sync', 'data-sync': sync }, badge(sync, label(sync))),
      h('span', { class: 'health', 'data-health': health }, badge(health)));
    replace(actions,
      h('button', { class: 'btn', id: 'sync-app', type: 'button', 'data-key': 'sync', disabled: !sp.repo, onclick: syncNow, title: pinned ? `Deploy the pinned commit ${shortRev(pinned)}` : 'Deploy the newest commit of the branch' }, 'Sync'));
    replace(meta,
      h('span', {}, 'Destination ', h('b', { class: 'mono' }, destination(sp))),
      h('span', {}, 'Deployed ', h('b', {}, commit(deployed, 'nothing'))),
      h('span', {}, 'Latest ', h('b', {}, commit(s.latestRevision, 'not seen yet'))),
      h('span', {}, 'Last deploy ', h('b', {}, lastDeploy(s.lastDeploy))),
      s.reason ? h('span', { class: 'reason', id: 'sync-reason' }, s.reason) : null,
      failure ? h('p', { class: 'error-note' }, failure) : null);
    replace(pin, pinned
      ? h('div', { class: 'pin-note', id: 'pin-note' },
        h('span', {}, 'Pinned to ', commit(pinned), ': auto-sync is paused while pinned; sync and self-heal keep this commit.'),
        h('span', { class: 'spacer' }),
        h('button', { class: 'btn small', id: 'unpin-app', type: 'button', 'data-key': 'unpin', onclick: unpin }, 'Unpin'))
      : null);
    replace(source, sourceView(app));
    const d = data.drift;
    dCount.textContent = d ? String((d.items || []).length) : '';
    replace(drift, driftView(d));
    const recs = [...(app.history || [])].reverse();
    hCount.textContent = String(recs.length);
    replace(history, table(
      [['Deploy', 'num'], ['Commit'], ['Result'], ['Trigger'], ['Started', 'hide-narrow'], ['Duration', 'num'], ['Job', 'hide-narrow'], ['Agent', 'hide-narrow'], ['Message'], ['', 'num']],
      recs.map((r) => {
        const res = resultOf(r);
        const canRollback = sp.repo && r.revision && r.revision !== deployed;
        return h('tr', { 'data-deploy': r.id || '0', 'data-result': res, 'data-revision': r.revision || '' },
          h('td', { class: 'num' }, `#${r.id || 0}`),
          h('td', {}, commit(r.revision), r.revision && r.revision === deployed ? h('span', { class: 'chip current' }, 'current') : null),
          h('td', {}, badge(res, label(res))),
          h('td', {}, r.trigger || '—'),
          h('td', { class: 'nowrap hide-narrow' }, when(r.startedAt)),
          h('td', { class: 'num nowrap' }, deployDuration(r)),
          h('td', { class: 'hide-narrow' }, r.jobId ? jobLink(r.jobId, r.jobId) : h('span', { class: 'sub' }, '—')),
          h('td', { class: 'hide-narrow mono' }, r.agent || '—'),
          h('td', { class: res === 'failed' || res === 'rolled-back' ? 'fail' : 'sub' }, r.message || ''),
          h('td', { class: 'num' }, canRollback ? h('button', {
            class: 'btn small', type: 'button', 'data-key': `rollback-${r.id}`, 'data-rollback': r.revision,
            onclick: () => rollback(r), 'aria-label': `Roll back ${name} to ${shortRev(r.revision)} (deploy #${r.id || 0})`,
          }, 'Rollback to this revision') : null));
      }), 'No deploys yet. Sync deploys the newest commit of the branch.'));
  }

  const watch = new EventSource(`/api/apps/${enc}/events`);
  watch.addEventListener('app', (e) => {
    const m = JSON.parse(e.data);
    if (m.error) failure = m.code === '5' ? `No application named ${name}.` : m.error;
    else { data = m; failure = null; }
    draw();
  });
  const timer = setInterval(() => tick(root), 1000);
  draw();
  return {
    update() {},
    close() { watch.close(); clearInterval(timer); },
  };
}
