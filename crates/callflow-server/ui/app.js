// callflowd's web UI: one ES module, no build step. Views are routed on the URL's fragment
// (#/jobs, #/jobs/3?q=..., #/jobs/3/sessions/ID, #/login), so each is a link. Everything
// that comes from a capture is put in the page as text (textContent, text nodes), never as
// markup; the ladder SVG is parsed as XML and only its drawing elements are kept.

const TOKEN_KEY = 'callflow.token';
const PAGE = 50;
const PROBLEMS = ['one_way_audio', 'no_rtp', 'rtp_after_bye', 'ssrc_change', 'payload_change', 'high_jitter',
  'high_loss', 'low_mos', 'late_answer', 'no_ack', 'unanswered_request', 'capture_loss'];
const KINDS = ['sip_call', 'sip_register', 'sip_other', 'rtp', 'diameter', 'gtp'];
const STATES = ['call_setup', 'ringing', 'in_call', 'cancelled', 'completed', 'rejected', 'failed', 'unknown'];
const SORTS = [['start', 'Time'], ['from', 'From'], ['to', 'To'], ['state', 'State'], ['duration', 'Duration'],
  ['messages', 'Messages']];

const main = document.getElementById('main');
const crumbs = document.getElementById('crumbs');
const notice = document.getElementById('notice');
const logoutButton = document.getElementById('logout');

// ---- small helpers -------------------------------------------------------------------

/** An element with attributes and children; strings become text nodes, never markup. */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

const lower = (s) => String(s ?? '').toLowerCase();
const token = () => sessionStorage.getItem(TOKEN_KEY);

function fmtBytes(n) {
  if (n === null || n === undefined) return '';
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  let v = n;
  while (v >= 1000 && i < units.length - 1) { v /= 1000; i += 1; }
  return `${v.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

function fmtTime(secs) {
  if (secs === null || secs === undefined) return '';
  const d = new Date(secs * 1000);
  return d.toISOString().replace('T', ' ').replace('Z', '').slice(0, 23);
}

function fmtMs(ms) {
  if (ms === null || ms === undefined) return '';
  return ms >= 10000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms)} ms`;
}

const fmtMos = (m) => (m === null || m === undefined ? '–' : m.toFixed(2));

function mosClass(m) {
  if (m === null || m === undefined) return '';
  return m >= 4 ? 'good' : m >= 3.6 ? 'fair' : 'bad';
}

function stateBadge(state) {
  const s = lower(state);
  return h('span', { class: `badge s-${s.replace(/[^a-z_]/g, '')}` }, s.replace(/_/g, ' '));
}

function showNotice(text) {
  notice.textContent = text;
  notice.hidden = !text;
}

function setCrumbs(...items) {
  clear(crumbs);
  items.forEach(([label, href], i) => {
    if (i) crumbs.append(document.createTextNode(' / '));
    crumbs.append(href ? h('a', { href }, label) : h('span', { 'aria-current': 'page' }, label));
  });
}

function setTitle(text) {
  document.title = text ? `${text} · callflowd` : 'callflowd';
}

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** Calls the API with the session's token; a 401 sends the user to the login page. */
async function api(path, { method = 'GET', body, as = 'json' } = {}) {
  const headers = {};
  if (token()) headers.Authorization = `Bearer ${token()}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (!response.ok) {
    let code = 'error';
    let message = `${response.status} ${response.statusText}`;
    try {
      const err = (await response.json()).error;
      code = err.code;
      message = err.message;
    } catch (_) { /* not JSON */ }
    if (response.status === 401 && !path.startsWith('/api/login')) {
      sessionStorage.removeItem(TOKEN_KEY);
      const back = location.hash.startsWith('#/login') ? '' : location.hash;
      location.hash = `#/login${back ? `?next=${encodeURIComponent(back)}` : ''}`;
    }
    throw new ApiError(response.status, code, message);
  }
  if (as === 'json') return response.status === 204 ? null : response.json();
  if (as === 'text') return response.text();
  return response.blob();
}

/** Saves a blob under `name` through a temporary link. */
function saveBlob(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = h('a', { href: url, download: name, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}

function parseHash() {
  const raw = location.hash.replace(/^#/, '') || '/jobs';
  const [path, query = ''] = raw.split('?');
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  return { parts, params: new URLSearchParams(query) };
}

/** Marks `name` in the page's Performance timeline once the frame showing the view is painted. */
function markPainted(name) {
  requestAnimationFrame(() => setTimeout(() => performance.mark(name), 0));
}

// ---- live events ---------------------------------------------------------------------

/** One WebSocket for every job's events, reopened when it drops; listeners by view. */
const events = {
  socket: null,
  listeners: new Set(),
  retry: null,
  open() {
    if (this.socket || this.retry) return;
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    const t = token();
    const url = `${scheme}://${location.host}/api/v1/ws${t ? `?token=${encodeURIComponent(t)}` : ''}`;
    const ws = new WebSocket(url);
    this.socket = ws;
    ws.addEventListener('message', (e) => {
      let msg;
      try { msg = JSON.parse(e.data); } catch (_) { return; }
      for (const l of this.listeners) l(msg);
    });
    ws.addEventListener('close', () => {
      this.socket = null;
      if (this.listeners.size) this.retry = setTimeout(() => { this.retry = null; this.open(); }, 2000);
    });
    ws.addEventListener('error', () => {});
  },
  close() {
    clearTimeout(this.retry);
    this.retry = null;
    if (this.socket) {
      const s = this.socket;
      this.socket = null;
      s.close();
    }
  },
  listen(fn) {
    this.listeners.add(fn);
    this.open();
    return () => { this.listeners.delete(fn); if (!this.listeners.size) this.close(); };
  },
};

let leaveView = () => {};

// ---- login ---------------------------------------------------------------------------

function viewLogin(params) {
  setTitle('Log in');
  setCrumbs(['Log in']);
  const next = params.get('next') || '#/jobs';
  const error = h('p', { class: 'error', role: 'alert', hidden: true });
  const user = h('input', { id: 'username', name: 'username', autocomplete: 'username', required: true });
  const pass = h('input', { id: 'password', name: 'password', type: 'password', autocomplete: 'current-password',
    required: true });
  const key = h('input', { id: 'apikey', name: 'apikey', type: 'password', autocomplete: 'off' });
  const fail = (text) => { error.textContent = text; error.hidden = false; };
  const done = () => { logoutButton.hidden = false; location.hash = next; };
  const login = h('form', { class: 'card narrow', id: 'login-form', onsubmit: async (e) => {
    e.preventDefault();
    try {
      const answer = await api('/api/login', { method: 'POST', body: { username: user.value, password: pass.value } });
      sessionStorage.setItem(TOKEN_KEY, answer.token);
      done();
    } catch (err) { fail(err.message); }
  } },
  h('h1', {}, 'Log in'),
  h('label', { for: 'username' }, 'User'), user,
  h('label', { for: 'password' }, 'Password'), pass,
  h('button', { type: 'submit', class: 'primary' }, 'Log in'));
  const keyForm = h('form', { class: 'card narrow', onsubmit: async (e) => {
    e.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, key.value.trim());
    try { await api('/api/v1/jobs?limit=1'); done(); } catch (err) { fail(err.message); }
  } },
  h('h2', {}, 'Or an API key'),
  h('label', { for: 'apikey' }, 'API key'), key,
  h('button', { type: 'submit' }, 'Use the key'));
  append(clear(main), [login, error, keyForm]);
  user.focus();
}

async function logout() {
  try { await api('/api/logout', { method: 'POST' }); } catch (_) { /* gone already */ }
  sessionStorage.removeItem(TOKEN_KEY);
  events.close();
  logoutButton.hidden = true;
  location.hash = '#/login';
}

// ---- jobs ----------------------------------------------------------------------------

function progressBar(percent, label) {
  return h('progress', { max: 100, value: percent ?? 0, 'aria-label': label });
}

function viewJobs() {
  setTitle('Jobs');
  setCrumbs(['Jobs']);
  const input = h('input', { type: 'file', id: 'file', accept: '.pcap,.pcapng,.cap,.gz,.pcap.gz,.pcapng.gz' });
  const uploadState = h('div', { class: 'upload-state', 'aria-live': 'polite' });
  const drop = h('label', { class: 'drop', for: 'file', tabindex: 0, id: 'drop' },
    h('strong', {}, 'Drop a capture here'), ' or ', h('span', { class: 'link' }, 'choose a file'),
    h('span', { class: 'muted' }, ' (pcap, pcapng, gzip)'));
  drop.addEventListener('keydown', (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); input.click(); } });
  drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => {
    e.preventDefault();
    drop.classList.remove('over');
    for (const f of e.dataTransfer.files) upload(f, uploadState);
  });
  input.addEventListener('change', () => { for (const f of input.files) upload(f, uploadState); input.value = ''; });

  const tbody = h('tbody');
  const table = h('table', { class: 'grid', id: 'jobs' },
    h('thead', {}, h('tr', {}, h('th', {}, '#'), h('th', {}, 'Name'), h('th', {}, 'State'), h('th', {}, 'Progress'),
      h('th', { class: 'num' }, 'Size'), h('th', { class: 'num' }, 'Calls'), h('th', { class: 'num' }, 'Problems'),
      h('th', {}, 'Created'), h('th', {}, ''))),
    tbody);
  append(clear(main), [h('h1', {}, 'Jobs'), h('div', { class: 'card' }, drop, input, uploadState),
    h('div', { class: 'scroll' }, table)]);

  const rows = new Map();
  const problems = new Map();
  const liveCounters = new Map();
  function renderRow(job) {
    const id = job.job_id;
    const finished = ['completed', 'failed', 'cancelled'].includes(lower(job.status));
    const live = job.live ? h('span', { class: 'badge live' }, 'live') : null;
    const counters = h('span', { class: 'counters muted' }, liveCounters.get(id) ?? '');
    const problemCell = h('td', { class: 'num' });
    if (lower(job.status) === 'completed' || job.live) {
      const known = problems.get(id);
      if (known !== undefined) problemCell.textContent = known;
      else {
        problems.set(id, '');
        api(`/api/v1/jobs/${id}/sessions?problem=true&limit=1`).then((p) => {
          problems.set(id, p.total);
          problemCell.textContent = p.total;
        }).catch(() => {});
      }
    }
    const actions = h('td', { class: 'actions' });
    if (!finished) {
      actions.append(h('button', { type: 'button', onclick: () => act(() => api(`/api/v1/jobs/${id}/cancel`, { method: 'POST' })) },
        job.live ? 'Stop' : 'Cancel'));
    }
    actions.append(h('button', { type: 'button', class: 'danger', 'aria-label': `Delete job ${id}`, onclick: () => {
      if (confirm(`Delete job ${id} and its files?`)) act(() => api(`/api/v1/jobs/${id}`, { method: 'DELETE' }));
    } }, 'Delete'));
    const tr = h('tr', { 'data-job': id, 'data-status': lower(job.status) },
      h('td', { title: id, class: 'job-id' }, shortId(id)),
      h('td', {}, h('a', { href: `#/jobs/${id}` }, job.name || `job ${shortId(id)}`), ' ', live, job.error ? h('div', { class: 'error' }, job.error) : null),
      h('td', { class: 'state' }, stateBadge(job.status)),
      // A live job has no end to measure progress against: its counters say how it goes.
      h('td', {}, finished || job.live ? null : progressBar(job.progress, `job ${id} progress`),
        finished || job.live ? null : ` ${job.progress ?? 0}% `, counters),
      h('td', { class: 'num' }, fmtBytes(job.bytes)),
      h('td', { class: 'num calls' }, job.session_count ?? ''),
      problemCell,
      h('td', {}, fmtTime(job.created_at)),
      actions);
    tr.job = job;
    const old = rows.get(id);
    if (old) old.replaceWith(tr);
    else tbody.prepend(tr);
    rows.set(id, tr);
  }
  async function act(fn) {
    try { await fn(); await load(); } catch (err) { showNotice(err.message); }
  }
  async function load() {
    const page = await api('/api/v1/jobs?limit=100');
    const seen = new Set(page.jobs.map((j) => j.job_id));
    for (const [id, tr] of rows) if (!seen.has(id)) { tr.remove(); rows.delete(id); }
    for (const job of [...page.jobs].reverse()) renderRow(job);
    if (!page.jobs.length && !tbody.querySelector('.empty')) {
      tbody.append(h('tr', { class: 'empty' }, h('td', { colspan: 9, class: 'muted' }, 'No jobs yet: upload a capture.')));
    } else if (page.jobs.length) tbody.querySelector('.empty')?.remove();
  }
  const stop = events.listen((msg) => {
    const tr = rows.get(msg.job_id);
    if (msg.type === 'status' && msg.job) { renderRow(msg.job); tbody.querySelector('.empty')?.remove(); }
    else if (msg.type === 'deleted' && tr) { tr.remove(); rows.delete(msg.job_id); }
    else if (msg.type === 'progress' && tr) {
      renderRow({ ...tr.job, progress: msg.progress, packets: msg.packets, bytes: tr.job.bytes, session_count: msg.sessions });
    } else if (msg.type === 'stats' && msg.live && tr) {
      const s = msg.live;
      const text = `${s.packets} packets · ${s.sessions} calls · ${s.dropped + s.source_dropped} dropped`;
      liveCounters.set(msg.job_id, text);
      tr.querySelector('.counters').textContent = text;
      tr.querySelector('.calls').textContent = s.sessions;
    } else if (msg.type === 'full_state') load().catch(() => {});
  });
  leaveView = stop;
  load().catch((err) => showNotice(err.message));
}

/** Sends `file` as the raw body (XHR for its upload progress); the job then shows in the list. */
function upload(file, where) {
  const bar = progressBar(0, `upload of ${file.name}`);
  const text = h('span', {}, ` ${file.name}: 0%`);
  const line = h('div', { class: 'upload' }, bar, text);
  where.append(line);
  const xhr = new XMLHttpRequest();
  xhr.open('POST', `/api/v1/upload?name=${encodeURIComponent(file.name)}`);
  xhr.setRequestHeader('Content-Type', 'application/octet-stream');
  if (token()) xhr.setRequestHeader('Authorization', `Bearer ${token()}`);
  xhr.upload.addEventListener('progress', (e) => {
    if (!e.lengthComputable) return;
    const pct = Math.round((100 * e.loaded) / e.total);
    bar.value = pct;
    text.textContent = ` ${file.name}: ${pct}% of ${fmtBytes(e.total)}`;
  });
  xhr.addEventListener('load', () => {
    let answer = {};
    try { answer = JSON.parse(xhr.responseText); } catch (_) { /* not JSON */ }
    if (xhr.status === 201) {
      text.textContent = ` ${file.name}: uploaded, job ${shortId(answer.job_id)}`;
      setTimeout(() => line.remove(), 4000);
    } else {
      line.classList.add('error');
      text.textContent = ` ${file.name}: ${answer.error?.message || xhr.statusText || 'failed'}`;
    }
  });
  xhr.addEventListener('error', () => { line.classList.add('error'); text.textContent = ` ${file.name}: connection failed`; });
  xhr.send(file);
}

// ---- calls of a job ------------------------------------------------------------------

async function viewCalls(jobId, params) {
  setTitle(`Job ${shortId(jobId)}`);
  setCrumbs(['Jobs', '#/jobs'], [`Job ${shortId(jobId)}`]);
  const q = params.get('q') || '';
  const kind = params.get('kind') || '';
  const state = params.get('state') || '';
  const problem = params.get('problem') || '';
  const sort = params.get('sort') || 'start';
  const offset = Math.max(0, parseInt(params.get('offset') || '0', 10) || 0);
  const go = (changes) => {
    const p = new URLSearchParams(params);
    for (const [k, v] of Object.entries(changes)) { if (v === '' || v === null) p.delete(k); else p.set(k, v); }
    if (!('offset' in changes)) p.delete('offset');
    const qs = p.toString();
    location.hash = `#/jobs/${jobId}${qs ? `?${qs}` : ''}`;
  };
  const select = (name, label, values, current) => h('label', {}, label, ' ',
    h('select', { name, onchange: (e) => go({ [name]: e.target.value }) },
      h('option', { value: '' }, 'any'),
      values.map((v) => h('option', { value: v, selected: lower(v) === lower(current) }, v.replace(/_/g, ' ')))));
  const search = h('input', { type: 'search', name: 'q', id: 'search', value: q, placeholder: 'number, URI or Call-ID',
    'aria-label': 'Search calls by number, URI or Call-ID' });
  const form = h('form', { class: 'filters', role: 'search', onsubmit: (e) => { e.preventDefault(); go({ q: search.value.trim() }); } },
    search, h('button', { type: 'submit' }, 'Search'),
    select('kind', 'Kind', KINDS, kind), select('state', 'State', STATES, state),
    select('problem', 'Problem', ['true', 'false', ...PROBLEMS], problem));
  const status = h('p', { class: 'muted', 'aria-live': 'polite' }, 'Loading…');
  const tbody = h('tbody');
  const sortKey = sort.replace(/^-/, '');
  const header = (key, label, cls) => {
    if (!key) return h('th', { class: cls }, label);
    const active = key === sortKey;
    const next = active && !sort.startsWith('-') ? `-${key}` : key;
    const arrow = active ? (sort.startsWith('-') ? ' ▼' : ' ▲') : '';
    return h('th', { class: cls, 'aria-sort': active ? (sort.startsWith('-') ? 'descending' : 'ascending') : null },
      h('a', { href: '#', onclick: (e) => { e.preventDefault(); go({ sort: next === 'start' ? '' : next }); } }, label + arrow));
  };
  const table = h('table', { class: 'grid calls', id: 'calls' },
    h('thead', {}, h('tr', {}, header('start', 'Time'), header('from', 'From'), header('to', 'To'),
      header('state', 'State'), header('duration', 'Duration', 'num'), header(null, 'Setup', 'num'),
      header(null, 'MOS', 'num'), header('messages', 'Msgs', 'num'), header(null, 'Problems'))),
    tbody);
  const pager = h('nav', { class: 'pager', 'aria-label': 'Pages' });
  const job = h('div', { class: 'job-head' });
  append(clear(main), [job, form, status, h('div', { class: 'scroll' }, table), pager]);

  api(`/api/v1/jobs/${jobId}/status`).then((j) => {
    setTitle(j.name || `Job ${shortId(jobId)}`);
    setCrumbs(['Jobs', '#/jobs'], [j.name || `Job ${shortId(jobId)}`]);
    append(job, [h('h1', {}, j.name || `Job ${shortId(jobId)}`), ' ', stateBadge(j.status),
      h('span', { class: 'muted' }, ` ${fmtBytes(j.bytes)} · ${j.packets ?? 0} packets · ${j.session_count ?? 0} sessions`)]);
  }).catch(() => {});

  const query = new URLSearchParams({ limit: PAGE, offset, detail: 'true' });
  if (q) query.set('q', q);
  if (kind) query.set('kind', kind);
  if (state) query.set('state', state);
  if (problem) query.set('problem', problem);
  if (sort !== 'start') query.set('sort', sort);
  let page;
  try {
    page = await api(`/api/v1/jobs/${jobId}/sessions?${query}`);
  } catch (err) {
    status.textContent = err.message;
    status.className = 'error';
    return;
  }
  const first = page.total ? offset + 1 : 0;
  status.textContent = `${first}–${offset + page.sessions.length} of ${page.total} session${page.total === 1 ? '' : 's'}`;
  for (const s of page.sessions) {
    const href = `#/jobs/${jobId}/sessions/${encodeURIComponent(s.id)}`;
    const mos = (s.streams || []).map((st) => h('span', { class: `mos ${mosClass(st.mos)}`, title: `${st.src} → ${st.dst} ${st.codec}` }, fmtMos(st.mos)));
    const flagged = [...(s.problems || [])];
    if (s.anomalies) flagged.push(`${s.anomalies} anomal${s.anomalies === 1 ? 'y' : 'ies'}`);
    tbody.append(h('tr', { 'data-session': s.id },
      h('td', {}, h('a', { href }, fmtTime(s.start))),
      h('td', { class: 'uri' }, s.from),
      h('td', { class: 'uri' }, s.to),
      h('td', {}, stateBadge(s.state), lower(s.kind) === 'sip_call' ? null : h('span', { class: 'muted' }, ` ${s.kind}`)),
      h('td', { class: 'num' }, fmtMs(s.duration_ms ?? (s.end - s.start) * 1000)),
      h('td', { class: 'num' }, fmtMs(s.setup_time_ms)),
      h('td', { class: 'num' }, mos.length ? mos.flatMap((m, i) => (i ? [' / ', m] : [m])) : '–'),
      h('td', { class: 'num' }, s.messages),
      h('td', {}, flagged.map((p) => h('span', { class: 'badge problem' }, p.replace(/_/g, ' '))))));
  }
  if (!page.sessions.length) tbody.append(h('tr', {}, h('td', { colspan: 9, class: 'muted' }, 'No session matches.')));
  const pages = Math.max(1, Math.ceil(page.total / PAGE));
  const current = Math.floor(offset / PAGE) + 1;
  const link = (label, off, disabled) => (disabled ? h('span', { class: 'muted' }, label)
    : h('a', { href: '#', onclick: (e) => { e.preventDefault(); go({ offset: off || '' }); } }, label));
  append(pager, [link('« First', 0, offset === 0), ' ', link('‹ Previous', Math.max(0, offset - PAGE), offset === 0), ' ',
    h('span', {}, `page ${current} of ${pages}`), ' ',
    link('Next ›', offset + PAGE, offset + PAGE >= page.total), ' ',
    link('Last »', (pages - 1) * PAGE, offset + PAGE >= page.total)]);
  markPainted('callflow:calls-painted');
}

// ---- one call ------------------------------------------------------------------------

/** Drawing elements and attributes kept from the server's SVG; everything else is dropped. */
const SVG_ELEMENTS = new Set(['svg', 'g', 'rect', 'line', 'path', 'text', 'tspan', 'title', 'defs', 'marker',
  'polygon', 'polyline', 'circle']);
const SVG_ATTRIBUTES = new Set(['x', 'y', 'x1', 'x2', 'y1', 'y2', 'width', 'height', 'viewBox', 'd', 'fill', 'stroke',
  'stroke-width', 'stroke-dasharray', 'opacity', 'class', 'text-anchor', 'font-size', 'font-weight', 'font-family',
  'marker-end', 'id', 'refX', 'refY', 'markerUnits', 'markerWidth', 'markerHeight', 'orient', 'points', 'r', 'cx', 'cy',
  'xmlns', 'role', 'aria-label', 'dominant-baseline']);

/** The server's SVG as a DOM node holding only drawing elements and plain attributes. */
function cleanSvg(text) {
  // Its style sheet goes before parsing: the page's policy refuses inline styles even in a
  // parsed document, and app.css styles the ladder's classes instead.
  const doc = new DOMParser().parseFromString(text.replace(/<style[^>]*>[^<]*<\/style>/g, ''), 'image/svg+xml');
  const root = doc.documentElement;
  if (root.nodeName !== 'svg') throw new Error('the ladder is not an SVG picture');
  const walk = (el) => {
    for (const child of [...el.children]) {
      if (!SVG_ELEMENTS.has(child.localName) || child.namespaceURI !== 'http://www.w3.org/2000/svg') {
        // A link (<a>) keeps its content; anything else goes whole.
        if (child.localName === 'a') { walk(child); child.replaceWith(...child.childNodes); continue; }
        child.remove();
        continue;
      }
      for (const attr of [...child.attributes]) {
        const v = attr.value;
        const url = /url\(/i.test(v) && !/^url\(#[A-Za-z0-9_-]+\)$/.test(v);
        if (!SVG_ATTRIBUTES.has(attr.name) || url) child.removeAttribute(attr.name);
      }
      walk(child);
    }
  };
  for (const attr of [...root.attributes]) if (!SVG_ATTRIBUTES.has(attr.name)) root.removeAttribute(attr.name);
  walk(root);
  return document.importNode(root, true);
}

function callBase(ctx) {
  return ctx.share ? `/api/v1/share/${encodeURIComponent(ctx.share)}`
    : `/api/v1/jobs/${ctx.job}/sessions/${encodeURIComponent(ctx.sid)}`;
}

async function viewCall(ctx) {
  const base = callBase(ctx);
  setTitle('Call');
  if (ctx.share) setCrumbs(['Shared call']);
  else setCrumbs(['Jobs', '#/jobs'], [`Job ${shortId(ctx.job)}`, `#/jobs/${ctx.job}`], ['Call']);
  clear(main).append(h('p', { class: 'muted' }, 'Loading…'));
  let s;
  try {
    s = await api(base);
  } catch (err) {
    clear(main).append(h('p', { class: 'error' }, err.message));
    return;
  }
  const title = s.call_id || s.id;
  setTitle(`${s.from || title}`);
  if (!ctx.share) setCrumbs(['Jobs', '#/jobs'], [`Job ${shortId(ctx.job)}`, `#/jobs/${ctx.job}`], [s.call_id || s.id]);

  const facts = h('dl', { class: 'facts' });
  const fact = (k, v) => { if (v !== null && v !== undefined && v !== '') append(facts, [h('dt', {}, k), h('dd', {}, v)]); };
  fact('From', s.from);
  fact('To', s.to);
  fact('Call-ID', s.call_id);
  fact('Kind', s.kind);
  fact('Started', fmtTime(s.start));
  fact('Setup time', fmtMs(s.setup_time_ms));
  fact('Duration', fmtMs(s.duration_ms));
  fact('Hung up by', s.hangup_by);
  fact('Messages', s.messages.length);
  fact('Session id', s.id);

  const problems = h('div', { class: 'problems' },
    (s.problems || []).map((p) => h('span', { class: 'badge problem' }, p.replace(/_/g, ' '))),
    (s.anomalies || []).map((a) => h('div', { class: 'anomaly' }, a)));

  // Downloads: fetched with the token, then saved.
  const download = (label, path, name) => h('button', { type: 'button', class: 'download', 'data-download': name,
    onclick: async () => {
      try { saveBlob(await api(path, { as: 'blob' }), name); } catch (err) { showNotice(err.message); }
    } }, label);
  const safe = s.id.replace(/[^A-Za-z0-9_-]/g, '');
  const downloads = h('div', { class: 'downloads', role: 'group', 'aria-label': 'Downloads' },
    download('Call pcap', `${base}/pcap`, `${safe}.pcap`),
    s.related?.length && !ctx.share ? download('Group pcap', `${base}/pcap?group=true`, `${safe}-group.pcap`) : null,
    download('Ladder SVG', `${base}/ladder?format=svg`, `${safe}.svg`),
    download('Mermaid', `${base}/ladder?format=mermaid`, `${safe}.mmd`),
    download('Text', `${base}/ladder?format=text`, `${safe}.txt`),
    download('Session JSON', base, `${safe}.json`));
  const shareBox = h('div', { class: 'share' });
  if (!ctx.share && token()) {
    downloads.append(h('button', { type: 'button', id: 'share', onclick: () => makeShare(ctx, shareBox) }, 'Share'));
  }

  const raw = h('pre', { class: 'raw', id: 'raw', tabindex: 0, 'aria-live': 'polite' }, 'Select a message in the ladder to see its raw text.');
  const rawHead = h('h3', { id: 'raw-head' }, 'Message');
  const ladderBox = h('div', { class: 'ladder', id: 'ladder' }, h('p', { class: 'muted' }, 'Drawing the ladder…'));

  const related = (s.related || []).length ? h('section', { class: 'card' }, h('h2', {}, 'Related sessions'),
    h('ul', { class: 'related' }, s.related.map((r) => h('li', {},
      ctx.share ? h('span', {}, r.session) : h('a', { href: `#/jobs/${ctx.job}/sessions/${encodeURIComponent(r.session)}` }, r.session),
      h('span', { class: 'muted' }, ` ${r.relation} (${r.key})`))))) : null;

  const media = h('section', { class: 'card', id: 'media' }, h('h2', {}, 'Media streams'));
  if (s.media.length) {
    const tb = h('tbody');
    s.media.forEach((m) => {
      const qy = m.quality;
      tb.append(h('tr', {},
        h('td', {}, `${m.src} → ${m.dst}`), h('td', {}, m.codec), h('td', { class: 'num' }, m.packets),
        h('td', { class: 'num' }, m.lost), h('td', { class: 'num' }, m.max_jitter_ms.toFixed(1)),
        h('td', { class: `num mos ${mosClass(qy?.mos)}` }, fmtMos(qy?.mos)),
        h('td', {}, qy ? `R ${qy.r_factor.toFixed(1)} · loss ${qy.loss_pct.toFixed(2)}% · late ${qy.late_pct.toFixed(2)}% · burst ${qy.burst_ratio.toFixed(2)} · delay ${qy.delay_ms.toFixed(0)} ms · buffer ${qy.jitter_buffer_ms.toFixed(0)} ms · Ie ${qy.codec_ie} · Bpl ${qy.bpl}` : '–'),
        h('td', {}, (m.problems || []).map((p) => h('span', { class: 'badge problem' }, p.replace(/_/g, ' '))))));
    });
    media.append(h('div', { class: 'scroll' }, h('table', { class: 'grid' },
      h('thead', {}, h('tr', {}, h('th', {}, 'Stream'), h('th', {}, 'Codec'), h('th', { class: 'num' }, 'Packets'),
        h('th', { class: 'num' }, 'Lost'), h('th', { class: 'num' }, 'Max jitter ms'), h('th', { class: 'num' }, 'MOS'),
        h('th', {}, 'Quality inputs'), h('th', {}, 'Problems'))), tb)));
    const chart = h('img', { class: 'chart', alt: 'Quality chart: jitter, loss and MOS over time', id: 'chart' });
    media.append(h('h3', {}, 'Quality chart'), chart);
    api(`${base}/chart`, { as: 'blob' }).then((b) => { chart.src = URL.createObjectURL(b); }).catch(() => chart.remove());
  } else media.append(h('p', { class: 'muted' }, 'No media streams.'));

  append(clear(main), [
    h('h1', { class: 'call-title' }, s.from && s.to ? `${s.from} → ${s.to}` : title, ' ', stateBadge(s.state)),
    h('div', { class: 'call-head' }, facts, h('div', {}, problems, downloads, shareBox)),
    h('section', { class: 'card' }, h('h2', {}, 'Ladder'),
      h('div', { class: 'ladder-pane' }, ladderBox, h('div', { class: 'raw-pane' }, rawHead, raw))),
    media, related]);

  let selected = null;
  async function showMessage(frame, row) {
    if (selected) selected.classList.remove('selected');
    selected = row;
    row.classList.add('selected');
    rawHead.textContent = `Frame ${frame}`;
    raw.textContent = 'Reading…';
    // Answers may come back out of order: only the latest selection's is shown.
    let text;
    try {
      text = await api(`${base}/messages/${frame}`, { as: 'text' });
    } catch (err) { text = err.message; }
    if (selected === row) raw.textContent = text;
  }
  try {
    const svg = cleanSvg(await api(`${base}/ladder?format=svg`, { as: 'text' }));
    clear(ladderBox).append(svg);
    for (const row of svg.querySelectorAll('g.row')) {
      const f = row.querySelector('text.f');
      const frame = f && /^#(\d+)$/.exec(f.textContent.trim());
      if (!frame) continue;
      row.setAttribute('data-frame', frame[1]);
      row.setAttribute('tabindex', '0');
      row.setAttribute('role', 'button');
      row.setAttribute('aria-label', `message in frame ${frame[1]}`);
      row.addEventListener('click', () => showMessage(frame[1], row));
      row.addEventListener('keydown', (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); showMessage(frame[1], row); } });
    }
  } catch (err) {
    clear(ladderBox).append(h('p', { class: 'error' }, `The ladder: ${err.message}`));
  }
  markPainted('callflow:call-painted');
}

// ---- share links ---------------------------------------------------------------------

async function makeShare(ctx, box) {
  clear(box);
  try {
    const link = await api('/api/v1/shares', { method: 'POST', body: { job_id: ctx.job, session_id: ctx.sid } });
    const url = `${location.origin}/#/share/${link.token}`;
    const field = h('input', { readonly: true, value: url, id: 'share-url', 'aria-label': 'Share link', size: 40 });
    append(box, [field, ' ', h('span', { class: 'muted' }, `expires ${fmtTime(link.expires_at)}`), ' ',
      h('button', { type: 'button', id: 'revoke', onclick: async () => {
        try { await api(`/api/v1/shares/${link.token}`, { method: 'DELETE' }); clear(box).append(h('span', { class: 'muted' }, 'Link revoked.')); } catch (err) { showNotice(err.message); }
      } }, 'Revoke')]);
    field.select();
  } catch (err) { box.append(h('span', { class: 'error' }, err.message)); }
}

// A job's id as shown where space is short: a UUID's last 8 hex digits, which are random
// (its first ones are its time, alike for jobs made in the same minute); the full id is the
// row's title and every link's target. A job created before ids were UUIDs shows its number.
function shortId(id) {
  const text = String(id ?? '');
  return /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(text) ? text.slice(-8) : text;
}

// ---- routing -------------------------------------------------------------------------

async function route() {
  leaveView();
  leaveView = () => {};
  showNotice('');
  const { parts, params } = parseHash();
  logoutButton.hidden = !token();
  try {
    if (parts[0] === 'login') viewLogin(params);
    else if (parts[0] === 'share' && parts[1]) await viewCall({ share: parts[1] });
    else if (parts[0] === 'jobs' && parts[1] && parts[2] === 'sessions' && parts[3]) await viewCall({ job: parts[1], sid: parts[3] });
    else if (parts[0] === 'jobs' && parts[1]) await viewCalls(parts[1], params);
    else viewJobs();
  } catch (err) {
    showNotice(err.message);
  }
  if (document.activeElement === document.body) main.focus({ preventScroll: true });
}

logoutButton.addEventListener('click', logout);
window.addEventListener('hashchange', route);
route();
