// The public JSON API, as the console calls it: same origin, the session cookie, JSON both ways. A 401 means
// the session ended: listeners of `signedout` show the sign-in again.
export class ApiError extends Error {
  constructor(status, code, message, retryAfter, body) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
    // The whole error answer: a version conflict carries the current article in it.
    this.body = body;
  }
}

export const session = new EventTarget();

/// Sends `body` as JSON (or, given `type`, as it is: a file or a form) and reads the JSON answer.
export async function api(method, path, body, type) {
  const init = { method, credentials: 'same-origin', headers: { Accept: 'application/json' } };
  if (body !== undefined && type !== undefined) {
    if (type) init.headers['Content-Type'] = type;
    init.body = body;
  } else if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (response.status === 204) return null;
  const answer = await response.json().catch(() => null);
  if (!response.ok) {
    const error = answer && answer.error ? answer.error : { code: 'unknown', message: response.statusText };
    if (response.status === 401 && path !== '/api/v1/session') session.dispatchEvent(new Event('signedout'));
    throw new ApiError(response.status, error.code, error.message, Number(response.headers.get('Retry-After')) || 0, answer);
  }
  return answer;
}

/// Calls `fn` once `ms` have passed without another call: a search box or a preview asks once per pause.
export function debounce(fn, ms) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}
