// The event page (`/app/events/{id}`): the event's details, its live seat map
// (seatmap.js, kept current by live.js), the buyer's selection, holds (chosen
// seats or best available by quantity and section) with a visible countdown,
// and checkout (checkout.js). Signed-out visitors see everything; holding sends
// them to sign in and back, with their selection kept in sessionStorage (seat
// labels only — never a token).

import { ApiProblem, api, money, requireSession, session, token } from './api.js';
import { createSeatMap } from './seatmap.js';
import { setupCheckout } from './checkout.js';
import { admissionFor, admissionHeaders, dropAdmission, queuePage } from './admission.js';
import { el, fail, notify, pathId, put, start, when } from './ui.js';

const eventId = pathId('/app/events/');
const HOLD_KEY = `boxoffice.hold.${eventId}`;
const PENDING_KEY = `boxoffice.pending.${eventId}`;
const TIER_COLOURS = 8;

let details = null;
let map = null;
let hold = null;
let checkout = null;
let timer = null;
let currency = 'JPY';
let perBuyer = 10;
const $ = (id) => document.getElementById(id);

function uuid() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** `A-12` → `Row A seat 12`. */
function seatWords(label) {
  if (!label) return 'General admission';
  const cut = label.lastIndexOf('-');
  return cut > 0 ? `Row ${label.slice(0, cut)} seat ${label.slice(cut + 1)}` : label;
}

function tierClass(code) {
  const i = (details.seat_map?.tiers || []).findIndex((t) => t.code === code);
  return `t${Math.max(0, i) % TIER_COLOURS}`;
}

// ---- details ----------------------------------------------------------------

function renderDetails(d) {
  document.title = `${d.title} · boxoffice`;
  put($('event-title'), d.title);
  put($('event-when'), el('time', { datetime: d.event_date }, when(d.event_date)));
  put($('event-venue'), d.venue_address ? `${d.venue_name} · ${d.venue_address}` : d.venue_name);
  put($('event-description'), d.description || '');
  const sales = d.availability?.window || d.sales_window || {};
  perBuyer = sales.per_buyer_limit || 10;
  const ttl = sales.hold_ttl_secs || 600;
  const minutes = Math.round(ttl / 60);
  const holdFor = ttl < 90 ? `${ttl} seconds` : `${minutes} minutes`;
  const sale = $('event-sale');
  saleOpen = false;
  if (d.status === 'cancelled') {
    put(sale, el('span', { class: 'badge off' }, 'Cancelled'), ' This event has been cancelled.');
  } else if (sales.on_sale) {
    saleOpen = true;
    saleTerms = `up to ${perBuyer} tickets per buyer · seats are held for ${holdFor} while you pay.`;
    renderLeft(d.availability?.total?.available ?? d.available_seats, d.availability?.total?.capacity ?? d.total_seats);
  } else if (sales.opens_at && Date.parse(sales.opens_at) > Date.now()) {
    put(sale, el('span', { class: 'badge' }, 'Not on sale yet'), ` Tickets go on sale ${when(sales.opens_at)}.`);
  } else {
    put(sale, el('span', { class: 'badge off' }, 'Not on sale'), ' Tickets are not on sale right now.');
  }
  const tiers = d.seat_map?.tiers || [];
  put(
    $('tiers'),
    tiers.map((t) =>
      el('li', {}, el('span', { class: `swatch ${tierClass(t.code)}`, 'aria-hidden': 'true' }), el('strong', {}, t.code), ' ', money(t.price, d.currency)),
    ),
  );
  put($('limit-note'), `Up to ${perBuyer} tickets per buyer.`);
  $('best-quantity').max = String(Math.min(50, perBuyer));
}

let saleOpen = false;
let saleTerms = '';
let lastLeft = null;

/** The "on sale, N of M places left" line, kept current by the live counts. */
function renderLeft(left, capacity) {
  if (!saleOpen || left === lastLeft) return;
  lastLeft = left;
  put(
    $('event-sale'),
    el('span', { class: left > 0 ? 'badge on' : 'badge off' }, left > 0 ? 'On sale' : 'Sold out'),
    ` ${left.toLocaleString()} of ${capacity.toLocaleString()} places left · ${saleTerms}`,
  );
}

function renderLegend() {
  const tiers = details.seat_map?.tiers || [];
  const item = (cls, text) => el('li', {}, el('span', { class: `swatch ${cls}`, 'aria-hidden': 'true' }), text);
  put(
    $('legend'),
    tiers.map((t) => item(tierClass(t.code), `Free, tier ${t.code} (${money(t.price, currency)})`)),
    item('selected', 'Selected'),
    item('mine', 'Held for you'),
    item('held', 'Held by someone'),
    item('sold', 'Sold'),
    item('blocked', 'Not on sale'),
  );
}

/** Section → {tier, rows: rowLabel → tier} from the event's seat map. */
function tierLookup(seatMap) {
  const bySection = new Map();
  for (const s of seatMap?.sections || []) {
    const rows = new Map();
    for (const r of s.rows || []) rows.set(r.label, r.tier || s.tier);
    bySection.set(s.name, { tier: s.tier, rows });
  }
  return (section, row) => {
    const s = bySection.get(section);
    if (!s) return seatMap?.tiers?.[0]?.code || '';
    return (row && s.rows.get(row)) || s.tier;
  };
}

let countsPending = false;
function renderCounts(sections) {
  if (countsPending) return;
  countsPending = true;
  requestAnimationFrame(() => {
    countsPending = false;
    const tiers = new Map((details.seat_map?.tiers || []).map((t) => [t.code, t.price]));
    renderLeft(
      sections.reduce((n, s) => n + s.counts.available, 0),
      sections.reduce((n, s) => n + s.counts.capacity, 0),
    );
    put(
      $('section-counts'),
      sections.map((s) =>
        el(
          'tr',
          { 'data-section': s.name },
          el('th', { scope: 'row' }, s.name, s.ga ? el('span', { class: 'muted small' }, ' · general admission') : null),
          el('td', {}, tiers.has(s.tier) ? `${s.tier} · ${money(tiers.get(s.tier), currency)}` : s.tier || ''),
          el('td', { class: 'num' }, s.counts.available.toLocaleString()),
          el('td', { class: 'num' }, s.counts.held.toLocaleString()),
          el('td', { class: 'num' }, s.counts.sold.toLocaleString()),
        ),
      ),
    );
  });
}

function fillSections(sections) {
  const select = $('best-section');
  if (select.options.length > 1) return;
  const tiers = new Map((details.seat_map?.tiers || []).map((t) => [t.code, t.price]));
  for (const s of sections) {
    const price = tiers.has(s.tier) ? money(tiers.get(s.tier), currency) : '';
    select.append(el('option', { value: s.name }, `${s.name}${s.ga ? ' — standing' : ''}${price ? ` (${price})` : ''}`));
  }
}

// ---- selection --------------------------------------------------------------

function renderSelection(labels, dropped) {
  const list = $('selection');
  put(
    list,
    labels.map((label) =>
      el(
        'li',
        { 'data-seat': label },
        el('span', { class: `swatch ${tierClass(map.tierOfSeat(label))}`, 'aria-hidden': 'true' }),
        el('span', { class: 'what' }, `${map.sectionOfSeat(label)} · ${seatWords(label)}`),
        el('span', { class: 'price' }, money(map.priceOf(label), currency)),
        el(
          'button',
          {
            type: 'button',
            class: 'link remove',
            'aria-label': `Remove ${seatWords(label)}`,
            onclick: () => map.unselect(label),
          },
          'Remove',
        ),
      ),
    ),
  );
  $('selection-empty').hidden = labels.length > 0;
  const sum = labels.reduce((n, label) => n + map.priceOf(label), 0);
  put($('total'), labels.length ? `${money(sum, currency)} for ${labels.length} seat${labels.length === 1 ? '' : 's'}` : '—');
  if (dropped && dropped.length) {
    notify(`${dropped.map(seatWords).join(', ')} ${dropped.length === 1 ? 'was' : 'were'} just taken by someone else and left your selection.`, 'error');
  }
}

// ---- holds ------------------------------------------------------------------

async function signInFirst(pending) {
  sessionStorage.setItem(PENDING_KEY, JSON.stringify(pending));
  await requireSession();
}

async function makeHold(body, button) {
  if (hold) {
    notify('You already hold seats for this event: pay for them or release them first.', 'error');
    $('hold-heading').focus();
    return;
  }
  if (!(await session())) {
    await signInFirst(body);
    return;
  }
  button.disabled = true;
  button.setAttribute('aria-busy', 'true');
  try {
    const headers = { 'Idempotency-Key': uuid(), ...admissionHeaders(eventId) };
    const h = await api('POST', `/events/${encodeURIComponent(eventId)}/holds`, body, { headers });
    dropAdmission(eventId);
    const ttl = Date.parse(h.expires_at) - Date.parse(h.created_at);
    map.clearSelection();
    setHold(h, Date.now() + (Number.isFinite(ttl) ? ttl : 600_000));
    const n = h.seats.length || h.quantity;
    notify(`${n} ${n === 1 ? 'place is' : 'places are'} held for you. Pay before the time runs out.`, 'ok');
    $('hold-heading').focus();
  } catch (e) {
    if (e instanceof ApiProblem && e.status === 401) {
      await signInFirst(body);
      return;
    }
    if (e instanceof ApiProblem && e.code === 'not_admitted') {
      // The sale has a waiting room and this buyer has no (valid) admission.
      dropAdmission(eventId);
      notify('This sale has a waiting room. Taking you to it…', 'info');
      location.assign(queuePage(eventId));
      return;
    }
    fail(e);
  } finally {
    button.disabled = false;
    button.removeAttribute('aria-busy');
  }
}

function setHold(h, deadline) {
  hold = h;
  sessionStorage.setItem(HOLD_KEY, h.hold_id);
  map.setMine(h.seats || []);
  const panel = $('hold-panel');
  panel.hidden = false;
  panel.classList.remove('expired');
  $('confirmation').hidden = true;
  put($('hold-heading'), 'Your seats are held');
  const items = h.seats.length
    ? h.seats.map((label) =>
        el(
          'li',
          { 'data-seat': label },
          el('span', { class: 'swatch mine', 'aria-hidden': 'true' }),
          el('span', { class: 'what' }, `${map.sectionOfSeat(label)} · ${seatWords(label)}`),
          el('span', { class: 'price' }, money(map.priceOf(label), h.currency)),
        ),
      )
    : [el('li', {}, el('span', { class: 'swatch mine', 'aria-hidden': 'true' }), el('span', { class: 'what' }, `${h.section || 'General admission'} × ${h.quantity}`))];
  put($('held-seats'), items);
  put($('hold-total'), money(h.amount, h.currency));
  $('release').hidden = false;
  checkout.show(h);
  startCountdown(deadline);
}

function clearHold() {
  clearInterval(timer);
  timer = null;
  hold = null;
  sessionStorage.removeItem(HOLD_KEY);
  map.setMine([]);
  checkout.hide();
}

function startCountdown(deadline) {
  clearInterval(timer);
  const box = $('countdown');
  const clock = $('countdown-clock');
  const words = $('countdown-words');
  const label = box.querySelector('.countdown-label');
  box.classList.remove('warning', 'expired');
  put(label, 'Time left to pay');
  let lastSecond = -1;
  let lastMinute = -1;
  const tick = () => {
    const left = deadline - Date.now();
    if (left <= 0) {
      expired();
      return;
    }
    const s = Math.ceil(left / 1000);
    if (s !== lastSecond) {
      lastSecond = s;
      put(clock, `${String(Math.floor(s / 60)).padStart(2, '0')}:${String(s % 60).padStart(2, '0')}`);
    }
    // Screen readers hear the time once a minute, not every second.
    const minute = s <= 60 ? 0 : Math.ceil(s / 60);
    if (minute !== lastMinute) {
      lastMinute = minute;
      if (minute === 0) {
        box.classList.add('warning');
        put(label, 'Less than a minute left — pay now');
        put(words, 'Less than a minute left to pay.');
      } else {
        put(words, `${minute} minute${minute === 1 ? '' : 's'} left to pay.`);
      }
    }
  };
  tick();
  timer = setInterval(tick, 250);
}

function expired() {
  clearHold();
  const box = $('countdown');
  box.classList.remove('warning');
  box.classList.add('expired');
  put(box.querySelector('.countdown-label'), 'Your hold has expired');
  put($('countdown-clock'), '00:00');
  put($('countdown-words'), 'Your hold has expired. The seats went back on sale.');
  put($('hold-heading'), 'Your hold expired');
  $('hold-panel').classList.add('expired');
  $('release').hidden = true;
  notify('Your hold expired and the seats went back on sale. Pick seats again to buy.', 'error');
}

async function release() {
  if (!hold) return;
  const button = $('release');
  button.disabled = true;
  try {
    await api('DELETE', `/holds/${encodeURIComponent(hold.hold_id)}`);
    clearHold();
    $('hold-panel').hidden = true;
    notify('Released: the seats are back on sale.', 'ok');
    map.focus();
  } catch (e) {
    fail(e);
    if (e instanceof ApiProblem && (e.status === 404 || e.status === 409)) {
      clearHold();
      $('hold-panel').hidden = true;
    }
  } finally {
    button.disabled = false;
  }
}

/** A hold made before a reload (same tab) is picked up again. */
async function restoreHold() {
  const id = sessionStorage.getItem(HOLD_KEY);
  if (!id) return;
  try {
    const response = await api('GET', `/holds/${encodeURIComponent(id)}`, undefined, { raw: true });
    // The Date header has whole seconds: trust this clock unless it is clearly off.
    const serverNow = Date.parse(response.headers.get('date') || '') || Date.now();
    const skew = Math.abs(serverNow - Date.now()) < 2000 ? 0 : serverNow - Date.now();
    const h = await response.json();
    const left = Date.parse(h.expires_at) - (Date.now() + skew);
    if (h.status === 'active' && left > 0 && h.event_id === eventId) setHold(h, Date.now() + left);
    else sessionStorage.removeItem(HOLD_KEY);
  } catch {
    sessionStorage.removeItem(HOLD_KEY);
  }
}

/** After signing in from this page: what the visitor was about to hold. */
function restorePending() {
  const raw = sessionStorage.getItem(PENDING_KEY);
  if (!raw) return;
  sessionStorage.removeItem(PENDING_KEY);
  let pending;
  try {
    pending = JSON.parse(raw);
  } catch {
    return;
  }
  if (hold) return;
  if (Array.isArray(pending.seats)) {
    const free = pending.seats.filter((label) => map.isFree(label));
    map.select(free);
    if (free.length) {
      notify(
        free.length === pending.seats.length
          ? 'You are signed in and your seats are still selected: hold them now.'
          : 'You are signed in. Some of your seats were taken meanwhile; the others are still selected.',
        'info',
      );
      $('hold').focus();
    } else {
      notify('You are signed in, but the seats you picked were taken meanwhile. Pick others.', 'error');
    }
  } else if (pending.quantity) {
    $('best-quantity').value = String(pending.quantity);
    if (pending.section) $('best-section').value = pending.section;
    $('best-split').checked = !!pending.allow_split;
    notify('You are signed in: hold the best available seats now.', 'info');
    $('best-hold').focus();
  }
}

// ---- paid ---------------------------------------------------------------------

function showConfirmation(heading, text, tickets) {
  $('hold-panel').hidden = true;
  const box = $('confirmation');
  box.hidden = false;
  put($('confirmation-heading'), heading);
  put($('confirmation-text'), text);
  put(
    $('confirmation-tickets'),
    (tickets || []).map((t) =>
      el(
        'li',
        { class: 'confirmed-ticket', 'data-ticket-id': t.ticket_id },
        el('span', { class: 'what' }, `${t.section} · ${seatWords(t.seat_number)}`),
        el('span', { class: 'price' }, money(t.price, currency)),
      ),
    ),
  );
  $('confirmation-heading').focus();
}

function paid(purchase) {
  clearHold();
  const n = purchase.tickets.length;
  showConfirmation(
    n === 1 ? 'Your ticket is booked' : `Your ${n} tickets are booked`,
    `Paid ${money(purchase.amount, purchase.currency)}. Order ${purchase.order_id.slice(-8)}. Your tickets and their QR codes are in My tickets.`,
    purchase.tickets,
  );
  notify('Payment complete. Enjoy the show!', 'ok');
}

function processing() {
  clearHold();
  showConfirmation('Payment processing', 'Payment processing, your tickets will appear in My tickets in a moment.', []);
  notify('Payment processing, your tickets will appear in My tickets.', 'info');
}

// ---- live ----------------------------------------------------------------------

function liveState(s) {
  const badge = $('live-state');
  badge.className = `badge live-state ${s === 'live' ? 'on' : 'off'}`;
  put(badge, s === 'live' ? 'Live' : s === 'closed' ? 'Not live' : 'Reconnecting…');
}

async function goLive() {
  const live = await import('./live.js').catch(() => null);
  if (live && typeof live.watch === 'function') {
    live.watch(
      eventId,
      {
        onSnapshot: (body) => map.snapshot(body),
        onChanges: (body) => map.changes(body),
        onState: liveState,
      },
      { withToken: false },
    );
    return;
  }
  // No live stream module: poll the seat states instead.
  liveState('live');
  setInterval(async () => {
    if (document.hidden) return;
    try {
      map.snapshot(await api('GET', `/events/${encodeURIComponent(eventId)}/seats`));
      liveState('live');
    } catch {
      liveState('reconnecting');
    }
  }, 3000);
}

// ---- page ------------------------------------------------------------------------

start(async () => {
  if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(eventId)) {
    put($('event-title'), 'No such event');
    throw new ApiProblem(404, { code: 'not_found', detail: 'This address does not name an event' });
  }
  const path = `/events/${encodeURIComponent(eventId)}`;
  const seatsRequest = api('GET', `${path}/seats`).catch((e) => e);
  try {
    details = await api('GET', `${path}/details`);
  } catch (e) {
    put($('event-title'), e instanceof ApiProblem && e.status === 404 ? 'No such event' : 'The event could not be loaded');
    $('seatmap').removeAttribute('aria-busy');
    throw e;
  }
  currency = details.currency;
  renderDetails(details);
  const room = details.sales_window?.waiting_room;
  if (room?.enabled && details.status === 'published') {
    const kept = admissionFor(eventId);
    notify(
      kept
        ? `It is your turn: choose your seats before ${when(kept.expires_at)}.`
        : el('span', {}, 'This sale has a waiting room: ', el('a', { href: queuePage(eventId), id: 'join-queue' }, 'join it'), ' to get your turn to choose seats.'),
      kept ? 'ok' : 'info',
    );
  }
  renderLegend();
  const seats = await seatsRequest;
  const container = $('seatmap');
  if (seats instanceof Error) {
    container.removeAttribute('aria-busy');
    if (seats instanceof ApiProblem && seats.status === 409) {
      put(container, el('p', { class: 'muted' }, 'This event has no seat map yet.'));
      return;
    }
    throw seats;
  }
  map = createSeatMap(container, {
    title: details.title,
    currency,
    tiers: details.seat_map?.tiers || [],
    tierOf: tierLookup(details.seat_map),
    limit: () => Math.min(50, perBuyer),
    onSelectionChange: renderSelection,
    onRefused: (message) => notify(message, 'error'),
    onCounts: renderCounts,
    onGeneral: (section) => {
      $('best-section').value = section;
      $('best-panel').scrollIntoView({ block: 'nearest' });
      $('best-quantity').focus();
      notify(`${section} is general admission: choose how many tickets, then hold them.`, 'info');
    },
  });
  const built = map.snapshot(seats);
  container.removeAttribute('aria-busy');
  fillSections(map.sections());
  renderSelection([]);
  // Interactive: built, attached and painted once.
  await new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve, 0)));
  const ready = performance.now();
  container.dataset.ready = 'true';
  container.dataset.readyMs = String(Math.round(ready));
  console.info(`seat map: ${map.size()} seats, built in ${Math.round(built)} ms, interactive ${Math.round(ready)} ms after navigation`);

  $('zoom-in').addEventListener('click', () => map.zoomIn());
  $('zoom-out').addEventListener('click', () => map.zoomOut());
  $('zoom-reset').addEventListener('click', () => map.resetZoom());
  $('clear-selection').addEventListener('click', () => map.clearSelection());
  $('hold').addEventListener('click', () => {
    const seatsChosen = map.selected();
    if (!seatsChosen.length) {
      notify('Pick one or more free seats on the map first (or use best available).', 'error');
      map.focus();
      return;
    }
    makeHold({ seats: seatsChosen }, $('hold'));
  });
  $('best-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const quantity = Number($('best-quantity').value);
    if (!Number.isInteger(quantity) || quantity < 1 || quantity > Math.min(50, perBuyer)) {
      notify(`Choose 1 to ${Math.min(50, perBuyer)} tickets.`, 'error');
      $('best-quantity').focus();
      return;
    }
    const body = { quantity };
    if ($('best-section').value) body.section = $('best-section').value;
    if ($('best-split').checked) body.allow_split = true;
    makeHold(body, $('best-hold'));
  });
  $('release').addEventListener('click', release);

  checkout = await setupCheckout({
    getHold: () => hold,
    onPaid: paid,
    onProcessing: processing,
    onHoldGone: () => {
      clearHold();
      $('hold-panel').hidden = true;
    },
  });
  goLive();
  // The header has already renewed the session: a token means signed in.
  if (token()) {
    await restoreHold();
    restorePending();
  }
});
