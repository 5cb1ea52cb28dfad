// People (admins): who signs in and with which role, which clients each assistant serves, new people and
// passwords (a generated one shown once), disabling, and every API token with its revocation.
import { html, useState, useEffect, useCallback } from './vendor/htm-preact-standalone-3.1.1.js';
import { api } from './api.js';
import { texts } from './texts.js';

/// The clients an assistant serves, as checkboxes saved together.
function Serves({ person, clients, onSaved }) {
  const t = texts.people;
  const [chosen, setChosen] = useState(person.clients || []);
  const [busy, setBusy] = useState(false);
  const changed = chosen.slice().sort().join() !== (person.clients || []).slice().sort().join();
  const toggle = (slug) => setChosen(chosen.includes(slug) ? chosen.filter((s) => s !== slug) : chosen.concat(slug));
  const save = async () => {
    setBusy(true);
    try {
      await onSaved(person, chosen);
    } finally {
      setBusy(false);
    }
  };
  return html`
    <fieldset class="serves">
      <legend class="visually-hidden">${t.servesFor(person.name)}</legend>
      ${clients.map((client) => html`
        <label><input type="checkbox" name=${`serves-${client.slug}`} checked=${chosen.includes(client.slug)} onChange=${() => toggle(client.slug)} /> ${client.name}</label>`)}
      ${changed && html`<button type="button" class="save-serves" disabled=${busy} onClick=${save}>${t.saveServes}</button>`}
    </fieldset>`;
}

function NewPerson({ clients, onCreated }) {
  const t = texts.people;
  const [role, setRole] = useState('assistant');
  const [error, setError] = useState(null);
  const submit = async (event) => {
    event.preventDefault();
    const form = new FormData(event.target);
    const body = { email: form.get('email'), name: form.get('name'), role };
    if (role === 'client') body.client = form.get('client');
    if (form.get('password')) body.password = form.get('password');
    setError(null);
    try {
      const created = await api('POST', '/api/v1/people', body);
      event.target.reset();
      onCreated(created);
    } catch (failure) {
      setError(failure.message);
    }
  };
  return html`
    <form class="new-person" onSubmit=${submit}>
      <h2>${t.add}</h2>
      <label for="person-email">${t.email}</label><input id="person-email" name="email" type="email" required />
      <label for="person-name">${t.name}</label><input id="person-name" name="name" required />
      <label for="person-role">${t.role}</label>
      <select id="person-role" name="role" value=${role} onChange=${(event) => setRole(event.target.value)}>
        ${['assistant', 'client', 'admin'].map((r) => html`<option value=${r}>${t.roles[r]}</option>`)}
      </select>
      ${role === 'client' && html`
        <label for="person-client">${t.client}</label>
        <select id="person-client" name="client" required>${clients.map((client) => html`<option value=${client.slug}>${client.name}</option>`)}</select>`}
      <label for="person-password">${t.password}</label>
      <input id="person-password" name="password" type="password" autocomplete="new-password" minlength="12" />
      <p class="hint">${t.passwordHint}</p>
      <button type="submit">${t.create}</button>
      <p class="error" role="alert">${error}</p>
    </form>`;
}

export function People({ me }) {
  const t = texts.people;
  const [people, setPeople] = useState(null);
  const [tokens, setTokens] = useState(null);
  const [secret, setSecret] = useState(null);
  const [status, setStatus] = useState(null);
  const [error, setError] = useState(null);

  const load = useCallback(async () => {
    try {
      setPeople((await api('GET', '/api/v1/people')).people);
      setTokens((await api('GET', '/api/v1/tokens')).tokens);
    } catch (failure) {
      setError(failure.message);
    }
  }, []);
  useEffect(() => { load(); }, [load]);
  // Every change answers with what changed; the page reads the lists again.
  const run = async (work, done) => {
    setError(null);
    setStatus(null);
    setSecret(null);
    try {
      const answer = await work();
      done(answer);
      load();
    } catch (failure) {
      setError(failure.message);
    }
  };
  const names = Object.fromEntries((people || []).map((person) => [person.id, person.name]));
  const clientName = Object.fromEntries(me.clients.map((client) => [client.slug, client.name]));

  return html`
    <main class="people">
      <h1>${t.title}</h1>
      <p class="status" role="status">${status}</p>
      ${secret && html`<p class="notice secret" role="alert">${secret.label} <code>${secret.value}</code> ${t.shownOnce}</p>`}
      <pre class="error" role="alert">${error}</pre>
      <div class="columns">
        <section aria-labelledby="people-title">
          <h2 id="people-title">${t.everyone}</h2>
          <table>
            <thead><tr><th>${t.name}</th><th>${t.role}</th><th>${t.access}</th><th>${t.lastSignIn}</th><th><span class="visually-hidden">${t.actions}</span></th></tr></thead>
            <tbody>
              ${(people || []).map((person) => html`
                <tr key=${person.id} data-email=${person.email} class=${person.disabled ? 'disabled' : ''}>
                  <td><strong>${person.name}</strong><br /><span class="muted">${person.email}</span></td>
                  <td>${t.roles[person.role]}${person.disabled ? html`<br /><span class="error">${t.disabled}</span>` : ''}</td>
                  <td>${person.role === 'assistant'
                    ? html`<${Serves} key=${(person.clients || []).join()} person=${person} clients=${me.clients}
                        onSaved=${(who, clients) => run(() => api('PUT', `/api/v1/people/${who.id}/clients`, { clients }), () => setStatus(t.servesSaved(who.name)))} />`
                    : person.role === 'client' ? clientName[person.client] || person.client : t.allClients}</td>
                  <td>${person.last_sign_in_at ? new Date(person.last_sign_in_at).toLocaleString() : t.never}</td>
                  <td><div class="actions">
                    <button type="button" class="reset-password" onClick=${() => run(
                      () => api('PUT', `/api/v1/people/${person.id}/password`, {}),
                      (answer) => setSecret({ label: t.newPassword(person.name), value: answer.generated_password }),
                    )}>${t.resetPassword}</button>
                    ${!person.disabled && (!me.person || me.person.id !== person.id) && html`
                      <button type="button" class="disable" onClick=${() => run(() => api('POST', `/api/v1/people/${person.id}/disable`), () => setStatus(t.disabledNow(person.name)))}>${t.disable}</button>`}
                  </div></td>
                </tr>`)}
            </tbody>
          </table>
        </section>
        <${NewPerson} clients=${me.clients} onCreated=${(created) => {
          setStatus(t.created(created.name));
          if (created.generated_password) setSecret({ label: t.newPassword(created.name), value: created.generated_password });
          load();
        }} />
      </div>
      <section class="tokens" aria-labelledby="tokens-title">
        <h2 id="tokens-title">${t.tokens}</h2>
        <form class="toolbar" onSubmit=${(event) => {
          event.preventDefault();
          const name = new FormData(event.target).get('token-name');
          run(() => api('POST', '/api/v1/tokens', { name }), (answer) => { event.target.reset(); setSecret({ label: t.newToken(answer.name), value: answer.token }); });
        }}>
          <label>${t.tokenName} <input name="token-name" required /></label>
          <button type="submit">${t.createToken}</button>
        </form>
        <table>
          <thead><tr><th>${t.tokenName}</th><th>${t.role}</th><th>${t.actsAs}</th><th>${t.created_}</th><th><span class="visually-hidden">${t.actions}</span></th></tr></thead>
          <tbody>
            ${(tokens || []).map((token) => html`
              <tr key=${token.id} data-token=${token.id} class=${token.revoked_at ? 'revoked' : ''}>
                <td>${token.name}<br /><code class="muted">${token.id}</code></td>
                <td>${t.roles[token.role]}${token.client ? ` · ${clientName[token.client] || token.client}` : ''}</td>
                <td>${token.person ? names[token.person] || token.person : t.integration}</td>
                <td>${new Date(token.created_at).toLocaleString()}</td>
                <td>${token.revoked_at
                  ? html`<span class="muted">${t.revoked}</span>`
                  : html`<button type="button" class="revoke" onClick=${() => run(() => api('DELETE', `/api/v1/tokens/${token.id}`), () => setStatus(t.revokedNow(token.name)))}>${t.revoke}</button>`}</td>
              </tr>`)}
          </tbody>
        </table>
      </section>
    </main>`;
}
