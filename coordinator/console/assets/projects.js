// The pipelines-as-code pages: the list of projects and one project with
// its newest builds, the Run form and the approval of held builds. Both
// read the JSON API every few seconds while open.
import { h, replace, short, badge, ago, when, num } from './dom.js';
import { jobLink, table, errorNote } from './views.js';

const EVERY = 2000; // ms between reads

// STATES label the build states that are not a job's.
const STATES = { 'awaiting-approval': 'awaiting approval', error: 'error', queued: 'queued', superseded: 'superseded' };

function projectHref(name) {
  return `/projects/${encodeURIComponent(name)}`;
}

// buildState is the state of a build: its job's, or why it has none.
export function buildState(bs) {
  const b = bs?.build || {};
  if (b.jobId) return short(bs.state);
  if (b.supersededBy) return 'superseded';
  if (b.awaitingApproval) return 'awaiting-approval';
  if (b.error) return 'error';
  return 'queued';
}

function stateBadge(st) {
  return badge(st, STATES[st] || st);
}

function commit(sha) {
  if (!sha) return h('span', { class: 'sub' }, '—');
  return h('code', { class: 'commit', title: sha }, sha.slice(0, 7));
}

// refOf names what a build built: "PR #7 (feature)", "tag v1", "main".
function refOf(t) {
  if (!t) return '—';
  if (t.pullRequest) return `PR #${t.pullRequest}${t.branch ? ` (${t.branch})` : ''}`;
  if (t.tag) return `tag ${t.tag}`;
  if (t.branch) return t.branch;
  return t.ref || (t.event === 'cron' ? 'default branch' : '—');
}

// notes explain a build: its error, what superseded it, who approved it,
// and whether its change is untrusted.
function notes(b) {
  const out = [];
  if (b.supersededBy) out.push(h('span', { class: 'note-superseded' }, `superseded by #${b.supersededBy}`));
  if (b.error && !(b.supersededBy && b.error.startsWith('superseded'))) out.push(h('span', { class: 'fail note-error' }, b.error));
  if (b.approvedBy && !b.error) out.push(h('span', { class: 'note-approved' }, `approved by ${b.approvedBy.name || b.approvedBy.tokenId || 'an operator'}`));
  if (b.trigger?.untrusted) out.push(h('span', { class: 'chip untrusted', title: 'From a fork or an author who is not a collaborator: runs only when approved, without secrets, pushes or deploys' }, 'untrusted'));
  if (!out.length) return h('span', { class: 'sub' }, '');
  return out.flatMap((n, i) => (i ? [' · ', n] : [n]));
}

// newest: "#3 running main · 5m ago".
function newest(bs) {
  if (!bs) return h('span', { class: 'sub' }, 'no builds yet');
  const b = bs.build || {};
  return h('span', { class: 'nowrap' }, `#${b.number || 0} `, stateBadge(buildState(bs)), ` ${refOf(b.trigger)} · `, when(b.createdAt));
}

function tick(el) {
  const now = Date.now();
  el.querySelectorAll('time[datetime]').forEach((t) => { t.textContent = ago(t.dateTime, now); });
}

// poll reads path now and every EVERY ms until stopped, handing show the
// body or {error}. A 401 makes the shell check the session.
function poll(ctx, path, show) {
  let closed = false;
  let timer = null;
  let ac = null;
  async function read() {
    clearTimeout(timer);
    if (ac) ac.abort();
    const mine = new AbortController();
    ac = mine;
    let data;
    try {
      const r = await fetch(path, { cache: 'no-store', signal: mine.signal });
      data = await r.json().catch(() => ({}));
      if (!r.ok) data = { error: data.error || `${r.status} ${r.statusText}`, status: r.status };
      if (r.status === 401) ctx.checkSession();
    } catch (err) {
      if (mine.signal.aborted) return;
      data = { error: `The console cannot be reached: ${err.message}` };
    }
    if (closed || ac !== mine) return;
    ac = null;
    show(data);
    timer = setTimeout(read, EVERY);
  }
  read();
  return {
    now: read,
    stop() { closed = true; clearTimeout(timer); if (ac) ac.abort(); },
  };
}

// ---- Projects ---------------------------------------------------------------

export function projectsView(root, ctx) {
  const body = h('div', { id: 'projects' });
  const count = h('span', { class: 'count' });
  root.append(
    h('div', { class: 'page-head' }, h('h1', { tabindex: -1 }, 'Projects')),
    h('section', { class: 'panel' }, h('h2', {}, 'Pipelines as code', count), body));
  let data = null;
  function update() {
    if (!data) { replace(body, h('div', { class: 'empty' }, 'Loading…')); return; }
    const projects = data.projects || [];
    count.textContent = data.error ? '' : String(projects.length);
    replace(body, errorNote(data), data.error ? null : table(
      [['Project'], ['Forge'], ['Newest build'], ['Builds', 'num hide-narrow']],
      projects.map((p) => {
        const name = p.spec?.name || '';
        const last = (p.builds || [])[0];
        return h('tr', { 'data-project': name, 'data-state': last ? buildState(last) : 'none' },
          h('td', {}, h('a', { href: projectHref(name), 'data-nav': true, 'data-key': `project-${name}` }, name),
            h('div', { class: 'sub mono' }, p.spec?.repo || '')),
          h('td', {}, p.spec?.forge || 'none'),
          h('td', {}, newest(last)),
          h('td', { class: 'num hide-narrow' }, String(num(p.buildsTotal))));
      }),
      'No projects yet. A project builds the pipeline file of a repository (.gantry/pipeline.yaml) on every push, tag and pull request; create one with the API (CreateProject).'));
  }
  const reader = poll(ctx, '/api/projects', (d) => { data = d; update(); });
  const timer = setInterval(() => tick(root), 1000);
  update();
  return { update() {}, close() { reader.stop(); clearInterval(timer); } };
}

// ---- One project ------------------------------------------------------------

function list(v, none) {
  return v && v.length ? h('span', { class: 'mono' }, v.join(', ')) : h('span', { class: 'sub' }, none);
}

function specView(p) {
  const sp = p.spec || {};
  const row = (k, ...v) => [h('dt', {}, k), h('dd', {}, v)];
  return h('div', { class: 'kv-grid' },
    h('dl', { class: 'kv', 'aria-label': 'Repository' },
      row('Repository', h('span', { class: 'mono' }, sp.repo || '—')),
      row('Forge', sp.forge || 'none', sp.forgeUrl ? h('span', { class: 'sub mono' }, ` ${sp.forgeUrl}`) : null),
      row('Pipeline file', h('span', { class: 'mono' }, sp.pipeline || '.gantry/pipeline.yaml')),
      row('Credential', sp.credential ? h('span', { class: 'mono' }, sp.credential) : h('span', { class: 'sub' }, 'none (public, no statuses)')),
      row('Webhook', p.hookRegistered ? 'registered on the forge' : h('span', { class: 'sub' }, 'not registered (polled)')),
      row('Created', when(p.createdAt))),
    h('dl', { class: 'kv', 'aria-label': 'Triggers' },
      row('Branches', list(sp.branches, 'all')),
      row('Events', list(sp.events, 'push, tag, pull_request')),
      row('Paths', list(sp.paths, 'any'), sp.pathsIgnore?.length ? [h('span', { class: 'sub' }, ' ignoring '), list(sp.pathsIgnore)] : null),
      row('Cron', sp.cron ? h('span', { class: 'mono' }, `${sp.cron} (UTC)`) : h('span', { class: 'sub' }, 'none')),
      row('Superseded builds', sp.keepSuperseded ? 'kept running' : 'canceled by a newer commit')));
}

export function projectView(root, ctx, name) {
  const enc = encodeURIComponent(name);
  let data = null;
  const badges = h('span', { class: 'head-badges' });
  const meta = h('div', { class: 'meta' });
  const source = h('div');
  const builds = h('div');
  const bCount = h('span', { class: 'count' });
  const ref = h('input', { type: 'text', id: 'run-ref', name: 'ref', placeholder: 'default branch', autocomplete: 'off', spellcheck: 'false' });
  const runBtn = h('button', { class: 'btn primary', type: 'submit', id: 'run-project' }, 'Run');
  const form = h('form', { class: 'filters run-form', id: 'run-form', 'aria-label': `Run ${name}` },
    h('label', {}, 'Branch, tag or commit', ref), runBtn);
  const panels = [
    h('section', { class: 'panel', id: 'project-spec', 'aria-label': 'Repository and triggers' }, h('h2', {}, 'Repository and triggers'), source),
    h('section', { class: 'panel', id: 'builds', 'aria-label': 'Builds' }, h('h2', {}, 'Builds', bCount), form, builds),
  ];
  root.append(
    h('div', { class: 'crumbs' }, h('a', { href: '/projects', 'data-nav': true }, 'Projects'), ' / ', name),
    h('div', { class: 'page-head' }, h('h1', { tabindex: -1 }, name), badges),
    meta, ...panels);

  let reader = null;

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    runBtn.disabled = true;
    const r = await ctx.post(`/api/projects/${enc}/run`, { ref: ref.value.trim() });
    runBtn.disabled = false;
    if (!r) return;
    const b = r.build?.build || {};
    ctx.notify(`Build #${b.number || '?'} of ${name}: ${refOf(b.trigger)}${b.jobId ? `, job ${b.jobId}` : ''}`);
    if (reader) reader.now();
  });

  async function decide(b, reject) {
    const what = `build #${b.number} of ${name} (${refOf(b.trigger)}, ${(b.trigger?.sha || '').slice(0, 7)})`;
    const ok = reject
      ? await ctx.confirm(`Reject ${what}?`, 'The build ends without running.', 'Reject')
      : await ctx.confirm(`Approve ${what}?`, b.trigger?.untrusted
        ? 'Runs the change although it comes from a fork or an author who is not a collaborator; it runs without secrets, pushes or deploys.'
        : 'Lets the held build run.', 'Approve');
    if (!ok) return;
    const r = await ctx.post(`/api/projects/${enc}/builds/${encodeURIComponent(b.number)}/${reject ? 'reject' : 'approve'}`);
    if (r) ctx.notify(`Build #${b.number} of ${name} ${reject ? 'rejected' : 'approved'}`);
    if (reader) reader.now();
  }

  function draw() {
    panels.forEach((p) => { p.hidden = !data || Boolean(data.error); });
    if (!data) { replace(meta, h('span', {}, 'Loading…')); return; }
    if (data.error) {
      replace(meta, h('p', { class: 'error-note', id: 'project-error' }, data.status === 404 ? `No project named ${name}.` : data.error));
      return;
    }
    const p = data.project || {};
    const sp = p.spec || {};
    const recent = p.builds || [];
    replace(badges, recent.length ? h('span', { class: 'newest', 'data-state': buildState(recent[0]) }, stateBadge(buildState(recent[0]))) : null);
    replace(meta,
      h('span', {}, 'Repository ', h('b', { class: 'mono' }, sp.repo || '—')),
      h('span', {}, 'Forge ', h('b', {}, sp.forge || 'none')),
      h('span', {}, 'Builds ', h('b', {}, String(num(p.buildsTotal)))),
      h('span', {}, 'Newest ', h('b', {}, newest(recent[0]))));
    replace(source, specView(p));
    bCount.textContent = recent.length < num(p.buildsTotal) ? `${recent.length} of ${num(p.buildsTotal)}` : String(recent.length);
    replace(builds, table(
      [['Build', 'num'], ['Event'], ['Ref'], ['Commit'], ['Source', 'hide-narrow'], ['State'], ['Job', 'hide-narrow'], ['Created', 'hide-narrow'], ['Note'], ['', 'num']],
      recent.map((bs) => {
        const b = bs.build || {};
        const t = b.trigger || {};
        const st = buildState(bs);
        const n = b.number || '0';
        return h('tr', { 'data-build': n, 'data-state': st, 'data-event': t.event || '' },
          h('td', { class: 'num' }, `#${n}`),
          h('td', {}, t.event || '—'),
          h('td', { class: 'mono' }, refOf(t), t.author ? h('div', { class: 'sub' }, t.author) : null),
          h('td', {}, commit(t.sha)),
          h('td', { class: 'hide-narrow' }, t.source || '—'),
          h('td', {}, stateBadge(st)),
          h('td', { class: 'hide-narrow' }, b.jobId ? jobLink(b.jobId, b.jobId) : h('span', { class: 'sub' }, '—')),
          h('td', { class: 'nowrap hide-narrow' }, when(b.createdAt)),
          h('td', { class: 'build-note' }, notes(b)),
          h('td', { class: 'num nowrap' }, st === 'awaiting-approval' ? [
            h('button', { class: 'btn small', type: 'button', 'data-key': `approve-${n}`, 'data-approve': n, onclick: () => decide(b, false), 'aria-label': `Approve build #${n}` }, 'Approve'),
            ' ',
            h('button', { class: 'btn small danger', type: 'button', 'data-key': `reject-${n}`, 'data-reject': n, onclick: () => decide(b, true), 'aria-label': `Reject build #${n}` }, 'Reject'),
          ] : null));
      }), 'No builds yet. Push to the repository, or run a ref above.'));
  }

  reader = poll(ctx, `/api/projects/${enc}`, (d) => { data = d; draw(); });
  const timer = setInterval(() => tick(root), 1000);
  draw();
  return { update() {}, close() { reader.stop(); clearInterval(timer); } };
}
