// The JSON API client every page uses. The access token lives only in this
// module's memory; it is renewed through the HttpOnly, SameSite=Strict refresh
// cookie (`POST /auth/refresh`), never written to storage or a readable cookie. Errors arrive as RFC 9457 problem documents and are thrown as
// `ApiProblem`, whose `message` is a sentence for people.

let accessToken = null;
let currentUser = null;
let refreshing = null;

/** A problem document (or a network failure) turned into an Error. */
export class ApiProblem extends Error {
  constructor(status, problem) {
    super(describe(status, problem));
    this.status = status;
    this.code = problem.code || 'error';
    this.problem = problem;
  }
}

const WORDS = {
  sold_out: 'Sold out: there are no places left.',
  seats_taken: 'Someone else just took one of those seats. Pick others.',
  sale_not_open: 'Tickets are not on sale right now.',
  limit_exceeded: 'That is more tickets than one buyer may have for this event.',
  payment_declined: 'Your card was declined.',
  overloaded: 'The sale is very busy. Trying again in a moment usually works.',
  hold_not_active: 'That hold is no longer active: it expired or was already used.',
  seats_gone: 'Your seats are no longer held. Nothing was charged for them.',
  no_adjacent_seats: 'There are not that many seats side by side. Try fewer, or allow split seats.',
  sale_closed: 'The sale has closed.',
  event_cancelled: 'This event has been cancelled.',
  payment_unavailable: 'Payments are unavailable for a moment. Nothing was charged. Try again shortly.',
  too_many_payment_attempts: 'Too many payment attempts. Wait a few minutes and try again.',
  already_used: 'This ticket has already been used.',
  ticket_cancelled: 'This ticket has been cancelled.',
  invalid_qr: 'This is not a valid ticket code.',
  wrong_event: 'This ticket is for another event.',
  weak_password: 'Choose a longer password (at least 8 characters).',
  invalid_email: 'That does not look like an email address.',
  organizer_not_approved: 'Your organizer account is waiting for approval by an administrator.',
  invalid_credentials: 'That email and password do not match an account.',
  email_taken: 'An account with that email already exists.',
  rate_limited: 'Too many attempts. Wait a minute and try again.',
  token_expired: 'Your session expired. Sign in again.',
  unauthorized: 'Sign in to do that.',
  forbidden: 'Your account may not do that.',
  not_admitted: 'The waiting room has not let you in yet.',
  network: 'The server could not be reached. Check your connection.',
};

function describe(status, problem) {
  const detail = problem.detail ? String(problem.detail) : '';
  const words = WORDS[problem.code];
  if (words && detail && !words.toLowerCase().startsWith(detail.toLowerCase().slice(0, 12))) {
    return `${words} (${detail})`;
  }
  if (words) return words;
  if (detail) return detail.charAt(0).toUpperCase() + detail.slice(1) + (detail.endsWith('.') ? '' : '.');
  return `The server answered ${status}${problem.title ? ` (${problem.title})` : ''}.`;
}

async function parse(response) {
  const type = response.headers.get('content-type') || '';
  if (response.status === 204) return null;
  if (type.includes('json')) return response.json();
  return response.text();
}

// Set while a renewal is in flight (a time, no secret): a page that starts while
// a page that has since gone away is still renewing waits for that renewal's
// cookie rather than present the old one, which the server would take for a
// stolen token and revoke the whole sign-in.
const RENEWING = 'boxoffice-renewing-since';
const RENEWAL_WAIT_MS = 2000;

async function earlierRenewal() {
  const started = Date.now();
  for (;;) {
    const since = Number(localStorage.getItem(RENEWING) || 0);
    if (!since || Date.now() - since > RENEWAL_WAIT_MS || Date.now() - started > RENEWAL_WAIT_MS) return;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/** Renews the access token from the refresh cookie; one renewal at a time per browser. */
export async function refresh() {
  if (!refreshing) {
    const run = async () => {
      await earlierRenewal();
      localStorage.setItem(RENEWING, String(Date.now()));
      // keepalive: a renewal outlives a navigation away, so the rotated cookie it
      // brings back is stored rather than lost.
      const r = await fetch('/auth/refresh', { method: 'POST', credentials: 'same-origin', keepalive: true }).finally(
        () => localStorage.removeItem(RENEWING),
      );
      if (!r.ok) {
        accessToken = null;
        currentUser = null;
        return false;
      }
      const body = await r.json();
      accessToken = body.access_token;
      currentUser = body.user || currentUser;
      return true;
    };
    // Tabs share the cookie and each renewal rotates it: renew one tab at a time.
    const locked = navigator.locks ? navigator.locks.request('boxoffice-refresh', run) : run();
    refreshing = locked.finally(() => {
      refreshing = null;
    });
  }
  return refreshing;
}

/**
 * Calls the API. `body` is sent as JSON; `options.headers` adds headers;
 * `options.raw` returns the Response instead of its parsed body.
 */
export async function api(method, path, body, options = {}) {
  const send = async () => {
    const headers = { Accept: 'application/json', ...(options.headers || {}) };
    if (accessToken) headers.Authorization = `Bearer ${accessToken}`;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    try {
      return await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        credentials: 'same-origin',
        signal: options.signal,
      });
    } catch (e) {
      if (e.name === 'AbortError') throw e;
      throw new ApiProblem(0, { code: 'network' });
    }
  };
  let response = await send();
  if (response.status === 401 && (await refresh())) response = await send();
  if (options.raw && response.ok) return response;
  const parsed = await parse(response);
  if (!response.ok) {
    const problem = parsed && typeof parsed === 'object' ? parsed : { detail: String(parsed || '') };
    throw new ApiProblem(response.status, problem);
  }
  return parsed;
}

/** The access token for callers that must set headers themselves (streams, images). */
export function token() {
  return accessToken;
}

/** Signs in (or up) and keeps the access token. */
export async function signIn(email, password) {
  const body = await api('POST', '/auth/login', { email, password });
  accessToken = body.access_token;
  currentUser = body.user;
  return currentUser;
}

export async function signUp(fields) {
  const body = await api('POST', '/auth/register', fields);
  accessToken = body.access_token;
  currentUser = body.user;
  return currentUser;
}

export async function signOut() {
  try {
    await api('POST', '/auth/logout');
  } finally {
    accessToken = null;
    currentUser = null;
  }
}

/** The signed-in user, or null: renews the token from the cookie on first use. */
export async function session() {
  if (currentUser && accessToken) return currentUser;
  if (!(await refresh())) return null;
  if (!currentUser) currentUser = await api('GET', '/auth/me');
  return currentUser;
}

/** Like `session`, but sends the visitor to the sign-in page (and back) when signed out. */
export async function requireSession(roles) {
  const user = await session();
  if (!user) {
    const back = location.pathname + location.search;
    location.assign(`/app/signin?next=${encodeURIComponent(back)}`);
    return new Promise(() => {});
  }
  if (roles && !roles.includes(user.user_type)) {
    throw new ApiProblem(403, { code: 'forbidden', detail: `this page is for ${roles.join(' or ')} accounts` });
  }
  return user;
}

/** Formats minor units of a currency for people. */
export function money(minor, currency) {
  const code = (currency || 'JPY').toUpperCase();
  try {
    const digits = new Intl.NumberFormat('en', { style: 'currency', currency: code }).resolvedOptions()
      .maximumFractionDigits;
    return new Intl.NumberFormat(undefined, { style: 'currency', currency: code }).format(minor / 10 ** digits);
  } catch {
    return `${minor} ${code}`;
  }
}
