// A client's rules: upload a component with its configuration; its versions, their state and the circuit
// breaker; activate, shadow, disable, deactivate, roll back; a replay over past messages showing where a
// version decides differently from the active chain; the decision log with reasons and log lines.
// Client people (for their own client) and admins.
import { html, useState, useEffect, useCallback } from './vendor/htm-preact-standalone-3.1.1.js';
import { api } from './api.js';
import { texts } from './texts.js';
import { ClientPicker } from './kb.js';

const clientPath = (slug) => `/api/v1/clients/${encodeURIComponent(slug)}`;

/// A decision in a few words: what it does, then why.
export function DecisionSummary({ decision }) {
  const t = texts.plugins.decision;
  if (!decision) return html`<span class="decision none">${t.none}</span>`;
  const parts = [];
  if (decision.acknowledge) parts.push(t.acknowledge(decision.acknowledge));
  if (decision.queue) parts.push(t.queue(decision.queue));
  if (decision.assignee) parts.push(t.assignee(decision.assignee));
  if (decision.tags.length) parts.push(t.tags(decision.tags));
  if (decision.priority) parts.push(t.priority(decision.priority));
  if (decision.escalate) parts.push(t.escalate(decision.escalate.level, decision.escalate.reason));
  return html`
    <span class="decision">
      <span class="actions-taken">${parts.length ? parts.join(' · ') : t.nothing}</span>
      ${decision.reason && html`<span class="reason">${t.because(decision.reason)}</span>`}
    </span>`;
}

/// A plugin's log lines, as it wrote them.
export function Logs({ logs }) {
  if (!logs || logs.length === 0) return null;
  return html`<ul class="logs">${logs.map((line) => html`<li class=${`log ${line.level}`}><code>${line.level}</code> ${line.message}</li>`)}</ul>`;
}

/// One entry of the decision log.
export function DecisionEntry({ entry }) {
  const t = texts.plugins;
  const who = entry.plugin ? `${entry.plugin.name || entry.plugin.id} ${entry.plugin.version || ''}`.trim() : t.sources[entry.source.split(':')[0]] || entry.source;
  return html`
    <li class=${entry.failure ? 'entry failed' : 'entry'}>
      <span class="meta">
        <time datetime=${entry.created_at}>${new Date(entry.created_at).toLocaleString()}</time>
        ${' · '}${who}${' · '}${entry.applied ? t.applied : t.notApplied}
        ${entry.hook === 'on-overdue' ? ` · ${t.overdue}` : ''}
        ${entry.duration_us != null ? ` · ${t.cost(entry.duration_us, entry.fuel)}` : ''}
      </span>
      ${entry.failure ? html`<span class="error">${t.failed(entry.failure)}</span>` : html`<${DecisionSummary} decision=${entry.decision} />`}
      <${Logs} logs=${entry.logs} />
    </li>`;
}

function Upload({ slug, limits, onUploaded }) {
  const t = texts.plugins.upload;
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const submit = async (event) => {
    event.preventDefault();
    const form = event.target;
    setBusy(true);
    setError(null);
    try {
      // The browser writes the multipart framing (and its boundary) itself.
      const uploaded = await api('POST', `${clientPath(slug)}/plugins`, new FormData(form), '');
      form.reset();
      onUploaded(uploaded);
    } catch (failure) {
      setError(failure.message);
    } finally {
      setBusy(false);
    }
  };
  return html`
    <form class="upload" onSubmit=${submit}>
      <h2>${t.title}</h2>
      <label for="component">${t.component}</label>
      <input id="component" name="component" type="file" accept=".wasm,application/wasm" required />
      <div class="pair">
        <span><label for="plugin-name">${t.name}</label><input id="plugin-name" name="name" required /></span>
        <span><label for="plugin-version">${t.version}</label><input id="plugin-version" name="version" required /></span>
      </div>
      <label for="plugin-config">${t.config}</label>
      <textarea id="plugin-config" name="config" rows="4" spellcheck="false">{}</textarea>
      <p class="hint">${t.hint}</p>
      ${limits && html`<p class="hint limits">${t.limits(limits)}</p>`}
      <button type="submit" disabled=${busy}>${busy ? t.busy : t.submit}</button>
      <pre class="error" role="alert">${error}</pre>
    </form>`;
}

/// The actions a version in `state` offers.
const ACTIONS = {
  inactive: ['activate', 'shadow'],
  shadow: ['activate', 'deactivate'],
  active: ['rollback', 'disable', 'deactivate'],
  disabled: ['activate', 'deactivate'],
};

function Replay({ replay, onClose }) {
  const t = texts.plugins.replay;
  const [all, setAll] = useState(false);
  const report = replay.replay;
  const items = all ? report.items : report.items.filter((item) => item.differs || item.candidate_failure);
  return html`
    <section class="replay" aria-labelledby="replay-title">
      <h2 id="replay-title">${t.title(replay.plugin.name, replay.plugin.version)}</h2>
      <p class="summary" role="status">${t.summary(report.messages, report.differing, report.failures)}</p>
      <label><input type="checkbox" checked=${all} onChange=${(event) => setAll(event.target.checked)} /> ${t.showAll}</label>
      <button type="button" onClick=${onClose}>${t.close}</button>
      ${items.length === 0 && html`<p class="empty">${t.same}</p>`}
      <ol class="replay-items">
        ${items.map((item) => html`
          <li key=${item.message_id} class=${item.differs ? 'differs' : ''} data-message=${item.message_id}>
            <p class="text">${item.text}</p>
            <div class="sides">
              <div class="candidate"><h3>${t.candidate}</h3>
                ${item.candidate_failure ? html`<span class="error">${item.candidate_failure}</span>` : html`<${DecisionSummary} decision=${item.candidate} />`}
                <${Logs} logs=${item.candidate_logs} />
              </div>
              <div class="active"><h3>${t.active(item.active_source)}</h3><${DecisionSummary} decision=${item.active} /></div>
            </div>
          </li>`)}
      </ol>
    </section>`;
}

function Plugins({ me, slug }) {
  const t = texts.plugins;
  const [versions, setVersions] = useState(null);
  const [limits, setLimits] = useState(null);
  const [decisions, setDecisions] = useState(null);
  const [replay, setReplay] = useState(null);
  const [busy, setBusy] = useState(null);
  const [status, setStatus] = useState(null);
  const [error, setError] = useState(null);

  const load = useCallback(async () => {
    try {
      const list = await api('GET', `${clientPath(slug)}/plugins`);
      setVersions(list.plugins);
      setLimits(list.limits);
      setDecisions(await api('GET', `${clientPath(slug)}/decisions?limit=20`));
      setError(null);
    } catch (failure) {
      setError(failure.message);
    }
  }, [slug]);
  useEffect(() => { load(); }, [load]);

  const act = async (plugin, action) => {
    setBusy(`${plugin.id}/${action}`);
    setError(null);
    setStatus(null);
    try {
      if (action === 'replay') {
        setReplay(await api('POST', `${clientPath(slug)}/plugins/${plugin.id}/replay`, { messages: 50 }));
      } else {
        const changed = await api('POST', `${clientPath(slug)}/plugins/${plugin.id}/${action}`);
        setStatus(t.changed(changed.name, changed.version, t.states[changed.state]));
      }
      load();
    } catch (failure) {
      setError(failure.message);
    } finally {
      setBusy(null);
    }
  };
  const more = async () => {
    const page = await api('GET', `${clientPath(slug)}/decisions?limit=20&cursor=${encodeURIComponent(decisions.next_cursor)}`);
    setDecisions({ decisions: decisions.decisions.concat(page.decisions), next_cursor: page.next_cursor });
  };

  return html`
    <main class="plugins">
      <h1>${t.title}</h1>
      ${me.clients.length > 1 && html`
        <div class="toolbar"><${ClientPicker} me=${me} slug=${slug} label=${t.client} to=${(other) => `#/plugins/${other}`} /></div>`}
      <p class="status" role="status">${status}</p>
      <pre class="error" role="alert">${error}</pre>
      <div class="columns">
        <section class="versions" aria-labelledby="versions-title">
          <h2 id="versions-title">${t.versions}</h2>
          ${versions && versions.length === 0 && html`<p class="empty">${t.none}</p>`}
          <table>
            <thead><tr><th>${t.name}</th><th>${t.state}</th><th>${t.health}</th><th>${t.uploaded}</th><th><span class="visually-hidden">${t.actions}</span></th></tr></thead>
            <tbody>
              ${(versions || []).map((plugin) => html`
                <tr key=${plugin.id} data-id=${plugin.id} data-state=${plugin.state}>
                  <td><strong>${plugin.name}</strong> ${plugin.version}<br /><code class="muted">${plugin.sha256.slice(0, 12)}</code>${plugin.contract && html` <span class="muted contract">${plugin.contract}</span>`}</td>
                  <td><span class=${`state ${plugin.state}`}>${t.states[plugin.state]}</span>${plugin.state_reason && html`<br /><span class="muted">${plugin.state_reason}</span>`}</td>
                  <td>${plugin.consecutive_failures ? html`<span class="error">${t.failures(plugin.consecutive_failures)}</span>` : t.healthy}</td>
                  <td>${new Date(plugin.created_at).toLocaleString()}</td>
                  <td><div class="actions">
                    <button type="button" class="replay" disabled=${busy !== null} onClick=${() => act(plugin, 'replay')}>${busy === `${plugin.id}/replay` ? t.replaying : t.actionNames.replay}</button>
                    ${ACTIONS[plugin.state].map((action) => html`
                      <button type="button" class=${action} disabled=${busy !== null} onClick=${() => act(plugin, action)}>${t.actionNames[action]}</button>`)}
                  </div></td>
                </tr>`)}
            </tbody>
          </table>
        </section>
        <${Upload} slug=${slug} limits=${limits} onUploaded=${(plugin) => { setStatus(t.uploaded_(plugin.name, plugin.version, plugin.warnings)); load(); }} />
      </div>
      ${replay && html`<${Replay} replay=${replay} onClose=${() => setReplay(null)} />`}
      <section class="decisions" aria-labelledby="log-title">
        <h2 id="log-title">${t.log}</h2>
        ${decisions && decisions.decisions.length === 0 && html`<p class="empty">${t.noDecisions}</p>`}
        <ol class="decision-log">${(decisions ? decisions.decisions : []).map((entry) => html`<${DecisionEntry} entry=${entry} />`)}</ol>
        ${decisions && decisions.next_cursor && html`<button type="button" onClick=${more}>${t.more}</button>`}
      </section>
    </main>`;
}

/// `#/plugins` and `#/plugins/<client>`.
export function PluginsPage({ me, slug }) {
  const chosen = slug || (me.clients[0] && me.clients[0].slug);
  if (!chosen) return html`<main class="plugins"><p class="empty">${texts.kb.noClients}</p></main>`;
  return html`<${Plugins} key=${chosen} me=${me} slug=${chosen} />`;
}
