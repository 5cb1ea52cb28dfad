// The public JSON API, as the console calls it: same origin, the session cookie, JSON both ways. A 401 means
// the session ended: listeners of `signedout` show the sign-in again.
export class ApiError extends Error {
  constructor(status, code, message, retryAfter) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

export const session = new EventTarget();

export async function api(method, path, body) {
  const init = { method, credentials: 'same-origin', headers: { Accept: 'application/json' } };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (response.status === 204) return null;
  const answer = await response.json().catch(() => null);
  if (!response.ok) {
    const error = answer && answer.error ? answer.error : { code: 'unknown', message: response.statusText };
    if (response.status === 401 && path !== '/api/v1/session') session.dispatchEvent(new Event('signedout'));
    throw new ApiError(response.status, error.code, error.message, Number(response.headers.get('Retry-After')) || 0);
  }
  return answer;
}
