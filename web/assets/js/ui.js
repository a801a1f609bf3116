// What every page shares: the site header (links by role, sign out), building
// elements without innerHTML (no markup injection from data), the page's notice
// area (errors in words, announced to screen readers) and small formatters.

import { ApiProblem, session, signOut } from './api.js';

/** `el('a', {href: '/', class: 'x'}, 'text', child)`; attributes starting with `on` become listeners. */
export function el(tag, attrs = {}, ...children) {
  const node = tag === 'svg' || attrs.svg ? document.createElementNS('http://www.w3.org/2000/svg', tag) : document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false || name === 'svg') continue;
    if (name.startsWith('on') && typeof value === 'function') node.addEventListener(name.slice(2), value);
    else if (name === 'text') node.textContent = value;
    else node.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** An SVG element (same rules as `el`). */
export function svg(tag, attrs = {}, ...children) {
  return el(tag, { ...attrs, svg: true }, ...children);
}

/** Replaces the content of `node`. */
export function put(node, ...children) {
  node.replaceChildren();
  for (const child of children.flat()) {
    if (child !== undefined && child !== null && child !== false) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function noticeArea() {
  let area = document.getElementById('notice');
  if (!area) {
    area = el('div', { id: 'notice', class: 'notice', role: 'status', 'aria-live': 'polite' });
    (document.querySelector('main') || document.body).prepend(area);
  }
  return area;
}

/** Shows a message at the top of the page: kind `error`, `ok` or `info`. */
export function notify(message, kind = 'info') {
  const area = noticeArea();
  area.className = `notice notice-${kind}`;
  area.setAttribute('role', kind === 'error' ? 'alert' : 'status');
  put(area, message);
  if (kind === 'error') area.scrollIntoView({ block: 'nearest' });
}

export function clearNotice() {
  const area = document.getElementById('notice');
  if (area) {
    area.className = 'notice';
    put(area);
  }
}

/** Shows an error (problem documents in words); returns it for chaining. */
export function fail(error) {
  if (error && error.name === 'AbortError') return error;
  const message = error instanceof ApiProblem ? error.message : `Something went wrong: ${error?.message || error}`;
  notify(message, 'error');
  if (!(error instanceof ApiProblem)) console.error(error);
  return error;
}

/** Runs an async page entry point, showing any failure in words. */
export function start(main) {
  const run = async () => {
    try {
      const user = await header();
      // Tests (and styles) can tell when the session is known.
      document.documentElement.dataset.session = user ? 'signed-in' : 'signed-out';
      await main();
    } catch (e) {
      fail(e);
    }
  };
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', run);
  else run();
}

/** Fills `<header id="site">` with the links the visitor's role can use. */
export async function header() {
  const bar = document.getElementById('site');
  const user = await session().catch(() => null);
  if (!bar) return user;
  const links = [el('a', { href: '/', class: 'brand' }, 'boxoffice'), el('a', { href: '/' }, 'Events')];
  if (user) {
    links.push(el('a', { href: '/app/tickets' }, 'My tickets'));
    if (user.user_type === 'organizer' || user.user_type === 'admin') links.push(el('a', { href: '/app/organizer' }, 'Organize'));
    if (['staff', 'organizer', 'admin'].includes(user.user_type)) links.push(el('a', { href: '/app/scan' }, 'Scan'));
    links.push(
      el('span', { class: 'who', title: user.email }, user.name),
      el('button', {
        type: 'button',
        class: 'link',
        id: 'sign-out',
        onclick: async () => {
          await signOut().catch(() => {});
          location.assign('/');
        },
      }, 'Sign out'),
    );
  } else {
    const next = encodeURIComponent(location.pathname + location.search);
    links.push(el('a', { href: `/app/signin?next=${next}` }, 'Sign in'), el('a', { href: `/app/signup?next=${next}` }, 'Create account'));
  }
  put(bar, el('nav', { 'aria-label': 'Site' }, links));
  return user;
}

/** `2026-12-24T19:00:00Z` → local date and time for people. */
export function when(iso) {
  if (!iso) return '—';
  const date = new Date(iso);
  return date.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
}

/** The path segment after `prefix` in the URL, e.g. the event id of `/app/events/{id}`. */
export function pathId(prefix) {
  const rest = location.pathname.slice(prefix.length).split('/')[0];
  return decodeURIComponent(rest || '');
}

/** Reads a form's fields into an object of strings. */
export function fields(form) {
  return Object.fromEntries(new FormData(form).entries());
}
