// Organizer: the live dashboard of one event (`/app/organizer/events/{id}`).
// Over `watch()` (live.js, with the token so `stats` frames come every 2 s): the
// tiles (#stat-sold/held/free from the seat counts; #stat-revenue, #stat-orders,
// #stat-orders-minute from the stats), the per-section table #sections, the
// orders-per-minute chart #orders-chart (a rolling series sampled on every stats
// frame, last 30 minutes, kept in sessionStorage across reloads) and the seat map
// #seatmap filling up (seatmap.js, the buyer page's renderer, with `interactive:
// false`: one role=img summarised in words; zoom buttons #map-zoom-*). Also the
// sales summary, the orders list #orders with its CSV export #csv (fetched with
// the token, saved through a Blob URL), staff assignment by email or pasted user
// id (#staff-form, #staff-email, #staff-list), blocking seats (#block-form) and
// publish / close / cancel.

import { api, ApiProblem, money, requireSession } from './api.js';
import { el, fail, notify, pathId, put, start, svg, when } from './ui.js';
import { watch } from './live.js';
import { createSeatMap } from './seatmap.js';
import { lifecycleButtons, statusBadge } from './organizer.js';

const $ = (id) => document.getElementById(id);
const ORDERS_PER_PAGE = 20;
const WINDOW_MS = 30 * 60 * 1000;
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

let eventId = null;
let event = null;
let currency = 'JPY';
const sections = new Map(); // name → counts
let stream = null;

// ---- tiles and sections ------------------------------------------------------------

function setStat(id, value, text) {
  const node = $(id);
  node.dataset.value = String(value);
  node.textContent = text ?? Number(value).toLocaleString();
}

function renderCounts() {
  const total = { capacity: 0, available: 0, held: 0, sold: 0, blocked: 0 };
  for (const c of sections.values()) for (const k of Object.keys(total)) total[k] += Number(c[k] || 0);
  const pct = (n) => (total.capacity ? `${Math.round((n / total.capacity) * 1000) / 10}% of ${total.capacity.toLocaleString()}` : '');
  setStat('stat-sold', total.sold);
  setStat('stat-held', total.held);
  setStat('stat-free', total.available);
  $('stat-sold-sub').textContent = pct(total.sold);
  $('stat-held-sub').textContent = total.held ? 'in active holds' : 'no active holds';
  $('stat-free-sub').textContent = total.blocked ? `${total.blocked.toLocaleString()} blocked` : pct(total.available);
  const rows = [...sections.entries()].map(([name, c]) => {
    const cap = Number(c.capacity) || 1;
    const part = (cls, n, label) => {
      const span = el('span', { class: cls, title: `${label}: ${Number(n).toLocaleString()}` });
      span.style.width = `${(Number(n) / cap) * 100}%`;
      return span;
    };
    return el('tr', { 'data-section': name },
      el('th', { scope: 'row' }, name, c.general_admission ? el('span', { class: 'muted small' }, ' (standing)') : null),
      el('td', { class: 'num s-sold' }, Number(c.sold).toLocaleString()),
      el('td', { class: 'num s-held' }, Number(c.held).toLocaleString()),
      el('td', { class: 'num s-free' }, Number(c.available).toLocaleString()),
      el('td', { class: 'num s-blocked' }, Number(c.blocked).toLocaleString()),
      el('td', { class: 'num s-capacity' }, Number(c.capacity).toLocaleString()),
      el('td', {}, el('div', { class: 'bar', role: 'img', 'aria-label': `${name}: ${Math.round((Number(c.sold) / cap) * 100)}% sold, ${Number(c.held)} held` },
        part('b-sold', c.sold, 'sold'), part('b-held', c.held, 'held'), part('b-blocked', c.blocked, 'blocked'), part('b-free', c.available, 'free'))),
    );
  });
  put($('sections').tBodies[0], rows);
}

function countsOf(s) {
  return { capacity: s.capacity, available: s.available, held: s.held, sold: s.sold, blocked: s.blocked, general_admission: s.general_admission };
}

// ---- the seat map ------------------------------------------------------------------

/**
 * The buyer page's renderer (seatmap.js) in read-only mode: the seats are no
 * controls and the map reads as one image summarised in words ("Seat map of …:
 * 1,200 free, 30 held, 400 sold"). Created on the first snapshot, fed every frame.
 */
const map = {
  view: null,
  seatMap: null,
  snapshot(body) {
    if (!this.view) {
      const seatMap = this.seatMap || { tiers: [], sections: [] };
      const rowTier = new Map();
      const sectionTier = new Map();
      for (const s of seatMap.sections || []) {
        sectionTier.set(s.name, s.tier);
        for (const r of s.rows || []) if (r.tier) rowTier.set(r.label, r.tier);
      }
      this.view = createSeatMap($('seatmap'), {
        title: event?.title,
        currency,
        tiers: seatMap.tiers || [],
        tierOf: (section, row) => (row && rowTier.get(row)) || sectionTier.get(section) || '',
        interactive: false,
      });
    }
    this.view.snapshot(body);
    $('seatmap').removeAttribute('aria-busy');
  },
  changes(body) {
    this.view?.changes(body);
  },
};

// ---- the orders-per-minute chart -----------------------------------------------------

const series = [];
const storeKey = () => `boxoffice.opm.${eventId}`;

function loadSeries() {
  try {
    const saved = JSON.parse(sessionStorage.getItem(storeKey()) || '[]');
    const since = Date.now() - WINDOW_MS;
    for (const p of saved) if (p && p.t > since && Number.isFinite(p.v)) series.push(p);
  } catch {
    /* nothing saved */
  }
}

function sample(value) {
  const now = Date.now();
  series.push({ t: now, v: Number(value) || 0 });
  while (series.length && series[0].t < now - WINDOW_MS) series.shift();
  try {
    sessionStorage.setItem(storeKey(), JSON.stringify(series));
  } catch {
    /* storage full or off: the chart still works */
  }
  drawChart();
}

function niceMax(v) {
  if (v <= 4) return 4;
  const mag = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * mag) return m * mag;
  return 10 * mag;
}

function drawChart() {
  // Drawn at the box's own width, so labels stay readable on a phone.
  const W = Math.round(Math.min(800, Math.max(300, $('orders-chart').clientWidth || 600)));
  const H = W < 420 ? 200 : 220;
  const left = 40;
  const right = 12;
  const top = 12;
  const bottom = 28;
  const now = series.length ? series[series.length - 1].t : Date.now();
  const span = Math.min(WINDOW_MS, Math.max(5 * 60 * 1000, series.length ? now - series[0].t : 0));
  const t0 = now - span;
  const peak = Math.max(0, ...series.map((p) => p.v));
  const yMax = niceMax(peak);
  const x = (t) => left + ((t - t0) / span) * (W - left - right);
  const y = (v) => top + (1 - v / yMax) * (H - top - bottom);
  const items = [];
  // Horizontal grid and value labels.
  for (let i = 0; i <= 4; i++) {
    const v = (yMax / 4) * i;
    const yy = y(v);
    items.push(svg('line', { x1: left, x2: W - right, y1: yy, y2: yy, class: i === 0 ? 'chart-axis' : 'chart-grid' }));
    items.push(svg('text', { x: left - 6, y: yy + 4, 'text-anchor': 'end', class: 'chart-text' }, Number.isInteger(v) ? v.toLocaleString() : v.toFixed(1)));
  }
  // Time labels: every 1, 2, 5 or 10 minutes, as local hh:mm.
  const fit = Math.max(2, Math.floor((W - left - right) / 64)); // labels that fit side by side
  const stepMin = [1, 2, 5, 10, 15, 30].find((m) => span / (m * 60000) <= Math.min(6, fit)) || 30;
  const step = stepMin * 60000;
  for (let t = Math.ceil(t0 / step) * step; t <= now; t += step) {
    const xx = x(t);
    items.push(svg('line', { x1: xx, x2: xx, y1: H - bottom, y2: H - bottom + 4, class: 'chart-axis' }));
    items.push(svg('text', { x: xx, y: H - 8, 'text-anchor': 'middle', class: 'chart-text' },
      new Date(t).toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' })));
  }
  if (series.length) {
    const pts = series.map((p) => `${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`);
    const last = series[series.length - 1];
    if (series.length > 1) {
      items.push(svg('polygon', { points: `${x(series[0].t).toFixed(1)},${y(0)} ${pts.join(' ')} ${x(last.t).toFixed(1)},${y(0)}`, class: 'chart-area' }));
      items.push(svg('polyline', { points: pts.join(' '), class: 'chart-line' }));
    }
    items.push(svg('circle', { cx: x(last.t), cy: y(last.v), r: 3.5, class: 'chart-dot' }));
  } else {
    items.push(svg('text', { x: W / 2, y: H / 2, 'text-anchor': 'middle', class: 'chart-text' }, 'Waiting for the first figures…'));
  }
  const last = series.length ? series[series.length - 1].v : 0;
  const label = `Orders per minute over the last ${Math.round(span / 60000)} minutes: now ${last}, peak ${peak}.`;
  put($('orders-chart'), svg('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': label, 'data-points': series.length }, svg('title', {}, label), items));
}

// ---- summary, orders, staff ---------------------------------------------------------

async function loadSummary() {
  const s = await api('GET', `/events/${encodeURIComponent(eventId)}/summary`);
  currency = s.currency || currency;
  // The first stats frame is compared with what this summary counted: an order
  // between the two still refreshes the summary and the list.
  if (lastOrders === null) lastOrders = s.orders;
  const line = (term, value, id) => [el('dt', {}, term), el('dd', { id }, value)];
  put($('summary'),
    line('Tickets sold', s.tickets_sold.toLocaleString(), 'sum-sold'),
    line('Checked in', s.tickets_used.toLocaleString(), 'sum-used'),
    line('Tickets cancelled', s.tickets_cancelled.toLocaleString(), 'sum-cancelled'),
    line('Orders', s.orders.toLocaleString(), 'sum-orders'),
    line('Revenue (kept)', money(s.revenue, s.currency), 'sum-revenue'),
    line('Refunded', money(s.refunded, s.currency), 'sum-refunded'),
    s.refunds_pending ? line('Refunds pending', money(s.refunds_pending, s.currency), 'sum-refunds-pending') : null,
    ...s.sections.map((x) => line(`· ${x.section}`, `${x.sold.toLocaleString()} — ${money(x.revenue, s.currency)}`)),
  );
  // Until the first stats frame, the summary fills the money tiles.
  if ($('stat-revenue').dataset.value === undefined) setStat('stat-revenue', s.revenue, money(s.revenue, s.currency));
  if ($('stat-orders').dataset.value === undefined) setStat('stat-orders', s.orders);
  return s;
}

let ordersPage = 1;

async function loadOrders() {
  const out = await api('GET', `/events/${encodeURIComponent(eventId)}/orders?page=${ordersPage}&per_page=${ORDERS_PER_PAGE}`);
  put($('orders').tBodies[0], out.orders.map((o) => el('tr', { 'data-order-id': o.order_id },
    el('td', { class: 'order-when', 'data-label': 'When' }, el('time', { datetime: o.purchased_at, title: when(o.purchased_at) },
      new Date(o.purchased_at).toLocaleString(undefined, { dateStyle: 'short', timeStyle: 'short' }))),
    el('td', { class: 'order-buyer', 'data-label': 'Buyer' }, o.buyer_name, el('br'), el('span', { class: 'muted small' }, o.buyer_email)),
    el('td', { class: 'order-tickets', 'data-label': 'Tickets' }, o.tickets.flatMap((t, i) => [
      i ? el('br') : null,
      `${t.section}${t.seat_number ? ` ${t.seat_number}` : ''}${t.status !== 'valid' ? ' ' : ''}`,
      t.status !== 'valid' ? el('span', { class: `badge ${t.status === 'cancelled' ? 'off' : ''}` }, t.status) : null,
    ])),
    el('td', { class: 'num order-total', 'data-label': 'Total' }, money(o.total, o.currency)),
  )));
  $('orders-state').textContent = out.orders.length ? '' : (ordersPage === 1 ? 'No orders yet.' : 'No more orders.');
  $('orders-page').textContent = `Page ${ordersPage}`;
  $('orders-prev').disabled = ordersPage <= 1;
  $('orders-next').disabled = out.orders.length < ORDERS_PER_PAGE;
}

async function downloadCsv() {
  const button = $('csv');
  button.disabled = true;
  try {
    const response = await api('GET', `/events/${encodeURIComponent(eventId)}/orders`, undefined, { raw: true, headers: { Accept: 'text/csv' } });
    const blob = await response.blob();
    const disposition = response.headers.get('content-disposition') || '';
    const name = (disposition.match(/filename="?([^";]+)"?/) || [])[1] || `orders-${eventId}.csv`;
    const url = URL.createObjectURL(blob);
    const link = el('a', { href: url, download: name, class: 'visually-hidden' }, 'download');
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
    notify(`Downloaded ${name}.`, 'ok');
  } catch (e) {
    fail(e);
  } finally {
    button.disabled = false;
  }
}

async function loadStaff() {
  const staff = await api('GET', `/events/${encodeURIComponent(eventId)}/staff`);
  put($('staff-list'), staff.length
    ? staff.map((s) => el('li', { class: 'staff-item', 'data-staff-id': s.staff_id },
      el('span', {}, el('strong', {}, s.name), ' ', el('span', { class: 'muted small' }, s.email)),
      el('button', { type: 'button', class: 'secondary remove-staff', 'aria-label': `Remove ${s.name} from this event`, onclick: async (ev) => {
        ev.currentTarget.disabled = true;
        try {
          await api('DELETE', `/events/${encodeURIComponent(eventId)}/staff/${encodeURIComponent(s.staff_id)}`);
          notify(`${s.name} no longer scans this event.`, 'ok');
          await loadStaff();
        } catch (e) {
          fail(e);
          ev.currentTarget.disabled = false;
        }
      } }, 'Remove')))
    : el('li', { class: 'muted' }, 'No staff assigned yet: you (the organizer) can scan, and staff you add here can too.'));
}

const EMAIL_RE = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;

/** Assigns a staff member by the email of their account, or by a pasted user id. */
async function addStaff(ev) {
  ev.preventDefault();
  const input = $('staff-email');
  const error = $('staff-email-error');
  error.textContent = '';
  input.removeAttribute('aria-invalid');
  const value = input.value.trim();
  const bad = (message) => {
    error.textContent = message;
    input.setAttribute('aria-invalid', 'true');
    input.focus();
  };
  const byId = UUID_RE.test(value);
  if (!value) return bad('Enter the staff member’s email.');
  if (!byId && !EMAIL_RE.test(value)) return bad('That is not an email address: it looks like sam@example.com.');
  if (!byId && value.length > 254) return bad('That email is too long (at most 254 characters).');
  $('staff-add').disabled = true;
  try {
    await api('POST', `/events/${encodeURIComponent(eventId)}/staff`, byId ? { staff_id: value.toLowerCase() } : { email: value });
    input.value = '';
    notify('Staff member assigned: they can scan this event’s tickets now.', 'ok');
    await loadStaff();
  } catch (e) {
    if (e instanceof ApiProblem && e.code === 'not_staff') {
      bad(byId
        ? 'No staff account has that user id (the user must have the staff role).'
        : `No staff account uses ${value}: check the spelling, and that the account has the staff role.`);
    } else if (e instanceof ApiProblem && e.status >= 400 && e.status < 500) {
      bad(e.message);
      fail(e);
    } else {
      fail(e);
    }
  } finally {
    $('staff-add').disabled = false;
  }
}

/** "A-1 A-2, B-3..B-6" → labels, or an error sentence. */
function seatLabels(text) {
  const out = [];
  for (const part of text.split(/[\s,;]+/).filter(Boolean)) {
    const range = part.match(/^([A-Za-z0-9_.]+)-(\d+)(?:\.\.|–|—)(?:([A-Za-z0-9_.]+)-)?(\d+)$/);
    if (range) {
      const [, row, from, row2, to] = range;
      if (row2 && row2.toUpperCase() !== row.toUpperCase()) return { error: `A range stays within one row: ${part}.` };
      const a = Number(from);
      const b = Number(to);
      if (b < a || b - a >= 1000) return { error: `${part} is not a range of at most 1,000 seats.` };
      for (let n = a; n <= b; n++) out.push(`${row.toUpperCase()}-${n}`);
    } else if (/^[A-Za-z0-9_.]+-\d+$/.test(part)) {
      out.push(part.replace(/^[^-]+/, (r) => r.toUpperCase()));
    } else {
      return { error: `“${part}” is not a seat label like A-12.` };
    }
  }
  if (!out.length) return { error: 'Enter seat labels such as A-1 A-2, or a range A-1..A-10.' };
  if (out.length > 1000) return { error: 'At most 1,000 seats at a time.' };
  return { seats: [...new Set(out)] };
}

async function blockSeats(block) {
  const input = $('block-seats');
  const error = $('block-seats-error');
  error.textContent = '';
  input.removeAttribute('aria-invalid');
  const parsed = seatLabels(input.value);
  if (parsed.error) {
    error.textContent = parsed.error;
    input.setAttribute('aria-invalid', 'true');
    input.focus();
    return;
  }
  try {
    const out = await api('POST', `/events/${encodeURIComponent(eventId)}/seats/${block ? 'block' : 'unblock'}`, { seats: parsed.seats });
    const n = parsed.seats.length;
    notify(block ? `${n} seat${n === 1 ? '' : 's'} taken off sale (${out.blocked.length} blocked in all).` : `${n} seat${n === 1 ? '' : 's'} back on sale (${out.blocked.length} still blocked).`, 'ok');
    input.value = '';
  } catch (e) {
    const taken = e instanceof ApiProblem && Array.isArray(e.problem?.seats) ? e.problem.seats : null;
    if (e instanceof ApiProblem && e.code === 'seats_taken' && taken) {
      const list = taken.slice(0, 10).join(', ') + (taken.length > 10 ? ` and ${taken.length - 10} more` : '');
      const message = `Only free seats can be blocked: ${list} ${taken.length === 1 ? 'is' : 'are'} held or sold. Nothing was blocked.`;
      error.textContent = message;
      notify(message, 'error');
    } else {
      error.textContent = e.message;
      fail(e);
    }
    input.setAttribute('aria-invalid', 'true');
  }
}

// ---- live ----------------------------------------------------------------------------

let lastOrders = null;
let refreshTimer = null;

function ordersChanged() {
  // A new order: refresh the summary and (on page 1) the orders list, at most once a second.
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(() => {
    loadSummary().catch(() => {});
    if (ordersPage === 1) loadOrders().catch(() => {});
  }, 400);
}

function setLive(state, detail) {
  const node = $('live-state');
  node.dataset.state = state;
  node.textContent = state === 'live' ? 'Live' : state === 'reconnecting' ? 'Reconnecting…' : state === 'closed' ? `Not live${detail?.message ? `: ${detail.message}` : ''}` : state;
}

function startLive() {
  if (stream) stream.close();
  stream = watch(eventId, {
    onSnapshot(body) {
      sections.clear();
      for (const s of body.sections) sections.set(s.name, countsOf(s));
      renderCounts();
      map.snapshot(body);
    },
    onChanges(body) {
      for (const s of body.sections || []) sections.set(s.name, countsOf(s));
      renderCounts();
      map.changes(body);
    },
    onStats(stats) {
      currency = stats.currency || currency;
      setStat('stat-revenue', stats.revenue, money(stats.revenue, currency));
      setStat('stat-orders', stats.orders);
      setStat('stat-orders-minute', stats.orders_last_minute);
      $('stat-opm-sub').textContent = `${stats.holds_active.toLocaleString()} active hold${stats.holds_active === 1 ? '' : 's'}`;
      $('stat-orders-sub').textContent = stats.holds_expiring_next_minute ? `${stats.holds_expiring_next_minute} hold(s) expire within a minute` : '';
      sample(stats.orders_last_minute);
      if (lastOrders !== null && stats.orders !== lastOrders) ordersChanged();
      lastOrders = stats.orders;
    },
    onState: setLive,
  }, { withToken: true });
}

function showEvent(e) {
  event = e;
  currency = e.currency || currency;
  $('event-title').textContent = e.title;
  document.title = `${e.title} · Dashboard · boxoffice`;
  put($('event-status'), statusBadge(e.status));
  $('event-when').textContent = `${when(e.event_date)} · ${e.venue_name}`;
  $('edit-link').href = `/app/organizer/events/${encodeURIComponent(e.event_id)}/edit`;
  $('scan-link').href = `/app/scan/${encodeURIComponent(e.event_id)}`;
}

start(async () => {
  await requireSession(['organizer', 'admin']);
  eventId = pathId('/app/organizer/events/');
  if (!UUID_RE.test(eventId)) throw new ApiProblem(404, { code: 'not_found', detail: 'there is no such event' });
  const details = await api('GET', `/events/${encodeURIComponent(eventId)}/details`);
  showEvent(details);
  map.seatMap = details.seat_map;
  if (details.availability) {
    for (const s of details.availability.sections) sections.set(s.section, { ...s.counts, general_admission: s.general_admission });
    renderCounts();
  }
  loadSeries();
  drawChart();
  let resizing = null;
  window.addEventListener('resize', () => {
    clearTimeout(resizing);
    resizing = setTimeout(drawChart, 150);
  });
  const buttons = lifecycleButtons(eventId, {
    getStatus: () => event?.status,
    changed: async (e) => {
      showEvent(e);
      if (e.status === 'published') startLive();
    },
  });
  buttons.refresh();
  $('map-zoom-in').addEventListener('click', () => map.view?.zoomIn());
  $('map-zoom-out').addEventListener('click', () => map.view?.zoomOut());
  $('map-zoom-reset').addEventListener('click', () => map.view?.resetZoom());
  $('csv').addEventListener('click', downloadCsv);
  $('staff-form').addEventListener('submit', addStaff);
  $('block-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    blockSeats(true);
  });
  $('unblock').addEventListener('click', () => blockSeats(false));
  $('orders-prev').addEventListener('click', () => {
    ordersPage = Math.max(1, ordersPage - 1);
    loadOrders().catch(fail);
  });
  $('orders-next').addEventListener('click', () => {
    ordersPage += 1;
    loadOrders().catch(fail);
  });
  if (new URLSearchParams(location.search).get('published')) notify('Published: the event is listed and sells within its sales window. Figures below update live.', 'ok');

  await Promise.all([loadSummary(), loadOrders(), loadStaff()].map((p) => p.catch(fail)));
  if (details.status === 'draft') {
    setLive('idle');
    $('live-state').textContent = 'Draft: publish to start selling';
    if (details.seat_map) {
      // Show the map as it will sell: every seat free.
      const body = {
        sections: details.seat_map.sections.map((s) => ({
          name: s.name,
          general_admission: s.kind === 'general',
          capacity: s.kind === 'general' ? s.capacity : s.rows.reduce((n, r) => n + r.seats, 0),
          available: s.kind === 'general' ? s.capacity : s.rows.reduce((n, r) => n + r.seats, 0),
          held: 0,
          sold: 0,
          blocked: 0,
          rows: s.kind === 'general' ? [] : s.rows.map((r) => ({ label: r.label, first: r.first ?? 1, seats: 'F'.repeat(r.seats) })),
        })),
      };
      for (const s of body.sections) sections.set(s.name, countsOf(s));
      renderCounts();
      map.snapshot(body);
    }
    return;
  }
  startLive();
});
