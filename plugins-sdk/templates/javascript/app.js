// The template's rules: acknowledge in the customer's language, route by keywords, escalate urgent messages
// and conversations left waiting. Edit freely; `config.json` holds the texts and words, so one build serves
// many businesses.
//
// recado calls `onMessage` for each customer message and `onOverdue` when a conversation waits past its
// first-response target. Everything a rule needs arrives as arguments: time is `ctx.now`, never a clock, so
// the same message always gets the same decision (what lets recado replay a new version over past messages).
//
// To refuse (the business's defaults then apply and your reason is recorded), throw a string: anything else
// thrown stops the call with a crash instead.

import { log } from 'recado:plugin/host@0.2.0';

export function onMessage(msg, contact, ctx) {
  const config = readConfig(ctx);
  const result = decision('');
  const reasons = [];

  const repeat = config.repeat_after_minutes ?? 120;
  if (acknowledgedWithin(ctx, repeat)) {
    reasons.push(`acknowledged less than ${repeat} minutes ago`);
  } else {
    const [text, which] = acknowledgement(config, msg.language, ctx);
    if (text !== undefined) {
      result.acknowledge = text;
      reasons.push(`${which}: acknowledge`);
    }
  }

  for (const route of config.routes ?? []) {
    if (containsAny(msg.text, route.keywords)) {
      result.queue = route.queue;
      reasons.push(`keywords of ${route.queue}`);
      break;
    }
  }

  if (containsAny(msg.text, config.urgent_keywords ?? [])) {
    const level = config.urgent_level ?? 2;
    result.priority = 'urgent';
    result.tags.push('urgent');
    result.escalate = { level, reason: 'urgent words in the message', notifyOwner: level >= 2 };
    reasons.push('urgent words');
  }

  result.reason = reasons.join('; ') || 'nothing to do';
  log('debug', result.reason);
  return result;
}

export function onOverdue(ctx, waitedSeconds) {
  const config = readConfig(ctx);
  // `u64` arrives as a BigInt.
  const minutes = Number(waitedSeconds) / 60 | 0;
  const result = decision(`waited ${minutes} business minutes for a first reply`);
  result.tags.push('overdue');
  result.escalate = { level: config.overdue_level ?? 1, reason: `no reply after ${minutes} minutes`, notifyOwner: false };
  return result;
}

// The acknowledgement text and which one it is: `open`, `closed_until` with the next opening filled in (on the
// client's clock: `ctx.local` is worked out by recado, no time-zone database needed), or `closed`.
function acknowledgement(config, language, ctx) {
  const texts = config.acknowledge ?? {};
  const local = ctx.local;
  if (local.open) return [pickText(texts.open ?? {}, language, ctx.languages), 'open'];
  const opening = local.nextOpening;
  const until = pickText(texts.closed_until ?? {}, language, ctx.languages);
  if (opening !== undefined && until !== undefined) {
    const days = pickText(config.weekdays ?? {}, language, ctx.languages) ?? [];
    const day = days.length === 7 ? days[opening.weekday - 1] : String(opening.weekday);
    const pad = (n) => String(n).padStart(2, '0');
    const time = `${pad(opening.minuteOfDay / 60 | 0)}:${pad(opening.minuteOfDay % 60)}`;
    return [until.replace('{day}', day).replace('{time}', time), 'closed_until'];
  }
  return [pickText(texts.closed ?? texts.open ?? {}, language, ctx.languages), 'closed'];
}

function readConfig(ctx) {
  try {
    return JSON.parse(ctx.config);
  } catch (error) {
    throw `invalid plugin configuration: ${error}`;
  }
}

// Helpers, as the Rust SDK has them. This runtime has no ICU: no `String.prototype.normalize`, no `\p{..}`
// in regular expressions, no `Intl`. Hence the accent table and the explicit word separators below.

/** An empty decision (no opinion on anything) with a reason. */
export function decision(reason) {
  return { acknowledge: undefined, queue: undefined, assignee: undefined, tags: [], priority: undefined, escalate: undefined, reason };
}

const ACCENTS = {
  à: 'a', á: 'a', â: 'a', ä: 'a', ã: 'a', å: 'a', è: 'e', é: 'e', ê: 'e', ë: 'e', ì: 'i', í: 'i', î: 'i', ï: 'i',
  ò: 'o', ó: 'o', ô: 'o', ö: 'o', õ: 'o', ù: 'u', ú: 'u', û: 'u', ü: 'u', ç: 'c', ñ: 'n', ё: 'е',
};

const ACCENTED = new RegExp(`[${Object.keys(ACCENTS).join('')}]`, 'g');

/** Lower-cases `text` and removes the accents of Latin letters, so `Urgència` and `URGENCIA` compare equal. */
export function fold(text) {
  // One regular-expression pass runs as compiled code; a loop over a 16,000-character message in the
  // interpreter runs out of the call's instruction budget.
  return text.toLowerCase().replace(ACCENTED, (c) => ACCENTS[c]);
}

// Whitespace and punctuation, ASCII and the common Unicode ones: everything else is part of a word.
const SEPARATORS = /[\s!-/:-@[-`{-~\u00a1\u00ab\u00b7\u00bb\u00bf\u2010-\u2027\u3000-\u303f\uff01-\uff0f]+/;

/** The words of `text`, folded. */
export function words(text) {
  return fold(text).split(SEPARATORS).filter((word) => word !== '');
}

/** True if `text` contains one of `keywords` (a word or a phrase) as whole words, ignoring case and accents. */
export function containsAny(text, keywords) {
  // Words joined by single spaces, with a space at each end: a phrase is then a substring search.
  const joined = ` ${words(text).join(' ')} `;
  return keywords.some((keyword) => {
    const wanted = words(keyword);
    return wanted.length > 0 && joined.includes(` ${wanted.join(' ')} `);
  });
}

/** True if the conversation got an automatic acknowledgement within the last `minutes`. */
export function acknowledgedWithin(ctx, minutes) {
  // `s64` times arrive as BigInt.
  return ctx.lastAcknowledgedAt !== undefined && ctx.now - ctx.lastAcknowledgedAt < BigInt(minutes) * 60000n;
}

/** The text for `language`, else the client's first language, else any. */
export function pickText(texts, language, languages) {
  for (const candidate of [language, languages[0]]) {
    if (candidate !== undefined && candidate in texts) return texts[candidate];
  }
  return Object.values(texts)[0];
}
