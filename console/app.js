// recado's console: native ES modules, no build step. Preact renders (every text a customer wrote goes into
// text nodes, never into markup); the data comes only from the public JSON API and the live event stream.
import { html, render, useState, useEffect, useRef, useCallback } from './vendor/htm-preact-standalone-3.1.1.js';
import { api, session } from './api.js';
import { texts } from './texts.js';

/// Events after which the inbox is read again.
const INBOX_EVENTS = [
  'conversation.created', 'conversation.updated', 'message.created', 'sla.warning', 'sla.overdue',
  'escalation.raised', 'resync',
];

/// "3 min", "1 h 05 min", "2 d 4 h": how long, for a countdown.
function duration(ms) {
  const minutes = Math.max(0, Math.round(ms / 60000));
  if (minutes < 60) return `${minutes} min`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours} h ${String(minutes % 60).padStart(2, '0')} min`;
  return `${Math.floor(hours / 24)} d ${hours % 24} h`;
}

const PRIORITY = { urgent: 0, high: 1, normal: 2, low: 3 };

/// Most urgent first: a running first-response clock by time left, then escalation level, then priority,
/// then the latest activity.
export function byUrgency(a, b) {
  const due = (c) => (c.sla && c.sla.state !== 'met' && c.sla.state !== 'met_late' ? Date.parse(c.sla.due_at) : Infinity);
  return (due(a) - due(b)) || (b.escalation_level - a.escalation_level)
    || (PRIORITY[a.priority] - PRIORITY[b.priority])
    || (Date.parse(b.last_activity_at) - Date.parse(a.last_activity_at));
}

/// The live event stream: `onChange` after events that change the inbox; `onState(true|false)` as the
/// connection comes and goes (the browser reconnects by itself, resuming with Last-Event-ID).
function useEvents(onChange, onState) {
  useEffect(() => {
    const source = new EventSource('/api/v1/events');
    // A burst of events (a busy minute, a resumed stream) reads the inbox once.
    let pending = null;
    const changed = () => {
      if (pending === null) pending = setTimeout(() => { pending = null; onChange(); }, 150);
    };
    for (const kind of INBOX_EVENTS) source.addEventListener(kind, changed);
    source.onopen = () => onState(true);
    source.onerror = () => {
      onState(false);
      // A stream also ends when the session does: ask, and sign out if so.
      api('GET', '/api/v1/me').catch(() => {});
    };
    return () => {
      clearTimeout(pending);
      source.close();
    };
  }, []);
}

function SignIn({ onSignedIn, expired }) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const submit = async (event) => {
    event.preventDefault();
    const form = new FormData(event.target);
    setBusy(true);
    setError(null);
    try {
      onSignedIn(await api('POST', '/api/v1/session', { email: form.get('email'), password: form.get('password') }));
    } catch (failure) {
      setError(failure.status === 429 ? texts.signIn.throttled(failure.retryAfter) : failure.status === 401 ? texts.signIn.failed : failure.message);
    } finally {
      setBusy(false);
    }
  };
  return html`
    <main class="sign-in">
      <h1>${texts.app}</h1>
      <form onSubmit=${submit} aria-describedby="sign-in-status">
        <h2>${texts.signIn.title}</h2>
        ${expired && html`<p class="notice">${texts.signIn.expired}</p>`}
        <label for="email">${texts.signIn.email}</label>
        <input id="email" name="email" type="email" autocomplete="username" required autofocus />
        <label for="password">${texts.signIn.password}</label>
        <input id="password" name="password" type="password" autocomplete="current-password" required />
        <button type="submit" disabled=${busy}>${busy ? texts.signIn.busy : texts.signIn.submit}</button>
        <p id="sign-in-status" class="error" role="alert">${error}</p>
      </form>
    </main>`;
}

function Header({ me, live, onSignOut }) {
  return html`
    <header class="top">
      <strong>${texts.app}</strong>
      <span class=${live ? 'live on' : 'live'} role="status">${live ? texts.header.live : texts.header.offline}</span>
      <span class="who">${me.name}</span>
      <button type="button" onClick=${onSignOut}>${texts.header.signOut}</button>
    </header>`;
}

function Clock({ conversation, now }) {
  const sla = conversation.sla;
  if (!sla) return null;
  if (sla.state === 'met' || sla.state === 'met_late') return html`<span class="clock met">${texts.inbox.met}</span>`;
  const left = Date.parse(sla.due_at) - now;
  return left >= 0
    ? html`<span class=${sla.state === 'warned' ? 'clock warned' : 'clock'}>${texts.inbox.due(duration(left))}</span>`
    : html`<span class="clock overdue">${texts.inbox.overdue(duration(-left))}</span>`;
}

function Inbox({ me, refresh }) {
  const [filters, setFilters] = useState({ client: '', status: 'open', assignee: '' });
  const [conversations, setConversations] = useState(null);
  const [error, setError] = useState(null);
  const [selected, setSelected] = useState(0);
  const [now, setNow] = useState(Date.now());
  const list = useRef(null);

  const load = useCallback(async () => {
    const query = new URLSearchParams({ limit: '200' });
    for (const [key, value] of Object.entries(filters)) if (value) query.set(key, value);
    try {
      const page = await api('GET', `/api/v1/conversations?${query}`);
      setConversations(page.conversations.slice().sort(byUrgency));
      setError(null);
    } catch (failure) {
      setError(failure.message);
    }
  }, [filters]);
  useEffect(() => { load(); }, [load, refresh]);
  useEffect(() => {
    const timer = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(timer);
  }, []);
  useEffect(() => {
    const keys = (event) => {
      if (event.target.closest('input, textarea, select') || !conversations || conversations.length === 0) return;
      if (event.key === 'j') setSelected((n) => Math.min(n + 1, conversations.length - 1));
      if (event.key === 'k') setSelected((n) => Math.max(n - 1, 0));
    };
    document.addEventListener('keydown', keys);
    return () => document.removeEventListener('keydown', keys);
  }, [conversations]);
  useEffect(() => {
    const row = list.current && list.current.children[selected];
    if (row) row.focus();
  }, [selected]);

  const names = Object.fromEntries(me.clients.map((client) => [client.slug, client.name]));
  const set = (key) => (event) => setFilters({ ...filters, [key]: event.target.value });
  return html`
    <main class="inbox">
      <h1>${texts.inbox.title}</h1>
      <form class="filters" onSubmit=${(event) => event.preventDefault()}>
        <label>${texts.inbox.client}
          <select name="client" value=${filters.client} onChange=${set('client')}>
            <option value="">${texts.inbox.allClients}</option>
            ${me.clients.map((client) => html`<option value=${client.slug}>${client.name}</option>`)}
          </select>
        </label>
        <label>${texts.inbox.status}
          <select name="status" value=${filters.status} onChange=${set('status')}>
            <option value="open">${texts.inbox.open}</option>
            <option value="closed">${texts.inbox.closed}</option>
          </select>
        </label>
        <label><input type="checkbox" name="mine" checked=${filters.assignee === 'me'}
          onChange=${(event) => setFilters({ ...filters, assignee: event.target.checked ? 'me' : '' })} />
          ${texts.inbox.assignedToMe}</label>
      </form>
      ${error && html`<p class="error" role="alert">${error}</p>`}
      ${conversations && html`<p class="count" aria-live="polite">${texts.inbox.count(conversations.length)}</p>`}
      ${conversations && conversations.length === 0 && html`<p class="empty">${texts.inbox.empty}</p>`}
      <ol class="conversations" ref=${list}>
        ${(conversations || []).map((c, index) => html`
          <li key=${c.id} tabindex="0" class=${index === selected ? 'selected' : ''} data-id=${c.id}
              onFocus=${() => setSelected(index)}>
            <span class="client">${names[c.client] || c.client}</span>
            <span class="contact">${c.contact.name || c.contact.handle}</span>
            <span class="preview">${c.preview}</span>
            <${Clock} conversation=${c} now=${now} />
            ${c.escalation_level > 0 && html`<span class="escalated">${texts.inbox.escalated(c.escalation_level)}</span>`}
          </li>`)}
      </ol>
    </main>`;
}

function App() {
  // undefined: not known yet; null: signed out.
  const [me, setMe] = useState(undefined);
  const [expired, setExpired] = useState(false);
  const [live, setLive] = useState(false);
  const [refresh, setRefresh] = useState(0);
  useEffect(() => {
    api('GET', '/api/v1/me').then(setMe, () => setMe(null));
    const signedOut = () => {
      setExpired(true);
      setMe(null);
    };
    session.addEventListener('signedout', signedOut);
    return () => session.removeEventListener('signedout', signedOut);
  }, []);
  if (me === undefined) return null;
  if (me === null) {
    return html`<${SignIn} expired=${expired} onSignedIn=${(who) => { setExpired(false); setMe(who); }} />`;
  }
  const signOut = async () => {
    await api('DELETE', '/api/v1/session').catch(() => {});
    setExpired(false);
    setMe(null);
  };
  return html`
    <${Header} me=${me} live=${live} onSignOut=${signOut} />
    <${Live} onChange=${() => setRefresh((n) => n + 1)} onState=${setLive} />
    <${Inbox} me=${me} refresh=${refresh} />`;
}

/// Holds the event stream while someone is signed in.
function Live({ onChange, onState }) {
  useEvents(onChange, onState);
  return null;
}

render(html`<${App} />`, document.getElementById('app'));
