// Reports: the figures of the reports API over a chosen period, as charts per day or week, per client and per
// assistant, with the same figures as CSV. Admins see everything; a client's people their client's; an
// assistant her own work (the server decides: the page only asks).
import { html, useState, useEffect, useRef, useMemo } from './vendor/htm-preact-standalone-3.1.1.js';
import uPlot from './vendor/uPlot-1.6.32.esm.js';
import { api } from './api.js';
import { texts } from './texts.js';

const DAY = 86400000;
const isoDay = (ms) => new Date(ms).toISOString().slice(0, 10);

/// "4 min", "1 h 20 min": a response time.
function took(ms) {
  if (ms == null) return '–';
  const minutes = Math.round(ms / 60000);
  if (minutes < 1) return `${Math.round(ms / 1000)} s`;
  if (minutes < 60) return `${minutes} min`;
  return `${Math.floor(minutes / 60)} h ${String(minutes % 60).padStart(2, '0')} min`;
}
const share = (value) => (value == null ? '–' : `${Math.round(value * 100)} %`);

/// A uPlot time chart of `series` over the periods; sized to its box, redrawn when the window resizes.
function Chart({ title, series, x, ys }) {
  const box = useRef(null);
  useEffect(() => {
    const width = () => Math.max(280, box.current.clientWidth);
    const plot = new uPlot({
      title,
      width: width(),
      height: 220,
      scales: { x: { time: true } },
      series: [{}, ...series.map((s) => ({ label: s.label, stroke: s.colour, width: 2, points: { show: true } }))],
      // uPlot fills in what an option leaves out, but not an option given as undefined.
      axes: [{}, series[0].axis ? { size: 60, values: series[0].axis } : { size: 60 }],
    }, [x, ...ys], box.current);
    const resized = () => plot.setSize({ width: width(), height: 220 });
    window.addEventListener('resize', resized);
    return () => {
      window.removeEventListener('resize', resized);
      plot.destroy();
    };
  }, [x, ys]);
  return html`<figure class="chart" ref=${box} aria-label=${title}></figure>`;
}

function Totals({ figures }) {
  const t = texts.reports;
  const escalations = Object.values(figures.escalations_by_level).reduce((a, b) => a + b, 0);
  const cards = [
    [t.conversations, figures.conversations],
    [t.messagesIn, figures.messages.inbound],
    [t.messagesOut, figures.messages.outbound],
    [t.firstResponse, took(figures.first_response.median_ms)],
    [t.firstResponseOpen, took(figures.first_response.median_open_ms)],
    [t.withinTarget, share(figures.first_response.within_target_share)],
    [t.acknowledged, share(figures.acknowledgements.share)],
    [t.fromSuggestion, share(figures.suggestions.share)],
    [t.escalations, escalations],
  ];
  return html`<dl class="totals">${cards.map(([label, value]) => html`<div><dt>${label}</dt><dd>${value}</dd></div>`)}</dl>`;
}

export function Reports({ me }) {
  const t = texts.reports;
  const today = Date.now();
  const [query, setQuery] = useState({ from: isoDay(today - 29 * DAY), to: isoDay(today + DAY), client: '', group_by: 'day' });
  const [report, setReport] = useState(null);
  const [error, setError] = useState(null);
  const params = new URLSearchParams(Object.entries(query).filter(([, value]) => value));
  useEffect(() => {
    api('GET', `/api/v1/reports/summary?${params}`).then((found) => { setReport(found); setError(null); }, (failure) => setError(failure.message));
  }, [params.toString()]);
  const set = (key) => (event) => setQuery({ ...query, [key]: event.target.value });

  const periods = report ? report.periods : [];
  // Built once per report, so the charts are drawn once per report.
  const chart = useMemo(() => {
    const minutes = (ms) => (ms == null ? null : ms / 60000);
    return {
      x: periods.map((p) => Date.parse(p.start) / 1000),
      messages: [periods.map((p) => p.messages.inbound), periods.map((p) => p.messages.outbound)],
      response: [periods.map((p) => minutes(p.first_response.median_ms)), periods.map((p) => minutes(p.first_response.p90_ms))],
    };
  }, [report]);
  const names = Object.fromEntries(me.clients.map((client) => [client.slug, client.name]));
  const csv = new URLSearchParams(params);
  csv.set('format', 'csv');
  return html`
    <main class="reports">
      <h1>${t.title}</h1>
      <form class="toolbar" onSubmit=${(event) => event.preventDefault()}>
        <label>${t.from} <input type="date" name="from" value=${query.from} onChange=${set('from')} /></label>
        <label>${t.to} <input type="date" name="to" value=${query.to} onChange=${set('to')} /></label>
        ${me.clients.length > 1 && html`
          <label>${t.client}
            <select name="client" value=${query.client} onChange=${set('client')}>
              <option value="">${t.allClients}</option>
              ${me.clients.map((client) => html`<option value=${client.slug}>${client.name}</option>`)}
            </select>
          </label>`}
        <label>${t.groupBy}
          <select name="group_by" value=${query.group_by} onChange=${set('group_by')}>
            <option value="day">${t.byDay}</option>
            <option value="week">${t.byWeek}</option>
          </select>
        </label>
        <a class="button csv" href=${`/api/v1/reports/summary?${csv}`} download="recado-report.csv">${t.csv}</a>
      </form>
      ${me.role === 'assistant' && html`<p class="muted">${t.ownWork}</p>`}
      <pre class="error" role="alert">${error}</pre>
      ${report && html`
        <${Totals} figures=${report.total} />
        <div class="charts">
          <${Chart} title=${t.messagesChart} x=${chart.x} ys=${chart.messages}
            series=${[{ label: t.messagesIn, colour: '#0b6bcb' }, { label: t.messagesOut, colour: '#1e7b34' }]} />
          <${Chart} title=${t.responseChart} x=${chart.x} ys=${chart.response}
            series=${[{ label: t.median, colour: '#0b6bcb', axis: (u, values) => values.map((v) => `${v} min`) }, { label: t.p90, colour: '#a15c00' }]} />
        </div>
        ${report.clients.length > 0 && html`
          <section aria-labelledby="by-client"><h2 id="by-client">${t.byClient}</h2>
            <table class="figures">
              <thead><tr><th>${t.client}</th><th>${t.conversations}</th><th>${t.messagesIn}</th><th>${t.messagesOut}</th><th>${t.firstResponse}</th><th>${t.withinTarget}</th><th>${t.acknowledged}</th><th>${t.fromSuggestion}</th></tr></thead>
              <tbody>${report.clients.map((row) => html`
                <tr data-client=${row.client}><th scope="row">${names[row.client] || row.client}</th><td>${row.conversations}</td><td>${row.messages.inbound}</td><td>${row.messages.outbound}</td>
                  <td>${took(row.first_response.median_ms)}</td><td>${share(row.first_response.within_target_share)}</td><td>${share(row.acknowledgements.share)}</td><td>${share(row.suggestions.share)}</td></tr>`)}
              </tbody>
            </table>
          </section>`}
        ${report.assistants.length > 0 && html`
          <section aria-labelledby="by-assistant"><h2 id="by-assistant">${t.byAssistant}</h2>
            <table class="figures">
              <thead><tr><th>${t.assistant}</th><th>${t.firstResponses}</th><th>${t.firstResponse}</th><th>${t.replies}</th><th>${t.fromSuggestion}</th><th>${t.edited}</th></tr></thead>
              <tbody>${report.assistants.map((row) => html`
                <tr><th scope="row">${row.name || row.assistant}</th><td>${row.first_response.count}</td><td>${took(row.first_response.median_ms)}</td>
                  <td>${row.suggestions.replies}</td><td>${share(row.suggestions.share)}</td><td>${row.suggestions.edited}</td></tr>`)}
              </tbody>
            </table>
          </section>`}
        <details class="by-period"><summary>${t.byPeriod}</summary>
          <table class="figures">
            <thead><tr><th>${t.period}</th><th>${t.conversations}</th><th>${t.messagesIn}</th><th>${t.messagesOut}</th><th>${t.firstResponse}</th><th>${t.fromSuggestion}</th></tr></thead>
            <tbody>${periods.map((p) => html`
              <tr><th scope="row">${p.start.slice(0, 10)}</th><td>${p.conversations}</td><td>${p.messages.inbound}</td><td>${p.messages.outbound}</td>
                <td>${took(p.first_response.median_ms)}</td><td>${share(p.suggestions.share)}</td></tr>`)}
            </tbody>
          </table>
        </details>`}
    </main>`;
}
