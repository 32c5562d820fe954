// Parvis audience page: talks protocol v1 (docs/protocol.md) over ws(s)://<this host>/ws.
//
// Security rule for this file: every piece of text that comes from the network or from the
// user is put in the page with textContent / createTextNode only. Colours are applied with
// style.backgroundColor only after matching COLOUR_RE. No innerHTML, no eval.

const PROTOCOL_VERSION = 1;
const MAX_LOG_LINES = 200;
const NAME_MAX = 32;
const DEFAULT_MAX_CHARS = 280;
const BACKOFF_MIN_MS = 1000;
const BACKOFF_MAX_MS = 30000;
const WINNER_SHOW_MS = 6000;
const COLOUR_RE = /^#[0-9a-f]{6}([0-9a-f]{2})?$/i;

// ---------------------------------------------------------------------------------------------
// Language

const STRINGS = {
  en: {
    nameLabel: 'Your display name',
    join: 'Join',
    joinHint: 'Chat, react and vote: what you send can change the stage.',
    send: 'Send',
    stage: 'Stage',
    noParams: 'Nothing to show yet.',
    paused: 'paused',
    idle: 'not connected',
    connecting: 'connecting…',
    connected: 'connected',
    reconnecting: 'reconnecting…',
    reconnectingIn: (s) => `reconnecting in ${s} s…`,
    disconnected: 'disconnected',
    audience: (n) => `${n} connected`,
    nameEmpty: 'Please enter a name.',
    nameTooLong: `At most ${NAME_MAX} characters.`,
    chatPlaceholder: (name) => `Message as ${name}…`,
    react: (e) => `React ${e}`,
    closesIn: (t) => `closes in ${t}`,
    closing: 'closing…',
    votes: (n) => (n === 1 ? '1 vote' : `${n} votes`),
    winner: (label) => `Winner: ${label}`,
    noWinner: 'Poll closed.',
    banned: 'You have been removed from the chat.',
    windowsTitle: 'Open now',
    windowOpen: 'until the show closes it',
    surtitleLang: 'Surtitles',
    textOnly: 'Text only',
    fullView: 'Full view',
    surtitleSize: 'Larger text',
    surtitleContrast: 'High contrast',
  },
  fr: {
    nameLabel: 'Votre pseudo',
    join: 'Rejoindre',
    joinHint: 'Discutez, réagissez et votez : vos messages peuvent changer la scène.',
    send: 'Envoyer',
    stage: 'Scène',
    noParams: 'Rien à afficher pour l’instant.',
    paused: 'en pause',
    idle: 'non connecté',
    connecting: 'connexion…',
    connected: 'connecté',
    reconnecting: 'reconnexion…',
    reconnectingIn: (s) => `reconnexion dans ${s} s…`,
    disconnected: 'déconnecté',
    audience: (n) => `${n} connecté${n > 1 ? 's' : ''}`,
    nameEmpty: 'Veuillez saisir un pseudo.',
    nameTooLong: `${NAME_MAX} caractères au plus.`,
    chatPlaceholder: (name) => `Message en tant que ${name}…`,
    react: (e) => `Réagir ${e}`,
    closesIn: (t) => `fin dans ${t}`,
    closing: 'fin…',
    votes: (n) => (n <= 1 ? `${n} vote` : `${n} votes`),
    winner: (label) => `Gagnant : ${label}`,
    noWinner: 'Sondage terminé.',
    banned: 'Vous avez été exclu du chat.',
    windowsTitle: 'Ouvert en ce moment',
    windowOpen: 'jusqu’à ce que le spectacle le ferme',
    surtitleLang: 'Surtitres',
    textOnly: 'Texte seul',
    fullView: 'Vue complète',
    surtitleSize: 'Texte plus grand',
    surtitleContrast: 'Contraste élevé',
  },
};

const browserLang = (navigator.language || 'en').trim();
const uiLang = browserLang.toLowerCase().startsWith('fr') ? 'fr' : 'en';
const T = STRINGS[uiLang];

// ---------------------------------------------------------------------------------------------
// Elements

const $ = (id) => document.getElementById(id);
const el = {
  venue: $('venue'),
  status: $('status'),
  connText: $('conn-text'),
  audienceWrap: document.querySelector('#status .audience'),
  audienceCount: $('audience-count'),
  pausedBadge: $('paused-badge'),
  joinPanel: $('join-panel'),
  joinForm: $('join-form'),
  name: $('name'),
  join: $('join'),
  joinError: $('join-error'),
  log: $('log'),
  chatForm: $('chat-form'),
  chatInput: $('chat-input'),
  send: $('send'),
  reactions: $('reactions'),
  poll: $('poll'),
  pollQuestion: $('poll-question'),
  pollCountdown: $('poll-countdown'),
  pollOptions: $('poll-options'),
  pollResult: $('poll-result'),
  windows: $('windows'),
  surtitle: $('surtitle'),
  surtitleLang: $('surtitle-lang'),
  surtitleText: $('surtitle-text'),
  surtitleSize: $('surtitle-size'),
  surtitleContrast: $('surtitle-contrast'),
  windowList: $('window-list'),
  params: $('params'),
  paramsEmpty: $('params-empty'),
};

// Helper: create an element with a class and (text) content. Text only, never markup.
function make(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

// Number of Unicode characters (code points), as the server counts them.
const charCount = (s) => Array.from(s).length;

// Values may arrive as plain text (the protocol) or, defensively, as a tagged command value
// such as {"Colour": "#ff0000"}; show them as text either way.
function valueText(v) {
  if (v === null || v === undefined) return '';
  if (typeof v === 'object' && !Array.isArray(v)) {
    const keys = Object.keys(v);
    if (keys.length === 1) return valueText(v[keys[0]]);
    return JSON.stringify(v);
  }
  return String(v);
}

function swatch(value) {
  const text = valueText(value).trim();
  if (!COLOUR_RE.test(text)) return null;
  const s = make('span', 'swatch');
  s.setAttribute('aria-hidden', 'true');
  s.style.backgroundColor = text;
  return s;
}

// ---------------------------------------------------------------------------------------------
// Static texts

document.documentElement.lang = uiLang;
for (const node of document.querySelectorAll('[data-i18n]')) {
  const v = T[node.dataset.i18n];
  if (typeof v === 'string') node.textContent = v;
}

// ---------------------------------------------------------------------------------------------
// Connection

const session = {
  name: null,          // the name we joined with (re-sent on reconnect)
  ws: null,
  welcomed: false,     // welcome received on the current socket
  everWelcomed: false, // welcome received at least once in this page
  attempt: 0,          // consecutive failed connections, for the backoff
  retryTimer: 0,
  retryAt: 0,
  stop: false,         // no more reconnecting (banned, or name refused)
  bannedSeen: false,
  tickTimer: 0,
  reactions: [],
  maxChars: DEFAULT_MAX_CHARS,
};

function setConn(state, text) {
  el.status.dataset.state = state;
  el.connText.textContent = text ?? T[state] ?? state;
}
setConn('idle');

function wsUrl() {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}/ws`;
}

function send(msg) {
  const ws = session.ws;
  if (!ws || ws.readyState !== WebSocket.OPEN) return false;
  ws.send(JSON.stringify(msg));
  return true;
}

function connect() {
  clearTimeout(session.retryTimer);
  clearTimeout(session.tickTimer);
  session.retryTimer = 0;
  if (session.stop) return;
  setConn(session.everWelcomed || session.attempt > 0 ? 'reconnecting' : 'connecting');

  let ws;
  try {
    ws = new WebSocket(wsUrl());
  } catch (e) {
    console.error('websocket', e);
    scheduleReconnect();
    return;
  }
  session.ws = ws;
  session.welcomed = false;

  ws.addEventListener('open', () => {
    if (session.ws !== ws) return;
    const hello = { type: 'hello', v: PROTOCOL_VERSION, name: session.name };
    if (browserLang) hello.lang = browserLang;
    // The venue's signed token: coming back (a dropped connection, a reload) as the same member.
    const token = storedSession();
    if (token) hello.session = token;
    ws.send(JSON.stringify(hello));
  });

  ws.addEventListener('message', (ev) => {
    if (session.ws !== ws) return;
    if (typeof ev.data !== 'string') return; // the protocol is text frames only
    let msg;
    try {
      msg = JSON.parse(ev.data);
    } catch {
      console.warn('ignoring a frame that is not JSON');
      return;
    }
    if (!msg || typeof msg !== 'object' || Array.isArray(msg)) return;
    try {
      handle(msg);
    } catch (e) {
      console.error('while handling', msg.type, e);
    }
  });

  ws.addEventListener('close', (ev) => {
    if (session.ws !== ws) return;
    session.ws = null;
    session.welcomed = false;
    setChatEnabled(false);
    if (ev.code === 1008 && session.bannedSeen) session.stop = true;
    if (session.stop) {
      setConn('disconnected');
      return;
    }
    scheduleReconnect();
  });
  // 'error' is always followed by 'close'; nothing to do there.
}

function scheduleReconnect() {
  if (session.stop) return;
  // Exponential backoff 1 s, 2 s, 4 s … capped at 30 s, with ±25 % jitter (never above the cap).
  const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** session.attempt);
  const delay = Math.min(BACKOFF_MAX_MS, Math.round(base * (0.75 + Math.random() * 0.5)));
  session.attempt += 1;
  session.retryAt = Date.now() + delay;
  session.retryTimer = setTimeout(connect, delay);
  tickReconnectText();
}

function tickReconnectText() {
  clearTimeout(session.tickTimer);
  if (!session.retryTimer) return;
  const s = Math.max(1, Math.ceil((session.retryAt - Date.now()) / 1000));
  setConn('reconnecting', T.reconnectingIn(s));
  session.tickTimer = setTimeout(tickReconnectText, 500);
}

// Come back quickly when the phone wakes up or the network returns.
function reconnectNow() {
  if (session.name && !session.ws && session.retryTimer && !session.stop) connect();
}
window.addEventListener('online', reconnectNow);
document.addEventListener('visibilitychange', () => {
  if (document.visibilityState === 'visible') reconnectNow();
});

// ---------------------------------------------------------------------------------------------
// Incoming messages

function handle(msg) {
  switch (msg.type) {
    case 'welcome': return onWelcome(msg);
    case 'state': return onState(msg);
    case 'chat': return addChat(msg);
    case 'retract': return retract(msg.id);
    case 'effect': return onEffect(msg);
    case 'poll': return showPoll(msg);
    case 'surtitle': return onSurtitle(msg);
    case 'notice': return addLine('notice', [make('span', 'text', valueText(msg.text))]);
    case 'error': return onError(msg);
    default: console.debug('ignoring message type', msg.type);
  }
}

// The session token lives in this tab's storage for this venue only (sessionStorage is per
// origin and per tab); nothing else about the member is stored.
function storedSession() {
  try { return sessionStorage.getItem('parvis.session') || ''; } catch (e) { return ''; }
}

function keepSession(token) {
  if (typeof token !== 'string' || token.length > 200) return;
  try { sessionStorage.setItem('parvis.session', token); } catch (e) { /* storage refused: fine */ }
}

function onWelcome(msg) {
  session.welcomed = true;
  keepSession(msg.session);
  session.everWelcomed = true;
  session.attempt = 0;
  const venue = typeof msg.venue === 'string' && msg.venue.trim() ? msg.venue : 'Parvis';
  el.venue.textContent = venue;
  document.title = venue;
  const lim = msg.limits && typeof msg.limits === 'object' ? msg.limits : {};
  const mc = Number(lim.max_chars);
  session.maxChars = Number.isInteger(mc) && mc > 0 ? mc : DEFAULT_MAX_CHARS;
  el.chatInput.maxLength = session.maxChars;
  session.reactions = Array.isArray(msg.reactions)
    ? msg.reactions.filter((r) => typeof r === 'string' && r.length > 0 && r.length <= 32)
    : [];
  renderReactions();
  el.joinPanel.hidden = true;
  el.joinError.hidden = true;
  setConn('connected');
  el.chatInput.placeholder = T.chatPlaceholder(session.name);
  setChatEnabled(true);
}

function onState(msg) {
  if (msg.params && typeof msg.params === 'object') renderParams(msg.params);
  if (typeof msg.audience === 'number' && Number.isFinite(msg.audience)) {
    const n = Math.max(0, Math.trunc(msg.audience));
    el.audienceWrap.hidden = false;
    el.audienceCount.textContent = String(n);
    el.audienceWrap.title = T.audience(n);
    el.audienceWrap.setAttribute('aria-label', T.audience(n));
  }
  if ('paused' in msg) {
    const paused = msg.paused === true;
    el.pausedBadge.hidden = !paused;
    el.status.dataset.paused = String(paused);
  }
  if ('poll' in msg) {
    if (msg.poll && typeof msg.poll === 'object') showPoll(msg.poll);
    else if (!poll.closingTimer) hidePoll();
  }
  if (Array.isArray(msg.windows)) showWindows(msg.windows);
}

// Surtitles: the show sends every language; the member picks theirs (default: the browser's,
// then the venue's order, as the venue itself falls back).
const surtitle = { texts: {}, order: [], chosen: '' };

function primaryTag(tag) {
  return String(tag).split(/[-_]/)[0].toLowerCase();
}

function pickLanguage(langs, wanted, order) {
  const lookup = (tag) => langs.find((l) => l.toLowerCase() === tag.toLowerCase())
    ?? langs.find((l) => l.toLowerCase() === primaryTag(tag))
    ?? langs.find((l) => primaryTag(l) === primaryTag(tag));
  for (const tag of [wanted, ...order]) {
    if (!tag) continue;
    const found = lookup(tag);
    if (found) return found;
  }
  return langs[0] ?? '';
}

function onSurtitle(msg) {
  const texts = msg.texts && typeof msg.texts === 'object' && !Array.isArray(msg.texts) ? msg.texts : {};
  surtitle.texts = Object.fromEntries(Object.entries(texts).map(([k, v]) => [String(k), valueText(v)]));
  surtitle.order = Array.isArray(msg.order) ? msg.order.map(valueText) : [];
  const langs = [...new Set([...surtitle.order, ...Object.keys(surtitle.texts)])];
  const shown = [...el.surtitleLang.options].map((o) => o.value);
  if (langs.some((l) => !shown.includes(l))) {
    el.surtitleLang.replaceChildren(...[...new Set([...shown, ...langs])].map((l) => {
      const option = make('option', '', l);
      option.value = l;
      return option;
    }));
  }
  if (!surtitle.chosen) el.surtitleLang.value = pickLanguage(langs, browserLang, surtitle.order);
  renderSurtitle();
}

function renderSurtitle() {
  el.surtitle.hidden = false;
  const langs = Object.keys(surtitle.texts);
  const lang = pickLanguage(langs, surtitle.chosen || el.surtitleLang.value || browserLang, surtitle.order);
  el.surtitleText.textContent = lang ? surtitle.texts[lang] : '';
  el.surtitleText.lang = lang;
}

// A text-only view for screen readers and small screens: one column, no decoration, what
// changes announced. Kept in the address (#text) so that it can be bookmarked or linked.
const textToggle = $('text-only');
function applyTextOnly() {
  const on = location.hash === '#text';
  document.body.classList.toggle('text-only', on);
  textToggle.textContent = on ? T.fullView : T.textOnly;
  textToggle.href = on ? '#' : '#text';
}
window.addEventListener('hashchange', applyTextOnly);
applyTextOnly();

el.surtitleLang.addEventListener('change', () => {
  surtitle.chosen = el.surtitleLang.value;
  renderSurtitle();
});
for (const [button, className] of [[el.surtitleSize, 'large'], [el.surtitleContrast, 'contrast']]) {
  button.addEventListener('click', () => {
    const on = el.surtitle.classList.toggle(className);
    button.setAttribute('aria-pressed', String(on));
  });
}

// Interaction windows the show opened: what they allow, counted down on this clock.
const windows = { items: [], timer: null };

function showWindows(list) {
  const now = Date.now();
  windows.items = list
    .filter((w) => w && typeof w === 'object' && Array.isArray(w.allows))
    .map((w) => ({
      label: valueText(w.label),
      allows: w.allows.map(valueText),
      deadline: Number.isFinite(w.closes_in) ? now + Math.max(0, w.closes_in) * 1000 : null,
    }));
  renderWindows();
}

function renderWindows() {
  clearTimeout(windows.timer);
  const now = Date.now();
  const open = windows.items.filter((w) => w.deadline === null || w.deadline > now);
  el.windows.hidden = open.length === 0;
  el.windowList.replaceChildren(
    ...open.map((w) => {
      const item = make('li', 'window');
      if (w.label) item.append(make('span', 'window-label', w.label), ' ');
      item.append(make('span', 'window-allows', w.allows.join(' ')), ' ');
      let left = T.windowOpen;
      if (w.deadline !== null) {
        const s = Math.ceil((w.deadline - now) / 1000);
        left = T.closesIn(`${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`);
      }
      item.append(make('span', 'countdown', left));
      return item;
    }),
  );
  if (open.some((w) => w.deadline !== null)) windows.timer = setTimeout(renderWindows, 250);
}

function onEffect(msg) {
  const param = valueText(msg.param);
  const value = valueText(msg.value);
  const action = valueText(msg.action);
  const parts = [make('span', 'from', valueText(msg.by))];
  const others = Math.max(0, Number(msg.others) || 0);
  if (others > 0) parts.push(make('span', 'others', ` +${others}`));
  parts.push(make('span', 'arrow', ' → '));
  if (param) {
    parts.push(make('span', 'param', param), make('span', 'eq', action === 'animate' ? ' ⇢ ' : ' = '));
    const sw = swatch(value);
    if (sw) parts.push(sw);
  }
  // Spawned effects name the effect; shown texts are the member's words: text nodes only.
  parts.push(make('span', 'value', action === 'show' ? `« ${value} »` : value));
  if (msg.rule) parts.push(make('span', 'rule', ` (${valueText(msg.rule)})`));
  addLine('effect', parts);
  // Show the new value at once; the next `state` stays the authority.
  if (param) setParam(param, value);
}

function onError(msg) {
  const code = valueText(msg.code) || 'error';
  const message = valueText(msg.message);
  const parts = [make('span', 'code', code)];
  if (message) parts.push(make('span', 'text', `: ${message}`));
  const line = addLine('error', parts);
  line.dataset.code = code;
  if (code === 'banned') {
    session.bannedSeen = true;
    session.stop = true;
    addLine('notice', [make('span', 'text', T.banned)]);
  } else if (!session.welcomed && session.ws && session.everWelcomed) {
    // Our hello was refused on a reconnection (e.g. rate limited): drop this socket; the
    // close handler retries with a longer backoff.
    try { session.ws.close(1000); } catch { /* already closed */ }
  } else if (!session.welcomed && session.ws) {
    // The first hello (the name) was refused: let the user pick another one.
    session.stop = true;
    const ws = session.ws;
    session.ws = null;
    try { ws.close(1000); } catch { /* already closed */ }
    setConn('idle');
    el.joinError.textContent = message ? `${code}: ${message}` : code;
    el.joinError.hidden = false;
    el.join.disabled = false;
    el.name.disabled = false;
    el.name.focus();
  }
}

// ---------------------------------------------------------------------------------------------
// Log

const linesById = new Map();

function addLine(kind, parts) {
  const nearBottom = el.log.scrollHeight - el.log.scrollTop - el.log.clientHeight < 40;
  const li = make('li', 'line');
  li.dataset.kind = kind;
  for (const p of parts) li.append(p);
  el.log.append(li);
  while (el.log.childElementCount > MAX_LOG_LINES) {
    const old = el.log.firstElementChild;
    if (old.dataset.id !== undefined && linesById.get(old.dataset.id) === old) {
      linesById.delete(old.dataset.id);
    }
    old.remove();
  }
  if (nearBottom) el.log.scrollTop = el.log.scrollHeight;
  return li;
}

function addChat(msg) {
  const id = msg.id === undefined || msg.id === null ? '' : String(msg.id);
  // A member's own line comes at once, and again with everyone's: show it once. (Ids start
  // again when a venue restarts: the same id with other words is another line.)
  const key = `${valueText(msg.from)}\u0000${valueText(msg.text)}`;
  if (id && linesById.get(id)?.dataset.key === key) return;
  const li = addLine('chat', [
    make('span', 'from', valueText(msg.from)),
    make('span', 'sep', ': '),
    make('span', 'text', valueText(msg.text)),
  ]);
  li.dataset.id = id;
  li.dataset.key = key;
  if (id) linesById.set(id, li);
}

function retract(id) {
  if (id === undefined || id === null) return;
  const key = String(id);
  const li = linesById.get(key);
  if (li) {
    linesById.delete(key);
    li.remove();
  }
}

// ---------------------------------------------------------------------------------------------
// Join and chat

const savedName = (() => {
  try { return localStorage.getItem('parvis.name') || ''; } catch { return ''; }
})();
if (savedName && charCount(savedName) <= NAME_MAX) el.name.value = savedName;

el.joinForm.addEventListener('submit', (ev) => {
  ev.preventDefault();
  const name = el.name.value.trim();
  let problem = null;
  if (!name) problem = T.nameEmpty;
  else if (charCount(name) > NAME_MAX) problem = T.nameTooLong;
  if (problem) {
    el.joinError.textContent = problem;
    el.joinError.hidden = false;
    el.name.focus();
    return;
  }
  el.joinError.hidden = true;
  session.name = name;
  session.stop = false;
  session.attempt = 0;
  try { localStorage.setItem('parvis.name', name); } catch { /* private mode */ }
  el.join.disabled = true;
  el.name.disabled = true;
  connect();
});

function setChatEnabled(on) {
  el.chatInput.disabled = !on;
  el.send.disabled = !on;
  for (const b of el.reactions.querySelectorAll('button')) b.disabled = !on;
  for (const b of el.pollOptions.querySelectorAll('button')) b.disabled = !on || poll.phase === 'close';
}

el.chatForm.addEventListener('submit', (ev) => {
  ev.preventDefault();
  const text = el.chatInput.value.trim();
  if (!text) return;
  if (send({ type: 'chat', text })) {
    el.chatInput.value = '';
  }
  el.chatInput.focus();
});

function renderReactions() {
  el.reactions.replaceChildren();
  for (const emoji of session.reactions) {
    const b = make('button', 'reaction', emoji);
    b.type = 'button';
    b.dataset.emoji = emoji;
    b.setAttribute('aria-label', T.react(emoji));
    b.addEventListener('click', () => {
      if (send({ type: 'react', emoji })) {
        b.classList.remove('pop');
        void b.offsetWidth; // restart the animation
        b.classList.add('pop');
      }
    });
    el.reactions.append(b);
  }
}

// ---------------------------------------------------------------------------------------------
// Stage parameters

const paramRows = new Map();

function setParam(name, value) {
  let row = paramRows.get(name);
  if (!row) {
    row = make('li', 'param-row');
    row.dataset.param = name;
    row.append(make('span', 'name', name), make('span', 'swatch-slot'), make('span', 'value'));
    paramRows.set(name, row);
    // Keep the rows sorted by name.
    const after = [...paramRows.keys()].sort().find((k) => k > name);
    el.params.insertBefore(row, after ? paramRows.get(after) : null);
  }
  const text = valueText(value);
  const valueEl = row.querySelector('.value');
  if (valueEl.textContent !== text) {
    const isNew = !row.dataset.seen;
    row.dataset.seen = '1';
    valueEl.textContent = text;
    if (!isNew) {
      // Flash the row to show the change (restart the animation).
      row.classList.remove('changed');
      void row.offsetWidth;
      row.classList.add('changed');
    }
  }
  const slot = row.querySelector('.swatch-slot');
  const sw = swatch(text);
  slot.replaceChildren(...(sw ? [sw] : []));
  el.paramsEmpty.hidden = true;
}

function renderParams(params) {
  const names = new Set(Object.keys(params));
  for (const [name, row] of paramRows) {
    if (!names.has(name)) {
      row.remove();
      paramRows.delete(name);
    }
  }
  for (const name of names) setParam(name, params[name]);
  el.paramsEmpty.hidden = paramRows.size > 0;
}

// ---------------------------------------------------------------------------------------------
// Poll

const poll = {
  id: null,
  phase: null,
  deadline: 0,
  myVote: new Map(), // poll id -> option id
  closingTimer: 0,
  tickTimer: 0,
};

function showPoll(p) {
  const phase = p.phase;
  if (phase !== 'open' && phase !== 'tally' && phase !== 'close') return;
  const options = Array.isArray(p.options) ? p.options.filter((o) => o && typeof o === 'object') : [];
  const sameAsClosing = poll.closingTimer && poll.id !== null && String(p.id) === String(poll.id);
  if (phase !== 'close' && sameAsClosing && poll.phase === 'close') return; // stale state
  if (phase !== 'close') {
    clearTimeout(poll.closingTimer);
    poll.closingTimer = 0;
  }
  poll.id = p.id;
  poll.phase = phase;
  el.poll.hidden = false;
  el.poll.dataset.phase = phase;
  el.pollQuestion.textContent = valueText(p.question);

  const total = options.reduce((n, o) => n + Math.max(0, Number(o.votes) || 0), 0);
  const mine = poll.myVote.get(String(p.id));
  const winner = phase === 'close' && p.winner !== undefined && p.winner !== null ? String(p.winner) : null;
  const canVote = phase !== 'close' && session.welcomed;

  el.pollOptions.replaceChildren();
  for (const o of options) {
    const optId = String(o.id);
    const votes = Math.max(0, Number(o.votes) || 0);
    const pct = total > 0 ? Math.round((votes / total) * 100) : 0;
    const b = make('button', 'poll-option');
    b.type = 'button';
    b.dataset.option = optId;
    b.disabled = !canVote;
    b.setAttribute('aria-pressed', mine === optId ? 'true' : 'false');
    if (winner === optId) b.classList.add('winner');
    const bar = make('span', 'bar');
    bar.style.width = `${pct}%`;
    const label = make('span', 'label', valueText(o.label));
    const count = make('span', 'count', `${T.votes(votes)} · ${pct}%`);
    b.append(bar, label, count);
    b.addEventListener('click', () => {
      if (send({ type: 'vote', poll: p.id, option: o.id })) {
        poll.myVote.set(String(p.id), optId);
        for (const other of el.pollOptions.querySelectorAll('button')) {
          other.setAttribute('aria-pressed', other === b ? 'true' : 'false');
        }
      }
    });
    el.pollOptions.append(b);
  }

  if (phase === 'close') {
    const w = options.find((o) => String(o.id) === winner);
    el.pollResult.textContent = w ? T.winner(valueText(w.label)) : T.noWinner;
    el.pollResult.hidden = false;
    el.pollCountdown.textContent = '';
    poll.deadline = 0;
    clearTimeout(poll.closingTimer);
    poll.closingTimer = setTimeout(() => {
      poll.closingTimer = 0;
      hidePoll();
    }, WINNER_SHOW_MS);
  } else {
    el.pollResult.hidden = true;
    const ms = Number(p.closes_in_ms);
    if (Number.isFinite(ms) && ms >= 0) poll.deadline = Date.now() + ms;
    tickCountdown();
  }
}

function hidePoll() {
  el.poll.hidden = true;
  el.pollOptions.replaceChildren();
  poll.phase = null;
  poll.deadline = 0;
  clearTimeout(poll.tickTimer);
}

function tickCountdown() {
  clearTimeout(poll.tickTimer);
  if (!poll.deadline || poll.phase === 'close' || el.poll.hidden) {
    el.pollCountdown.textContent = '';
    return;
  }
  const left = Math.max(0, poll.deadline - Date.now());
  if (left === 0) {
    el.pollCountdown.textContent = T.closing;
    return;
  }
  const s = Math.ceil(left / 1000);
  const mm = Math.floor(s / 60);
  const ss = String(s % 60).padStart(2, '0');
  el.pollCountdown.textContent = T.closesIn(`${mm}:${ss}`);
  poll.tickTimer = setTimeout(tickCountdown, 250);
}

// Let a reload-free retry focus the name field.
if (!el.name.value) el.name.focus();
