// The pages of the console. Each view is mounted once per visit and updated
// in place whenever live data arrives.
import { h, replace, short, badge, ms, dur, protoDur, ago, when, labels, num } from './dom.js';
import * as dag from './dag.js';

const JOB_STATES = ['pending', 'running', 'succeeded', 'failed', 'canceled'];
const FINAL = new Set(['succeeded', 'failed', 'canceled']);

export function jobLink(id, text) {
  return h('a', { href: `/jobs/${encodeURIComponent(id)}`, 'data-nav': true, 'data-key': `job-${id}` }, text);
}

// jobName names a job from the live job list, or by its ID.
function jobName(ctx, id) {
  const j = (ctx.state.jobs?.jobs || []).find((x) => x.id === id);
  return j?.spec?.name || id;
}

export function table(head, rows, empty) {
  if (!rows.length) return h('div', { class: 'empty' }, empty);
  return h('div', { class: 'table-wrap' }, h('table', {},
    h('thead', {}, h('tr', {}, head.map(([label, cls]) => h('th', { class: cls || null, scope: 'col' }, label)))),
    h('tbody', {}, rows)));
}

export function errorNote(data) {
  return data && data.error ? h('p', { class: 'error-note' }, data.error) : null;
}

// attemptsTitle lists a task's attempts: agent, result, exit code, failure class.
function attemptsTitle(t) {
  return (t.attempts || []).map((a) => {
    const res = a.result ? short(a.result) : 'in progress';
    const why = a.error ? `: ${a.error}` : '';
    const cls = a.failure ? ` (${a.failure.replace('FAILURE_CLASS_', '').toLowerCase()})` : '';
    return `#${a.number} on ${a.agent || '?'}: ${res}${cls}${why}`;
  }).join('\n') || null;
}

function jobDuration(j, now) {
  const start = ms(j.createdAt);
  const end = j.finishedAt ? ms(j.finishedAt) : now;
  return dur(end - start);
}

function taskBar(tasks) {
  const counts = {};
  tasks.forEach((t) => { const st = short(t.state); counts[st] = (counts[st] || 0) + 1; });
  const bar = h('span', { class: 'bar', 'aria-hidden': 'true' });
  for (const st of ['succeeded', 'running', 'assigned', 'failed', 'canceled', 'skipped']) {
    if (!counts[st]) continue;
    const seg = h('span', { class: st });
    seg.style.flexGrow = String(counts[st]); // CSSOM, allowed by the CSP
    bar.append(seg);
  }
  const rest = tasks.length - Object.entries(counts).filter(([k]) => k !== 'pending' && k !== 'blocked').reduce((a, [, v]) => a + v, 0);
  if (rest > 0) { const seg = h('span'); seg.style.flexGrow = String(rest); bar.append(seg); }
  const done = counts.succeeded || 0;
  return h('span', { class: 'progress' }, bar, h('span', { class: 'sub' }, `${done}/${tasks.length}`));
}

// ---- Summary cards ----------------------------------------------------------

export function stats(el, st) {
  const c = st.cluster && !st.cluster.error ? st.cluster : null;
  const jobs = st.jobs && !st.jobs.error ? st.jobs.jobs || [] : [];
  const agents = st.agents && !st.agents.error ? st.agents.agents || [] : [];
  const q = st.queue && !st.queue.error ? st.queue : null;
  const running = jobs.filter((j) => short(j.state) === 'running').length;
  const pendingJobs = jobs.filter((j) => short(j.state) === 'pending').length;
  const active = agents.filter((a) => short(a.state) === 'active').length;
  const slots = agents.filter((a) => short(a.state) !== 'lost').reduce((n, a) => n + num(a.info?.slots), 0);
  const used = agents.reduce((n, a) => n + (a.running || []).length, 0);
  const pending = q ? (q.tasks || []).filter((t) => short(t.state) === 'pending').length : 0;
  const p95 = q ? Math.max(0, ...(q.queues || []).map((x) => protoDur(x.p95)).filter(Number.isFinite)) : NaN;
  const card = (label, value, sub) => h('div', { class: 'stat' }, h('div', { class: 'label' }, label), h('div', { class: 'value' }, value), h('div', { class: 'sub' }, sub));
  replace(el,
    card('Leader', c ? c.leaderId || 'none' : '—', c ? `term ${c.term || 0} · ${(c.nodes || []).length} node(s)` : 'connecting'),
    card('Running jobs', String(running), `${pendingJobs} pending`),
    card('Queued tasks', String(pending), Number.isFinite(p95) && p95 > 0 ? `p95 wait ${dur(p95)}` : 'no recent starts'),
    card('Agents', `${active}/${agents.length}`, `${used}/${slots} slots in use`));
}

// ---- Jobs -------------------------------------------------------------------

export function jobsView(root, ctx) {
  const params = new URLSearchParams(location.search);
  const search = h('input', { type: 'search', id: 'job-search', placeholder: 'Name or ID', value: params.get('q') || '', 'aria-label': 'Filter jobs by name or ID' });
  const state = h('select', { id: 'job-state', 'aria-label': 'Filter jobs by state' },
    h('option', { value: '' }, 'All states'), JOB_STATES.map((s) => h('option', { value: s }, s[0].toUpperCase() + s.slice(1))));
  state.value = params.get('state') || '';
  const body = h('div');
  const count = h('span', { class: 'count' });
  const keep = () => {
    const p = new URLSearchParams();
    if (search.value) p.set('q', search.value);
    if (state.value) p.set('state', state.value);
    history.replaceState(null, '', `/jobs${p.toString() ? `?${p}` : ''}`);
    update();
  };
  search.addEventListener('input', keep);
  state.addEventListener('change', keep);
  root.append(
    h('div', { class: 'page-head' }, h('h1', { tabindex: -1 }, 'Jobs')),
    h('section', { class: 'panel' },
      h('h2', {}, 'Recent jobs', count),
      h('div', { class: 'filters', role: 'search' },
        h('label', {}, 'Search', search), h('label', {}, 'State', state)),
      body));
  function update() {
    const data = ctx.state.jobs;
    if (!data) { replace(body, h('div', { class: 'empty' }, 'Loading…')); return; }
    const q = search.value.trim().toLowerCase();
    const now = Date.now();
    const jobs = (data.jobs || []).filter((j) =>
      (!state.value || short(j.state) === state.value) &&
      (!q || j.id.includes(q) || (j.spec?.name || '').toLowerCase().includes(q)));
    count.textContent = String(jobs.length);
    replace(body, errorNote(data), table(
      [['State'], ['Job'], ['Tasks'], ['Priority', 'num hide-narrow'], ['Submitted', 'hide-narrow'], ['Duration', 'num']],
      jobs.map((j) => h('tr', { 'data-job-id': j.id, 'data-state': short(j.state) },
        h('td', {}, badge(short(j.state))),
        h('td', {}, jobLink(j.id, j.spec?.name || j.id), h('div', { class: 'sub mono' }, j.id)),
        h('td', {}, taskBar(j.tasks || [])),
        h('td', { class: 'num hide-narrow' }, String(j.spec?.priority || 0)),
        h('td', { class: 'nowrap hide-narrow' }, when(j.createdAt)),
        h('td', { class: 'num nowrap' }, jobDuration(j, now)))),
      q || state.value ? 'No job matches the filter.' : 'No jobs yet. Submit one with gantry submit -f pipeline.yaml.'));
  }
  update();
  return { update, focus: search };
}

// ---- One job ----------------------------------------------------------------

export function jobView(root, ctx, id) {
  let job = null;
  let selected = null;
  let failure = null;
  const head = h('div');
  const graph = h('div', { class: 'dag-wrap' });
  const tasksBody = h('div');
  const taskSelect = h('select', { id: 'log-task', 'aria-label': 'Task whose log is shown' });
  const follow = h('input', { type: 'checkbox', id: 'log-follow', checked: true });
  const logEl = h('pre', { class: 'log', id: 'log', tabindex: 0, 'aria-label': 'Task log' });
  let logSource = null;
  let lastAttempt = null;
  const seen = new Set();

  taskSelect.addEventListener('change', () => select(taskSelect.value));
  root.append(
    head,
    h('section', { class: 'panel' }, h('h2', {}, 'Task graph'), graph),
    h('section', { class: 'panel' }, h('h2', {}, 'Tasks'), tasksBody),
    h('section', { class: 'panel' },
      h('div', { class: 'log-head' }, h('h2', {}, 'Log'), taskSelect, h('span', { class: 'spacer' }),
        h('label', { class: 'sub' }, follow, ' Follow')),
      logEl));

  function appendLog(l) {
    const key = `${l.task}/${l.attempt}/${l.seq}`;
    if (seen.has(key)) return; // a reconnect replays the log from the start
    seen.add(key);
    const atBottom = logEl.scrollHeight - logEl.scrollTop - logEl.clientHeight < 30;
    if (l.attempt !== lastAttempt) {
      lastAttempt = l.attempt;
      logEl.append(h('span', { class: 'attempt' }, `── attempt ${l.attempt} ──\n`));
    }
    if (l.text) logEl.append(h('span', { class: `line ${l.stream}` }, l.text));
    if (follow.checked && atBottom) logEl.scrollTop = logEl.scrollHeight;
  }

  function select(name) {
    if (name === selected) return;
    selected = name;
    taskSelect.value = name;
    if (logSource) logSource.close();
    logEl.replaceChildren();
    seen.clear();
    lastAttempt = null;
    logSource = new EventSource(`/api/jobs/${encodeURIComponent(id)}/logs?task=${encodeURIComponent(name)}`);
    logSource.addEventListener('log', (e) => appendLog(JSON.parse(e.data)));
    logSource.addEventListener('end', () => {
      logSource.close();
      if (!logEl.childNodes.length) logEl.append(h('span', { class: 'line system' }, 'No output.\n'));
    });
    logSource.addEventListener('failure', (e) => {
      logSource.close();
      logEl.append(h('span', { class: 'line stderr' }, `${JSON.parse(e.data).error}\n`));
    });
    draw();
  }

  function defaultTask(tasks) {
    const by = (st) => tasks.find((t) => short(t.state) === st);
    return (by('running') || by('assigned') || by('failed') || tasks[tasks.length - 1] || {}).name;
  }

  async function cancel() {
    const ok = await ctx.confirm(`Cancel job ${job.spec?.name || id}?`, 'Running tasks are stopped; tasks not started will not run.', 'Cancel job');
    if (!ok) return;
    await ctx.post(`/api/jobs/${encodeURIComponent(id)}/cancel`);
  }

  async function decide(t, reject) {
    const what = reject ? 'Reject' : 'Approve';
    const ok = await ctx.confirm(`${what} ${t.name}?`, reject ? 'The task fails and what needs it is skipped.' : 'What needs it runs.', what);
    if (!ok) return;
    const r = await ctx.post(`/api/jobs/${encodeURIComponent(id)}/tasks/${encodeURIComponent(t.name)}/${reject ? 'reject' : 'approve'}`);
    if (r) ctx.notify(`${t.name} ${reject ? 'rejected' : 'approved'}`);
  }

  function draw() {
    if (failure && !job) {
      replace(head, h('div', { class: 'page-head' }, h('h1', { tabindex: -1 }, 'Job not found')), h('p', { class: 'error-note' }, failure));
      return;
    }
    if (!job) { replace(head, h('div', { class: 'empty' }, 'Loading…')); return; }
    const st = short(job.state);
    const tasks = job.tasks || [];
    const now = Date.now();
    replace(head,
      h('div', { class: 'crumbs' }, h('a', { href: '/jobs', 'data-nav': true }, 'Jobs'), ' / ', job.spec?.name || id),
      h('div', { class: 'page-head' },
        h('h1', { tabindex: -1 }, job.spec?.name || id), badge(st), h('span', { class: 'spacer' }),
        h('button', { class: 'btn danger', id: 'cancel-job', type: 'button', 'data-key': 'cancel', disabled: FINAL.has(st), onclick: cancel }, 'Cancel job')),
      h('div', { class: 'meta' },
        h('span', {}, 'ID ', h('b', { class: 'mono' }, job.id)),
        h('span', {}, 'Submitted ', h('b', {}, when(job.createdAt))),
        h('span', {}, 'Duration ', h('b', {}, jobDuration(job, now))),
        h('span', {}, 'Priority ', h('b', {}, String(job.spec?.priority || 0))),
        h('span', {}, 'Tasks ', h('b', {}, String(tasks.length)))));
    replace(graph, dag.render(tasks, selected, select));
    replace(tasksBody, table(
      [['Task'], ['State'], ['Attempts', 'num'], ['Agent', 'hide-narrow'], ['Duration', 'num'], ['Result'], ['Outputs', 'hide-narrow']],
      tasks.map((t) => {
        const ts = short(t.state);
        const started = ms(t.startedAt);
        const end = t.finishedAt ? ms(t.finishedAt) : now;
        const gate = t.spec?.approval;
        const result = t.error || (gate && ts === 'waiting' ? [
          h('span', { class: 'sub' }, `${gate.message || 'Waiting for approval'} `),
          h('button', { class: 'btn small', type: 'button', 'data-key': `approve-${t.name}`, 'data-approve-task': t.name, onclick: () => decide(t, false), 'aria-label': `Approve ${t.name}` }, 'Approve'),
          ' ',
          h('button', { class: 'btn small danger', type: 'button', 'data-key': `reject-${t.name}`, 'data-reject-task': t.name, onclick: () => decide(t, true), 'aria-label': `Reject ${t.name}` }, 'Reject'),
        ] : ts === 'succeeded' ? 'exit 0' : ts === 'failed' ? `exit ${t.exitCode || 0}` : '');
        const outs = Object.entries(t.outputs || {});
        return h('tr', { class: t.name === selected ? 'selected' : null, 'data-task': t.name, 'data-state': ts },
          h('td', {}, h('button', { class: 'linkish', type: 'button', 'data-key': `log-${t.name}`, 'aria-pressed': t.name === selected ? 'true' : 'false', onclick: () => select(t.name), title: 'Show log' }, t.name)),
          h('td', {}, badge(ts)),
          h('td', { class: 'num', title: attemptsTitle(t) }, String(t.attempt || 0)),
          h('td', { class: 'hide-narrow mono' }, t.agent || '—'),
          h('td', { class: 'num nowrap' }, Number.isFinite(started) ? dur(end - started) : '—'),
          h('td', { class: ts === 'failed' ? 'fail' : 'sub' }, result),
          h('td', { class: 'hide-narrow' }, outs.length ? outs.map(([k, v]) => h('div', { class: 'mono' }, `${k}=${v}`)) : h('span', { class: 'sub' }, '—')));
      }), 'No tasks.'));
    const names = tasks.map((t) => t.name);
    if ([...taskSelect.options].map((o) => o.value).join('\n') !== names.join('\n')) {
      replace(taskSelect, names.map((n) => h('option', { value: n }, n)));
    }
    if (selected) taskSelect.value = selected;
  }

  const watch = new EventSource(`/api/jobs/${encodeURIComponent(id)}/events`);
  watch.addEventListener('job', (e) => {
    job = JSON.parse(e.data);
    if (!selected && job.tasks?.length) select(defaultTask(job.tasks));
    else draw();
  });
  watch.addEventListener('end', () => watch.close());
  watch.addEventListener('failure', (e) => { watch.close(); failure = JSON.parse(e.data).error; draw(); });
  // Durations tick while the job runs.
  const timer = setInterval(() => { if (job && !FINAL.has(short(job.state))) draw(); }, 1000);
  draw();
  return {
    update() {},
    close() { watch.close(); if (logSource) logSource.close(); clearInterval(timer); },
  };
}

// ---- Queue ------------------------------------------------------------------

export function queueView(root, ctx) {
  const queues = h('div');
  const tasks = h('div');
  const qCount = h('span', { class: 'count' });
  const tCount = h('span', { class: 'count' });
  root.append(
    h('div', { class: 'page-head' }, h('h1', { tabindex: -1 }, 'Queue')),
    h('section', { class: 'panel' }, h('h2', {}, 'Queues by agent labels', qCount), queues),
    h('section', { class: 'panel' }, h('h2', {}, 'Waiting tasks', tCount), tasks));
  function reason(t) {
    if (short(t.state) === 'blocked') return h('span', { class: 'reason blocked' }, t.reason || 'needs not met');
    if (!t.reason) return h('span', { class: 'sub' }, 'being scheduled');
    const runnable = t.runnableAt || t.notBefore;
    if (t.reason === 'retry backoff' && runnable) {
      const left = ms(runnable) - Date.now();
      return h('span', { class: 'reason' }, left > 0 ? `retry backoff, ${dur(left)} left` : 'retry backoff');
    }
    return h('span', { class: 'reason' }, t.reason);
  }
  // since is when a task started waiting: a pending task since it became
  // runnable (the time the scheduler orders it by; none while in retry
  // backoff), a blocked one since its job was submitted.
  function since(t) {
    if (short(t.state) === 'blocked') return when(t.queuedAt);
    const at = t.runnableAt || t.queuedAt;
    return ms(at) > Date.now() ? h('span', { class: 'sub' }, '—') : when(at);
  }
  function update() {
    const data = ctx.state.queue;
    if (!data) { replace(queues, h('div', { class: 'empty' }, 'Loading…')); return; }
    const qs = data.queues || [];
    const ts = data.tasks || [];
    qCount.textContent = String(qs.length);
    tCount.textContent = String(ts.length);
    replace(queues, errorNote(data), table(
      [['Labels'], ['Pending', 'num'], ['Blocked', 'num'], ['Start latency p50', 'num'], ['p95', 'num'], ['Samples', 'num hide-narrow']],
      qs.map((q) => h('tr', { 'data-queue': q.selector || '' },
        h('td', {}, labels(q.labels)),
        h('td', { class: 'num' }, String(q.pending || 0)),
        h('td', { class: 'num' }, String(q.blocked || 0)),
        h('td', { class: 'num' }, q.samples ? dur(protoDur(q.p50)) : '—'),
        h('td', { class: 'num' }, q.samples ? dur(protoDur(q.p95)) : '—'),
        h('td', { class: 'num hide-narrow' }, String(q.samples || 0)))),
      'No queue has waiting tasks or recent starts.'));
    replace(tasks, table(
      [['Priority', 'num'], ['Task'], ['Labels', 'hide-narrow'], ['State'], ['Waiting because'], ['Waiting since', 'hide-narrow']],
      ts.map((t) => h('tr', { 'data-task': `${t.jobId}/${t.task}` },
        h('td', { class: 'num' }, String(t.priority || 0)),
        h('td', {}, jobLink(t.jobId, t.jobName || t.jobId), h('span', { class: 'sub' }, ' / '), t.task,
          t.attempt ? h('div', { class: 'sub' }, `after ${t.attempt} attempt(s)`) : null),
        h('td', { class: 'hide-narrow' }, labels(t.labels)),
        h('td', {}, badge(short(t.state)))
        , h('td', {}, reason(t)),
        h('td', { class: 'nowrap hide-narrow' }, since(t)))),
      'Nothing waits: every runnable task has an agent.'));
  }
  update();
  return { update };
}

// ---- Agents -----------------------------------------------------------------

export function agentsView(root, ctx) {
  const body = h('div');
  const count = h('span', { class: 'count' });
  root.append(
    h('div', { class: 'page-head' }, h('h1', { tabindex: -1 }, 'Agents')),
    h('section', { class: 'panel' }, h('h2', {}, 'Fleet', count), body));
  async function drain(name) {
    const ok = await ctx.confirm(`Drain agent ${name}?`, 'It takes no new work, finishes what runs, delivers its results and exits.', 'Drain');
    if (ok) await ctx.post(`/api/agents/${encodeURIComponent(name)}/drain`);
  }
  function meter(used, slots) {
    const m = h('span', { class: 'meter', 'aria-hidden': 'true' });
    for (let i = 0; i < Math.min(slots, 16); i++) m.append(h('i', { class: i < used ? 'on' : null }));
    return h('span', { class: 'nowrap' }, m, `${used}/${slots}`);
  }
  function update() {
    const data = ctx.state.agents;
    if (!data) { replace(body, h('div', { class: 'empty' }, 'Loading…')); return; }
    const agents = data.agents || [];
    count.textContent = String(agents.length);
    replace(body, errorNote(data), table(
      [['Agent'], ['State'], ['Labels', 'hide-narrow'], ['Slots'], ['Running'], ['Last heartbeat', 'hide-narrow'], ['', 'num']],
      agents.map((a) => {
        const name = a.info?.name || '';
        const st = short(a.state);
        const running = a.running || [];
        return h('tr', { 'data-agent': name, 'data-state': st },
          h('td', {}, h('b', {}, name), h('div', { class: 'sub' }, a.info?.version || '')),
          h('td', {}, badge(st)),
          h('td', { class: 'hide-narrow' }, labels(a.info?.labels)),
          h('td', {}, meter(running.length, num(a.info?.slots))),
          h('td', {}, running.length ? running.map((r) => h('div', {}, jobLink(r.jobId, jobName(ctx, r.jobId)), h('span', { class: 'sub' }, ` / ${r.task} #${r.attempt || 0}`))) : h('span', { class: 'sub' }, 'idle')),
          h('td', { class: 'nowrap hide-narrow' }, when(a.lastHeartbeat)),
          h('td', { class: 'num' }, h('button', {
            class: 'btn small danger', type: 'button', 'data-key': `drain-${name}`, 'data-drain': name,
            disabled: st !== 'active', onclick: () => drain(name), 'aria-label': `Drain agent ${name}`,
          }, st === 'draining' ? 'Draining' : 'Drain')));
      }), 'No agent has sent a heartbeat. Start one with gantry agent.'));
  }
  update();
  return { update };
}

// ---- Cluster ----------------------------------------------------------------

export function clusterView(root, ctx) {
  const head = h('div');
  const body = h('div');
  root.append(head, h('section', { class: 'panel' }, h('h2', {}, 'Coordinators'), body));
  function update() {
    const c = ctx.state.cluster;
    if (!c) { replace(body, h('div', { class: 'empty' }, 'Loading…')); return; }
    if (c.error) { replace(body, errorNote(c)); return; }
    const nodes = c.nodes || [];
    const down = nodes.filter((n) => n.raftState === 'Unreachable').length;
    const health = !c.leaderId ? ['degraded', 'No leader'] : down ? ['degraded', `${down} unreachable`] : ['healthy', 'Healthy'];
    replace(head,
      h('div', { class: 'page-head' }, h('h1', { tabindex: -1 }, 'Cluster'), badge(health[0], health[1])),
      h('div', { class: 'meta' },
        h('span', {}, 'Name ', h('b', {}, c.cluster || '—')),
        h('span', {}, 'Leader ', h('b', {}, c.leaderId || 'none')),
        h('span', {}, 'Term ', h('b', {}, String(c.term || 0))),
        h('span', {}, 'Voters ', h('b', {}, String(nodes.filter((n) => n.voter).length)))));
    const leader = nodes.find((n) => n.leader);
    const commit = num(leader?.commitIndex);
    replace(body, table(
      [['Node'], ['Role'], ['Commit', 'num'], ['Applied', 'num'], ['Last log', 'num hide-narrow'], ['Lag', 'num'], ['Version', 'hide-narrow'], ['Addresses', 'hide-narrow'], ['Seen', 'hide-narrow']],
      nodes.map((n) => {
        const role = n.raftState === 'Unreachable' ? 'unreachable' : n.leader ? 'leader' : (n.raftState || 'unknown').toLowerCase();
        const lag = commit && n.appliedIndex !== undefined ? commit - num(n.appliedIndex) : NaN;
        return h('tr', { 'data-node': n.id },
          h('td', {}, h('b', {}, n.id), h('div', { class: 'sub mono' }, n.raftAddr || '')),
          h('td', {}, badge(role), n.voter ? null : h('span', { class: 'sub' }, ' non-voter')),
          h('td', { class: 'num' }, String(num(n.commitIndex))),
          h('td', { class: 'num' }, String(num(n.appliedIndex))),
          h('td', { class: 'num hide-narrow' }, String(num(n.lastLogIndex))),
          h('td', { class: 'num' }, Number.isFinite(lag) ? String(Math.max(0, lag)) : '—'),
          h('td', { class: 'hide-narrow mono', 'data-version': n.version || '' }, n.version || '—'),
          h('td', { class: 'hide-narrow mono' }, n.grpcAddr ? `grpc ${n.grpcAddr}` : '', n.httpAddr ? h('div', {}, `http ${n.httpAddr}`) : null),
          h('td', { class: 'nowrap hide-narrow' }, when(n.seenAt)));
      }), 'No nodes.'));
  }
  update();
  return { update };
}

export { ago };
