// The knowledge base: a client's articles, searched and listed; the editor with a live preview of the
// filled-in template; a stale edit shown as a conflict with both versions; the zip of the kb/ file layout
// out and in. Admins write; everyone else who may see the client reads.
import { html, useState, useEffect, useCallback, useMemo } from './vendor/htm-preact-standalone-3.1.1.js';
import { api, debounce } from './api.js';
import { texts } from './texts.js';

const kbPath = (slug) => `/api/v1/clients/${encodeURIComponent(slug)}/kb`;

/// Who changed an article: "you" for the person looking, else the actor as the server names it.
const author = (me, actor) => (me.person && actor === me.person.id ? texts.kb.you : actor);

/// The picker of the client whose page is shown: choosing one goes to the address `to` gives for it.
export function ClientPicker({ me, slug, to, label = texts.kb.client }) {
  return html`
    <label>${label}
      <select name="client" value=${slug} onChange=${(event) => { location.hash = to(event.target.value); }}>
        ${me.clients.map((client) => html`<option value=${client.slug}>${client.name}</option>`)}
      </select>
    </label>`;
}

function ArticleList({ me, slug }) {
  const t = texts.kb;
  const [query, setQuery] = useState('');
  const [page, setPage] = useState(null);
  const [error, setError] = useState(null);
  const [imported, setImported] = useState(null);
  const admin = me.role === 'admin';

  const load = useCallback(async (q, cursor) => {
    const params = new URLSearchParams({ limit: '50' });
    if (q) params.set('q', q);
    if (cursor) params.set('cursor', cursor);
    try {
      const found = await api('GET', `${kbPath(slug)}/articles?${params}`);
      setPage((before) => (cursor && before ? { ...found, articles: before.articles.concat(found.articles) } : found));
      setError(null);
    } catch (failure) {
      setError(failure.message);
    }
  }, [slug]);
  const search = useMemo(() => debounce((q) => load(q), 250), [load]);
  useEffect(() => { load(query); }, [load]);

  const upload = async (event) => {
    const file = event.target.files[0];
    event.target.value = '';
    if (!file) return;
    setImported(null);
    setError(null);
    try {
      setImported(await api('POST', `${kbPath(slug)}/import`, file, 'application/zip'));
      load(query);
    } catch (failure) {
      setError(failure.message);
    }
  };

  return html`
    <main class="kb">
      <h1>${t.title}</h1>
      <div class="toolbar">
        <${ClientPicker} me=${me} slug=${slug} to=${(other) => `#/kb/${other}`} />
        <label>${t.search}
          <input type="search" name="q" value=${query}
            onInput=${(event) => { setQuery(event.target.value); search(event.target.value); }} />
        </label>
        ${admin && html`<a class="button" href=${`#/kb/${slug}/new`}>${t.create}</a>`}
        <a class="button" href=${`${kbPath(slug)}/export`} download=${`${slug}-kb.zip`}>${t.export}</a>
        ${admin && html`<label class="button">${t.import}
          <input class="visually-hidden" type="file" name="archive" accept=".zip,application/zip" onChange=${upload} />
        </label>`}
      </div>
      ${imported && html`<p class="notice" role="status">${t.imported(imported)}</p>`}
      ${error && html`<pre class="error" role="alert">${error}</pre>`}
      ${page && page.articles.length === 0 && html`<p class="empty">${query ? t.noMatch : t.empty}</p>`}
      <ul class="articles">
        ${(page ? page.articles : []).map((article) => html`
          <li key=${article.id} data-id=${article.id}>
            <a href=${`#/kb/${slug}/a/${article.id}`}>${article.title}</a>
            <span class="language">${article.language}</span>
            ${article.shortcut && html`<code>/${article.shortcut}</code>`}
            <span class="tags">${article.tags.join(', ')}</span>
            <span class="updated">${t.updated(new Date(article.updated_at).toLocaleString(), author(me, article.updated_by))}</span>
          </li>`)}
      </ul>
      ${page && page.next_cursor && html`<button type="button" onClick=${() => load(query, page.next_cursor)}>${t.more}</button>`}
    </main>`;
}

/// The form's fields from an article (or empty for a new one), and back.
const EMPTY = { language: '', title: '', questions: '', body: '', tags: '', shortcut: '' };
function toForm(article) {
  return {
    language: article.language,
    title: article.title,
    questions: article.questions.join('\n'),
    body: article.body,
    tags: article.tags.join(', '),
    shortcut: article.shortcut || '',
  };
}
function fromForm(form) {
  const lines = (text) => text.split('\n').map((line) => line.trim()).filter(Boolean);
  return {
    language: form.language.trim(),
    title: form.title,
    questions: lines(form.questions),
    body: form.body,
    tags: form.tags.split(',').map((tag) => tag.trim()).filter(Boolean),
    shortcut: form.shortcut.trim() || null,
  };
}

/// One version of an article, side by side with the other in a conflict.
function Version({ heading, form }) {
  const t = texts.kb;
  return html`
    <section class="version">
      <h3>${heading}</h3>
      <dl>
        <dt>${t.fields.title}</dt><dd>${form.title}</dd>
        <dt>${t.fields.language}</dt><dd>${form.language}</dd>
        <dt>${t.fields.questions}</dt><dd class="pre">${form.questions}</dd>
        <dt>${t.fields.body}</dt><dd class="pre">${form.body}</dd>
        <dt>${t.fields.tags}</dt><dd>${form.tags}</dd>
        <dt>${t.fields.shortcut}</dt><dd>${form.shortcut}</dd>
      </dl>
    </section>`;
}

function Editor({ me, slug, id }) {
  const t = texts.kb;
  const admin = me.role === 'admin';
  // `saved` is the version the form started from: the one a save names.
  const [saved, setSaved] = useState(id ? undefined : null);
  const [form, setForm] = useState(EMPTY);
  const [languages, setLanguages] = useState([]);
  const [sample, setSample] = useState(t.sampleContact);
  const [preview, setPreview] = useState(null);
  const [conflict, setConflict] = useState(null);
  const [confirmDelete, setConfirmDelete] = useState(false);
  const [status, setStatus] = useState(null);
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    api('GET', `/api/v1/clients/${encodeURIComponent(slug)}`).then((client) => {
      setLanguages(client.languages);
      if (!id) setForm((before) => ({ ...before, language: before.language || client.languages[0] || '' }));
    }, () => {});
    if (id) {
      api('GET', `${kbPath(slug)}/articles/${encodeURIComponent(id)}`).then((article) => {
        setSaved(article);
        setForm(toForm(article));
      }, (failure) => {
        setSaved(null);
        setError(failure.status === 404 ? t.notFound : failure.message);
      });
    }
  }, [slug, id]);

  const ask = useMemo(() => debounce(async (body, name) => {
    if (!body.trim()) return setPreview(null);
    try {
      setPreview(await api('POST', `${kbPath(slug)}/preview`, { body, contact_name: name || null }));
    } catch (failure) {
      setPreview({ text: null, problem: { line: null, message: failure.message } });
    }
  }, 300), [slug]);
  useEffect(() => { ask(form.body, sample); }, [form.body, sample]);

  const set = (field) => (event) => setForm({ ...form, [field]: event.target.value });
  const save = async (event, over) => {
    if (event) event.preventDefault();
    setBusy(true);
    setError(null);
    setStatus(null);
    try {
      const content = fromForm(form);
      const article = saved
        ? await api('PUT', `${kbPath(slug)}/articles/${encodeURIComponent(saved.id)}`, { ...content, version: (over || saved).version })
        : await api('POST', `${kbPath(slug)}/articles`, content);
      setSaved(article);
      setForm(toForm(article));
      setConflict(null);
      setStatus(t.savedVersion(article.version));
      if (!saved) location.hash = `#/kb/${slug}/a/${article.id}`;
    } catch (failure) {
      if (failure.status === 409 && failure.body && failure.body.current) setConflict(failure.body.current);
      else setError(failure.message);
    } finally {
      setBusy(false);
    }
  };
  const takeTheirs = () => {
    setSaved(conflict);
    setForm(toForm(conflict));
    setConflict(null);
  };
  const remove = async () => {
    try {
      await api('DELETE', `${kbPath(slug)}/articles/${encodeURIComponent(saved.id)}?version=${saved.version}`);
      location.hash = `#/kb/${slug}`;
    } catch (failure) {
      setConfirmDelete(false);
      if (failure.status === 409 && failure.body && failure.body.current) setConflict(failure.body.current);
      else setError(failure.message);
    }
  };

  if (saved === undefined) return null;
  if (id && saved === null) {
    return html`<main class="kb"><a href=${`#/kb/${slug}`}>${t.back}</a><p class="error" role="alert">${error}</p></main>`;
  }
  const problem = preview && preview.problem;
  return html`
    <main class="kb editor">
      <nav><a href=${`#/kb/${slug}`}>${t.back}</a></nav>
      <h1>${saved ? saved.title : t.create}</h1>
      ${saved && html`<p class="meta">${t.version(saved.version)} · ${t.updated(new Date(saved.updated_at).toLocaleString(), author(me, saved.updated_by))}</p>`}
      ${conflict && html`
        <section class="conflict" role="alert" aria-labelledby="conflict-title">
          <h2 id="conflict-title">${t.conflict.title}</h2>
          <p>${t.conflict.explain(conflict.version, author(me, conflict.updated_by), new Date(conflict.updated_at).toLocaleString())}</p>
          <div class="versions">
            <${Version} heading=${t.conflict.theirs(conflict.version)} form=${toForm(conflict)} />
            <${Version} heading=${t.conflict.yours} form=${form} />
          </div>
          <div class="actions">
            <button type="button" class="keep-mine" onClick=${() => save(null, conflict)} disabled=${busy}>${t.conflict.keepMine}</button>
            <button type="button" class="take-theirs" onClick=${takeTheirs}>${t.conflict.takeTheirs}</button>
          </div>
        </section>`}
      <div class="columns">
        <form class="article" onSubmit=${save}>
          <label for="title">${t.fields.title}</label>
          <input id="title" name="title" value=${form.title} onInput=${set('title')} readonly=${!admin} required />
          <label for="language">${t.fields.language}</label>
          <input id="language" name="language" list="languages" value=${form.language} onInput=${set('language')} readonly=${!admin} required />
          <datalist id="languages">${languages.map((language) => html`<option value=${language} />`)}</datalist>
          <label for="questions">${t.fields.questions}</label>
          <textarea id="questions" name="questions" rows="3" value=${form.questions} onInput=${set('questions')} readonly=${!admin}></textarea>
          <p class="hint">${t.questionsHint}</p>
          <label for="body">${t.fields.body}</label>
          <textarea id="body" name="body" rows="8" value=${form.body} onInput=${set('body')} readonly=${!admin}
            aria-invalid=${problem ? 'true' : 'false'} aria-describedby="preview-problem" required></textarea>
          <p class="hint">${t.bodyHint}</p>
          <label for="tags">${t.fields.tags}</label>
          <input id="tags" name="tags" value=${form.tags} onInput=${set('tags')} readonly=${!admin} />
          <label for="shortcut">${t.fields.shortcut}</label>
          <input id="shortcut" name="shortcut" value=${form.shortcut} onInput=${set('shortcut')} readonly=${!admin} />
          ${admin && html`
            <div class="actions">
              <button type="submit" disabled=${busy || !!conflict}>${busy ? t.saving : t.save}</button>
              ${saved && !confirmDelete && html`<button type="button" onClick=${() => setConfirmDelete(true)}>${t.delete}</button>`}
              ${saved && confirmDelete && html`
                <span role="alert">${t.reallyDelete}</span>
                <button type="button" class="danger" onClick=${remove}>${t.deleteYes}</button>
                <button type="button" onClick=${() => setConfirmDelete(false)}>${t.deleteNo}</button>`}
            </div>`}
          <p class="status" role="status">${status}</p>
          <p class="error" role="alert">${error}</p>
        </form>
        <section class="preview" aria-label=${t.preview}>
          <h2>${t.preview}</h2>
          <label for="sample">${t.sampleLabel}</label>
          <input id="sample" name="sample" value=${sample} onInput=${(event) => setSample(event.target.value)} />
          ${problem
            ? html`<p id="preview-problem" class="error template-problem">${problem.line ? t.problemAt(problem.line, problem.message) : problem.message}</p>`
            : html`<p id="preview-problem" class="filled">${preview ? preview.text : ''}</p>`}
        </section>
      </div>
    </main>`;
}

/// `#/kb`, `#/kb/<client>`, `#/kb/<client>/new`, `#/kb/<client>/a/<article>`.
export function KnowledgeBase({ me, slug, article, creating }) {
  const chosen = slug || (me.clients[0] && me.clients[0].slug);
  if (!chosen) return html`<main class="kb"><p class="empty">${texts.kb.noClients}</p></main>`;
  if (article || creating) return html`<${Editor} key=${`${chosen}/${article || ''}`} me=${me} slug=${chosen} id=${article} />`;
  return html`<${ArticleList} key=${chosen} me=${me} slug=${chosen} />`;
}
