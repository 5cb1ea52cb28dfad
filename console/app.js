// recado's console: native ES modules, no build step. Preact renders (every text a customer wrote goes into
// text nodes, never into markup); the data comes only from the public JSON API and the live event stream.
import { html, render, useState, useEffect, useRef, useCallback, useErrorBoundary } from './vendor/htm-preact-standalone-3.1.1.js';
import { api, session } from './api.js';
import { texts } from './texts.js';
import { KnowledgeBase } from './kb.js';
import { PluginsPage, DecisionEntry } from './plugins.js';
import { Reports } from './reports.js';
import { People } from './people.js';

/// Events after which the open page (the inbox, or a conversation) is read again.
const INBOX_EVENTS = [
  'conversation.created', 'conversation.updated', 'message.created', 'sla.warning', 'sla.overdue',
  'escalation.raised', 'delivery.updated', 'resync',
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

/// Most conversations the inbox reads (its pages of 200).
const INBOX_MAX = 2000;

/// Most urgent first: a running first-response clock by time left, then escalation level, then priority,
/// then the latest activity.
export function byUrgency(a, b) {
  return (a.due - b.due) || (b.escalation_level - a.escalation_level)
    || (PRIORITY[a.priority] - PRIORITY[b.priority]) || (b.activity - a.activity);
}

/// The conversations most urgent first. Each time is read once, not at every comparison: a thousand
/// conversations are ten thousand comparisons.
function sortedByUrgency(conversations) {
  return conversations
    .map((c) => ({
      c,
      due: c.sla && c.sla.state !== 'met' && c.sla.state !== 'met_late' ? Date.parse(c.sla.due_at) : Infinity,
      escalation_level: c.escalation_level,
      priority: c.priority,
      activity: Date.parse(c.last_activity_at),
    }))
    .sort(byUrgency)
    .map((keyed) => keyed.c);
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

/// The sections a role uses, in the order of the navigation.
function sections(me) {
  const all = { inbox: '#/', kb: '#/kb', plugins: '#/plugins', reports: '#/reports', people: '#/people' };
  const shown = {
    admin: ['inbox', 'kb', 'plugins', 'reports', 'people'],
    assistant: ['inbox', 'kb', 'reports'],
    client: ['plugins', 'kb', 'reports'],
  }[me.role] || [];
  return shown.map((name) => [name, all[name]]);
}

function Header({ me, live, section, onSignOut }) {
  return html`
    <header class="top">
      <strong>${texts.app}</strong>
      <nav aria-label=${texts.nav.label}>
        ${sections(me).map(([name, href]) => html`
          <a href=${href} aria-current=${section === name ? 'page' : null}>${texts.nav[name]}</a>`)}
      </nav>
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
  const [filters, setFilters] = useState({ client: '', status: 'open', assignee: '', queue: '' });
  const [queues, setQueues] = useState([]);
  const [conversations, setConversations] = useState(null);
  const [error, setError] = useState(null);
  const [selected, setSelected] = useState(0);
  const [now, setNow] = useState(Date.now());
  const list = useRef(null);

  const load = useCallback(async () => {
    const query = new URLSearchParams({ limit: '200' });
    for (const [key, value] of Object.entries(filters)) if (value) query.set(key, value);
    try {
      // Every page of the inbox (the API orders by activity; the most urgent may be on any page), up to a
      // bound that keeps a runaway inbox from freezing the browser.
      performance.mark('recado.inbox.fetch');
      let found = [];
      let cursor = null;
      do {
        if (cursor) query.set('cursor', cursor);
        const page = await api('GET', `/api/v1/conversations?${query}`);
        found = found.concat(page.conversations);
        cursor = page.next_cursor;
      } while (cursor && found.length < INBOX_MAX);
      performance.mark('recado.inbox.fetched');
      setConversations(sortedByUrgency(found));
      // The queues seen so far, offered in the queue filter.
      setQueues((seen) => [...new Set(seen.concat(found.map((c) => c.queue).filter(Boolean)))].sort());
      setError(null);
    } catch (failure) {
      setError(failure.message);
    }
  }, [filters]);
  useEffect(() => { load(); }, [load, refresh]);
  // Once a list is on the page: how long fetching and drawing took (read by the console benchmark).
  useEffect(() => {
    if (!conversations) return;
    performance.mark('recado.inbox.rendered');
    performance.measure('recado.inbox.render', 'recado.inbox.fetched', 'recado.inbox.rendered');
    performance.measure('recado.inbox.load', 'recado.inbox.fetch', 'recado.inbox.rendered');
  }, [conversations]);
  useEffect(() => {
    const timer = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(timer);
  }, []);
  useEffect(() => {
    const keys = (event) => {
      if (event.target.closest('input, textarea, select') || !conversations || conversations.length === 0) return;
      const current = conversations[Math.min(selected, conversations.length - 1)];
      if (event.key === 'j') setSelected((n) => Math.min(n + 1, conversations.length - 1));
      if (event.key === 'k') setSelected((n) => Math.max(n - 1, 0));
      if (event.key === 'Enter' && current) location.hash = `#/c/${current.id}`;
      if (event.key === 'e' && current) api('POST', `/api/v1/conversations/${current.id}/close`).then(load, (f) => setError(f.message));
      if (event.key === 'a' && current && me.person) {
        api('POST', `/api/v1/conversations/${current.id}/assign`, { assignee: me.person.email }).then(load, (f) => setError(f.message));
      }
    };
    document.addEventListener('keydown', keys);
    return () => document.removeEventListener('keydown', keys);
  }, [conversations, selected]);
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
        <label>${texts.inbox.assignee}
          <select name="assignee" value=${filters.assignee} onChange=${set('assignee')}>
            <option value="">${texts.inbox.anyone}</option>
            <option value="me">${texts.inbox.assignedToMe}</option>
            <option value="none">${texts.inbox.unassigned}</option>
          </select>
        </label>
        <label>${texts.inbox.queue}
          <input name="queue" list="queues" size="12" value=${filters.queue} onChange=${set('queue')} />
          <datalist id="queues">${queues.map((queue) => html`<option value=${queue} />`)}</datalist>
        </label>
      </form>
      ${error && html`<p class="error" role="alert">${error}</p>`}
      ${conversations && html`<p class="count" aria-live="polite">${texts.inbox.count(conversations.length)} · ${texts.inbox.keys}</p>`}
      ${conversations && conversations.length === 0 && html`<p class="empty">${texts.inbox.empty}</p>`}
      <ol class="conversations" ref=${list}>
        ${(conversations || []).map((c, index) => html`
          <li key=${c.id} tabindex="0" class=${index === selected ? 'selected' : ''} data-id=${c.id}
              onFocus=${() => setSelected(index)} onClick=${() => { location.hash = `#/c/${c.id}`; }}>
            <span class="client">${names[c.client] || c.client}</span>
            <span class="contact">${c.contact.name || c.contact.handle}</span>
            <span class="preview">${c.preview}</span>
            <${Clock} conversation=${c} now=${now} />
            ${c.escalation_level > 0 && html`<span class="escalated">${texts.inbox.escalated(c.escalation_level)}</span>`}
          </li>`)}
      </ol>
    </main>`;
}

/// Today's opening intervals of a client, in its own time zone, and whether it is open now.
function openingNow(profile, now) {
  const parts = Object.fromEntries(new Intl.DateTimeFormat('en-GB', {
    timeZone: profile.timezone, weekday: 'short', hour: '2-digit', minute: '2-digit', hourCycle: 'h23',
    year: 'numeric', month: '2-digit', day: '2-digit',
  }).formatToParts(now).map((part) => [part.type, part.value]));
  const hours = profile.business_hours || {};
  const days = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'];
  // As the server counts it: a business that never set its hours is always open.
  if (days.every((day) => (hours[day] || []).length === 0)) return { today: null, open: true };
  const date = `${parts.year}-${parts.month}-${parts.day}`;
  const today = (hours.holidays || []).includes(date) ? [] : (hours[parts.weekday.toLowerCase()] || []);
  const minute = Number(parts.hour) * 60 + Number(parts.minute);
  const open = today.some((interval) => {
    const [from, to] = interval.split('-').map((t) => Number(t.slice(0, 2)) * 60 + Number(t.slice(3, 5)));
    return minute >= from && minute < to;
  });
  return { today, open };
}

function ClientCard({ client }) {
  const { today, open } = openingNow(client, new Date());
  const t = texts.conversation;
  return html`
    <aside class="card" aria-label=${t.client}>
      <h2>${client.name}</h2>
      ${client.instructions && html`<h3>${t.instructions}</h3><p class="instructions">${client.instructions}</p>`}
      <dl>
        <dt>${t.hoursToday}</dt>
        <dd>${today === null ? t.alwaysOpen : today.length ? today.join(', ') : t.closedToday}${' · '}<strong class=${open ? 'open' : 'closed'}>${open ? t.openNow : t.closedNow}</strong></dd>
        <dt>${t.languages}</dt><dd>${client.languages.join(', ')}</dd>
        ${client.escalation_contact && html`<dt>${t.escalationContact}</dt>
          <dd>${client.escalation_contact.name} (${client.escalation_contact.channel} ${client.escalation_contact.handle})</dd>`}
      </dl>
    </aside>`;
}

/// What the rules decided about a customer's message, with their reasons and log lines, shown on demand.
function Decisions({ message }) {
  const t = texts.conversation;
  const [decisions, setDecisions] = useState(null);
  const [error, setError] = useState(null);
  const toggle = async () => {
    if (decisions) return setDecisions(null);
    try {
      setDecisions((await api('GET', `/api/v1/messages/${message.id}/decisions`)).decisions);
    } catch (failure) {
      setError(failure.message);
    }
  };
  return html`
    <div class="why">
      <button type="button" class="link" aria-expanded=${decisions ? 'true' : 'false'} onClick=${toggle}>${decisions ? t.hideWhy : t.why}</button>
      ${error && html`<span class="error">${error}</span>`}
      ${decisions && (decisions.length
        ? html`<ol class="decision-log">${decisions.map((entry) => html`<${DecisionEntry} entry=${entry} />`)}</ol>`
        : html`<p class="muted">${t.noDecisions}</p>`)}
    </div>`;
}

function Message({ message, onChanged, onError }) {
  const t = texts.conversation;
  const delivery = message.delivery;
  const who = [t.kinds[message.kind] || message.kind, message.author].filter(Boolean).join(' · ');
  const undelivered = delivery && (delivery.state === 'failed' || delivery.state === 'dead');
  const retry = () => api('POST', `/api/v1/messages/${message.id}/retry`).then(onChanged, (failure) => onError(failure.message));
  return html`
    <li class=${`message ${message.direction} ${message.kind}`} data-id=${message.id}>
      <span class="meta">${`${who} · `}<time datetime=${message.created_at}>${new Date(message.created_at).toLocaleString()}</time>${delivery && html`${' · '}<span class=${`delivery ${delivery.state}`}>${t.delivery[delivery.state] || delivery.state}${undelivered && delivery.last_error ? `: ${delivery.last_error}` : ''}</span>`}
        ${undelivered && html`${' '}<button type="button" class="link retry" onClick=${retry}>${t.retry}</button>`}</span>
      <p class="text">${message.text}</p>
      ${message.direction === 'in' && html`<${Decisions} message=${message} />`}
    </li>`;
}

/// A suggestion's snippet, which the API gives as escaped HTML with each match in `<mark>`: drawn as text
/// nodes and `<mark>` elements, never parsed as markup.
function Snippet({ marked }) {
  const entities = { lt: '<', gt: '>', amp: '&', quot: '"' };
  const text = (part) => part.replace(/&(lt|gt|amp|quot);/g, (_, name) => entities[name]);
  return html`<p class="snippet">${marked.split(/<\/?mark>/).map((part, index) => (index % 2 ? html`<mark>${text(part)}</mark>` : text(part)))}</p>`;
}

/// The composer's draft is kept in this browser until it is sent, so an ended session or a reload loses none.
const draftKey = (id) => `recado.draft.${id}`;

function Conversation({ me, id, refresh }) {
  const t = texts.conversation;
  const [conversation, setConversation] = useState(undefined);
  const [client, setClient] = useState(null);
  const [suggestions, setSuggestions] = useState(null);
  const [text, setText] = useState(() => localStorage.getItem(draftKey(id)) || '');
  const [picked, setPicked] = useState(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const [shortcuts, setShortcuts] = useState([]);
  const composer = useRef(null);

  const load = useCallback(async () => {
    try {
      const found = await api('GET', `/api/v1/conversations/${id}`);
      setConversation(found);
      setClient(await api('GET', `/api/v1/clients/${found.client}`));
      const inbound = found.messages.filter((m) => m.direction === 'in');
      const last = inbound[inbound.length - 1];
      setSuggestions(last ? { message: last.id, ...(await api('GET', `/api/v1/messages/${last.id}/suggestions`)) } : null);
    } catch (failure) {
      if (failure.status === 404) setConversation(null);
      else setError(failure.message);
    }
  }, [id]);
  useEffect(() => { load(); }, [load, refresh]);
  // The client's articles with a shortcut, for `/shortcut` in the composer.
  const slug = conversation && conversation.client;
  useEffect(() => {
    if (!slug) return;
    api('GET', `/api/v1/clients/${slug}/kb/articles?limit=200`)
      .then((page) => setShortcuts(page.articles.filter((article) => article.shortcut)), () => setShortcuts([]));
  }, [slug]);
  useEffect(() => {
    if (text) localStorage.setItem(draftKey(id), text);
    else localStorage.removeItem(draftKey(id));
  }, [text]);

  const choose = (index) => {
    const suggestion = suggestions && suggestions.suggestions[index];
    if (!suggestion) return;
    setText(suggestion.text);
    setPicked(suggestion);
    if (composer.current) composer.current.focus();
  };
  useEffect(() => {
    const keys = (event) => {
      if (event.target.closest('input, textarea, select')) return;
      if (event.key >= '1' && event.key <= '5') {
        event.preventDefault();
        choose(Number(event.key) - 1);
      }
    };
    document.addEventListener('keydown', keys);
    return () => document.removeEventListener('keydown', keys);
  }, [suggestions]);

  // `/hor` at the end of the reply offers the articles whose shortcut starts so; Tab (or a click) puts the
  // first one in, filled in for this contact and conversation.
  const typed = text.match(/(?:^|\s)\/([\p{L}\p{N}_-]*)$/u);
  const offered = typed ? shortcuts.filter((article) => article.shortcut.startsWith(typed[1].toLowerCase())).slice(0, 5) : [];
  const expand = async (article) => {
    try {
      const filled = await api('POST', `/api/v1/clients/${slug}/kb/preview`, {
        body: article.body, contact_name: conversation.contact.name || conversation.contact.handle, conversation_id: id,
      });
      if (filled.text === null) return setError(filled.problem.message);
      setText(text.slice(0, text.length - typed[1].length - 1) + filled.text);
      setPicked(null);
      if (composer.current) composer.current.focus();
    } catch (failure) {
      setError(failure.message);
    }
  };

  const send = async (event) => {
    if (event) event.preventDefault();
    if (!text.trim() || busy) return;
    setBusy(true);
    setError(null);
    try {
      await api('POST', `/api/v1/conversations/${id}/replies`, { text });
      if (suggestions) {
        await api('POST', '/api/v1/suggestions/feedback', {
          message_id: suggestions.message,
          shown: suggestions.suggestions.map((s) => s.article_id),
          picked: picked ? picked.article_id : null,
          edited: picked ? text !== picked.text : false,
        }).catch(() => {});
      }
      setText('');
      setPicked(null);
      load();
    } catch (failure) {
      setError(failure.message);
    } finally {
      setBusy(false);
    }
  };
  const act = (path, body) => api('POST', `/api/v1/conversations/${id}/${path}`, body).then(load, (f) => setError(f.message));

  if (conversation === undefined) return null;
  if (conversation === null) {
    return html`<main class="conversation"><a href="#/">${t.back}</a><p class="error" role="alert">${t.notFound}</p></main>`;
  }
  const contact = conversation.contact;
  return html`
    <main class="conversation">
      <nav><a href="#/">${t.back}</a></nav>
      <div class="columns">
        <section class="thread" aria-label=${t.thread}>
          <header>
            <h1>${contact.name || contact.handle}</h1>
            <p class="contact">${contact.handle} · ${conversation.channel}${conversation.assignee ? ` · ${t.assignedTo(conversation.assignee)}` : ''}</p>
            <div class="actions">
              ${me.person && html`<button type="button" onClick=${() => act('assign', { assignee: me.person.email })}>${t.assignToMe}</button>`}
              ${conversation.status === 'open'
                ? html`<button type="button" onClick=${() => act('close')}>${t.close}</button>`
                : html`<button type="button" onClick=${() => act('reopen')}>${t.reopen}</button>`}
            </div>
          </header>
          <ol class="messages">${conversation.messages.map((m) => html`<${Message} key=${m.id} message=${m} onChanged=${load} onError=${setError} />`)}</ol>
          ${conversation.reply_window && !conversation.reply_window.open && html`<p class="notice">${t.windowClosed}</p>`}
          <form class="composer" onSubmit=${send}>
            <label for="composer">${t.composer}</label>
            <textarea id="composer" ref=${composer} rows="4" value=${text}
              onInput=${(event) => setText(event.target.value)}
              aria-controls="shortcuts"
              onKeyDown=${(event) => {
                if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) send(event);
                if (event.key === 'Tab' && offered.length) {
                  event.preventDefault();
                  expand(offered[0]);
                }
              }}></textarea>
            <ul id="shortcuts" class="shortcuts" aria-live="polite">
              ${offered.map((article, index) => html`
                <li key=${article.id}><button type="button" class="link" onClick=${() => expand(article)}>
                  <code>/${article.shortcut}</code> ${article.title}${index === 0 ? ` · ${t.tabInserts}` : ''}</button></li>`)}
            </ul>
            <p class="hint">${t.composerHint}</p>
            <button type="submit" disabled=${busy || !text.trim()}>${busy ? t.sending : t.send}</button>
            <p class="error" role="alert">${error}</p>
          </form>
        </section>
        <div class="side">
          ${client && html`<${ClientCard} client=${client} />`}
          <section class="suggestions" aria-label=${t.suggestions}>
            <h2>${t.suggestions}</h2>
            ${suggestions && suggestions.suggestions.length === 0 && html`<p>${t.noSuggestions}</p>`}
            <ol>
              ${(suggestions ? suggestions.suggestions.slice(0, 5) : []).map((s, index) => html`
                <li key=${s.article_id} class=${picked && picked.article_id === s.article_id ? 'picked' : ''}>
                  <h3>${index + 1}. ${s.title}</h3>
                  <p class="why">${t.matched(s.matched_terms)}</p>
                  <${Snippet} marked=${s.snippet} />
                  <p class="filled">${s.text}</p>
                  <button type="button" onClick=${() => choose(index)}>${t.use(index + 1)}</button>
                </li>`)}
            </ol>
          </section>
        </div>
      </div>
    </main>`;
}

/// Which page the address names: `#/c/<id>` a conversation, `#/kb...` the knowledge base, anything else
/// the role's first section.
function useRoute() {
  const read = () => {
    const hash = location.hash;
    let match = hash.match(/^#\/c\/([A-Za-z0-9_]+)$/);
    if (match) return { section: 'inbox', conversation: match[1] };
    match = hash.match(/^#\/kb(?:\/([a-z0-9-]+)(?:\/(new)|\/a\/([A-Za-z0-9_-]+))?)?$/);
    if (match) return { section: 'kb', slug: match[1], creating: !!match[2], article: match[3] };
    if (hash === '#/reports') return { section: 'reports' };
    if (hash === '#/people') return { section: 'people' };
    match = hash.match(/^#\/plugins(?:\/([a-z0-9-]+))?$/);
    if (match) return { section: 'plugins', slug: match[1] };
    return {};
  };
  const [route, setRoute] = useState(read);
  useEffect(() => {
    const changed = () => setRoute(read());
    window.addEventListener('hashchange', changed);
    return () => window.removeEventListener('hashchange', changed);
  }, []);
  return route;
}

/// A page that fails to draw says so (and can be tried again) instead of leaving the last page up.
function Guard({ children }) {
  const [error, reset] = useErrorBoundary();
  if (error) {
    return html`<main class="failed"><p class="error" role="alert">${texts.error.page(error.message)}</p>
      <button type="button" onClick=${reset}>${texts.error.retry}</button></main>`;
  }
  return children;
}

/// The page of the route, for this person.
function Page({ me, route, refresh }) {
  const section = route.section || sections(me)[0][0];
  if (!sections(me).some(([name]) => name === section)) return html`<main><p class="error" role="alert">${texts.error.notYours}</p></main>`;
  if (section === 'people') return html`<${People} me=${me} />`;
  if (section === 'reports') return html`<${Reports} me=${me} />`;
  if (section === 'plugins') return html`<${PluginsPage} me=${me} slug=${route.slug} />`;
  if (section === 'kb') return html`<${KnowledgeBase} me=${me} slug=${route.slug} article=${route.article} creating=${route.creating} />`;
  if (route.conversation) return html`<${Conversation} key=${route.conversation} me=${me} id=${route.conversation} refresh=${refresh} />`;
  return html`<${Inbox} me=${me} refresh=${refresh} />`;
}

function App() {
  // undefined: not known yet; null: signed out.
  const [me, setMe] = useState(undefined);
  const [expired, setExpired] = useState(false);
  const [live, setLive] = useState(false);
  const [refresh, setRefresh] = useState(0);
  const route = useRoute();
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
    <${Header} me=${me} live=${live} section=${route.section || sections(me)[0][0]} onSignOut=${signOut} />
    <${Live} onChange=${() => setRefresh((n) => n + 1)} onState=${setLive} />
    <${Guard} key=${location.hash}><${Page} me=${me} route=${route} refresh=${refresh} /><//>`;
}

/// Holds the event stream while someone is signed in.
function Live({ onChange, onState }) {
  useEvents(onChange, onState);
  return null;
}

render(html`<${App} />`, document.getElementById('app'));
