// The event list (`/`): a search box and filters over `GET /events/search`,
// results as cards linking to each event page, paged. The form mirrors the
// address bar's query string, so a search can be shared, bookmarked or reloaded.

import { api, money } from './api.js';
import { el, fail, put, start, when } from './ui.js';

const PER_PAGE = 12;
const FIELDS = ['q', 'category', 'from', 'to', 'min_price', 'max_price', 'sort', 'available'];

let page = 1;
let total = 0;
let inFlight = null;
const categories = new Set();

/** `2026-12-24` (a local calendar day) → RFC 3339 at local midnight. */
function dayStart(value, plusDays = 0) {
  const [y, m, d] = value.split('-').map(Number);
  if (!y || !m || !d) return null;
  return new Date(y, m - 1, d + plusDays).toISOString();
}

/** The form's filters as the API's query string. */
function query(form) {
  const v = (name) => form.elements[name].value.trim();
  const params = new URLSearchParams();
  if (v('q')) params.set('q', v('q'));
  if (v('category')) params.set('category', v('category'));
  if (v('from')) params.set('from', dayStart(v('from')));
  // "To" is inclusive for people: events before the next day's midnight.
  if (v('to')) params.set('to', dayStart(v('to'), 1));
  for (const name of ['min_price', 'max_price']) {
    const n = v(name);
    if (n !== '' && Number.isFinite(Number(n)) && Number(n) >= 0) params.set(name, String(Math.floor(Number(n))));
  }
  if (v('sort')) params.set('sort', v('sort'));
  if (form.elements.available.checked) params.set('available', 'true');
  params.set('page', String(page));
  params.set('per_page', String(PER_PAGE));
  return params;
}

/** The form as the page's own query string (dates as typed, page if not 1). */
function ownQuery(form) {
  const params = new URLSearchParams();
  for (const name of FIELDS) {
    const input = form.elements[name];
    if (input.type === 'checkbox') {
      if (input.checked) params.set(name, 'true');
    } else if (input.value.trim()) params.set(name, input.value.trim());
  }
  if (page > 1) params.set('page', String(page));
  return params;
}

function fromAddress(form) {
  const params = new URLSearchParams(location.search);
  for (const name of FIELDS) {
    const input = form.elements[name];
    const value = params.get(name);
    if (input.type === 'checkbox') input.checked = value === 'true';
    else if (value !== null) input.value = value;
  }
  page = Math.max(1, Number.parseInt(params.get('page') || '1', 10) || 1);
  const filtered = FIELDS.some((name) => name !== 'q' && params.has(name));
  if (filtered) document.getElementById('filters').open = true;
}

function priceRange(event) {
  const low = event.base_price;
  const high = event.max_price;
  if (low === null || low === undefined) return null;
  if (high === null || high === undefined || high === low) return money(low, event.currency);
  return `${money(low, event.currency)} – ${money(high, event.currency)}`;
}

function availability(event) {
  const status = event.status;
  if (status === 'cancelled') return el('span', { class: 'badge off' }, 'Cancelled');
  if (status === 'closed') return el('span', { class: 'badge' }, 'Sales closed');
  if (event.available_seats <= 0) return el('span', { class: 'badge off' }, 'Sold out');
  const few = event.total_seats > 0 && event.available_seats / event.total_seats < 0.1;
  return el(
    'span',
    { class: few ? 'badge few' : 'badge on' },
    `${event.available_seats.toLocaleString()} of ${event.total_seats.toLocaleString()} left`,
  );
}

function saleNote(event) {
  const sales = event.sales_window || {};
  const now = Date.now();
  if (sales.opens_at && Date.parse(sales.opens_at) > now) return `On sale from ${when(sales.opens_at)}`;
  if (sales.closes_at && Date.parse(sales.closes_at) < now) return 'Sales have ended';
  return null;
}

function card(event) {
  if (event.category) categories.add(event.category);
  const date = new Date(event.event_date);
  const note = saleNote(event);
  const range = priceRange(event);
  return el(
    'article',
    { class: 'card event-card', 'data-event-id': event.event_id },
    el(
      'div',
      { class: 'event-date', 'aria-hidden': 'true' },
      el('span', { class: 'month' }, date.toLocaleString(undefined, { month: 'short' })),
      el('span', { class: 'day' }, String(date.getDate())),
    ),
    el(
      'div',
      { class: 'event-body' },
      el('h2', {}, el('a', { class: 'event-link', href: `/app/events/${encodeURIComponent(event.event_id)}` }, event.title)),
      el('p', { class: 'event-when' }, el('time', { datetime: event.event_date }, when(event.event_date))),
      el('p', { class: 'event-venue muted' }, event.venue_name),
      el(
        'p',
        { class: 'event-meta' },
        range ? el('span', { class: 'price' }, range) : null,
        availability(event),
        event.category ? el('span', { class: 'badge category' }, event.category) : null,
      ),
      note ? el('p', { class: 'small muted' }, note) : null,
    ),
  );
}

async function search(form, { push = false } = {}) {
  const list = document.getElementById('events');
  const status = document.getElementById('result-status');
  if (inFlight) inFlight.abort();
  const controller = new AbortController();
  inFlight = controller;
  list.setAttribute('aria-busy', 'true');
  const own = ownQuery(form).toString();
  const address = own ? `/?${own}` : '/';
  if (address !== location.pathname + location.search) history[push ? 'pushState' : 'replaceState'](null, '', address);
  try {
    const result = await api('GET', `/events/search?${query(form)}`, undefined, { signal: controller.signal });
    if (controller !== inFlight) return;
    total = result.total;
    const pages = Math.max(1, Math.ceil(total / PER_PAGE));
    if (result.events.length === 0) {
      put(
        list,
        el(
          'div',
          { class: 'card empty' },
          el('p', {}, total > 0 ? 'No events on this page.' : 'No events match your search.'),
          el('p', { class: 'small muted' }, 'Try fewer words or clear the filters.'),
        ),
      );
    } else {
      put(list, result.events.map(card));
    }
    put(status, total === 1 ? '1 event' : `${total.toLocaleString()} events`);
    const pager = document.getElementById('pager');
    pager.hidden = pages <= 1;
    document.getElementById('prev').disabled = page <= 1;
    document.getElementById('next').disabled = page >= pages;
    put(document.getElementById('page-info'), `Page ${page} of ${pages}`);
    put(document.getElementById('categories'), [...categories].sort().map((c) => el('option', { value: c })));
  } catch (e) {
    if (e.name !== 'AbortError') {
      fail(e);
      put(status, '');
    }
  } finally {
    if (controller === inFlight) {
      list.setAttribute('aria-busy', 'false');
      inFlight = null;
    }
  }
}

start(async () => {
  const form = document.getElementById('search');
  fromAddress(form);
  let typing = null;
  const again = () => {
    page = 1;
    search(form);
  };
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    clearTimeout(typing);
    page = 1;
    search(form, { push: true });
  });
  form.elements.q.addEventListener('input', () => {
    clearTimeout(typing);
    typing = setTimeout(again, 350);
  });
  for (const name of ['category', 'from', 'to', 'min_price', 'max_price', 'sort', 'available']) {
    form.elements[name].addEventListener('change', again);
  }
  let restoring = false;
  form.addEventListener('reset', () => {
    // After the browser has cleared the fields (not when going back in history).
    if (!restoring) setTimeout(again, 0);
  });
  document.getElementById('prev').addEventListener('click', () => {
    page = Math.max(1, page - 1);
    search(form, { push: true }).then(() => document.getElementById('events').querySelector('.event-link')?.focus());
  });
  document.getElementById('next').addEventListener('click', () => {
    page += 1;
    search(form, { push: true }).then(() => document.getElementById('events').querySelector('.event-link')?.focus());
  });
  window.addEventListener('popstate', () => {
    restoring = true;
    form.reset();
    restoring = false;
    fromAddress(form);
    search(form);
  });
  await search(form);
});
