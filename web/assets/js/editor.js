// Organizer: create (`/app/organizer/new`) or edit (`/app/organizer/events/{id}/edit`)
// an event. The form #event-form holds the details, the sales window and the
// seat-map builder: price tiers (.tier-row), sections (.section-row: seated rows ×
// seats, or a general-admission pool) with reordering, and a live preview (a
// summary and a small SVG). Row labels are generated (A, B, … continuing across
// sections unless a section's first row is chosen) and checked for uniqueness
// here, before the server's own checks. Saving creates the event
// (`POST /events/create`, map inline) or sends only what changed
// (`PUT /events/{id}/update`); publish / close / cancel are shared with the dashboard.

import { api, ApiProblem, money, requireSession } from './api.js';
import { clearNotice, el, fail, notify, put, start, svg } from './ui.js';
import { fromLocalInput, lifecycleButtons, statusBadge, toLocalInput } from './organizer.js';

const NAME_RE = /^[A-Za-z0-9 _.\-]{1,64}$/;
const MAX_PLACES = 1_000_000;
// The buyer map's tier colours (buyer.css --t0…--t7).
const TIER_COLOURS = ['#1b8a5a', '#8e44ad', '#0f7c8c', '#b0307a', '#6b8e23', '#c0561a', '#5b4bc4', '#8d6e63'];

const $ = (id) => document.getElementById(id);
let uid = 0;
const nextId = (prefix) => `${prefix}-${++uid}`;

// ---- row labels ------------------------------------------------------------------

/**
 * A row label as a counter: letters (A…Z, AA, AB… like spreadsheet columns) or
 * a number with an optional prefix (1, 2…; A1, A2…; R01, R02…). Null otherwise.
 */
function labelIndex(label) {
  if (/^[A-Z]+$/.test(label)) {
    let n = 0;
    for (const c of label) n = n * 26 + (c.charCodeAt(0) - 64);
    return { kind: 'letters', prefix: '', width: 0, n };
  }
  const m = label.match(/^([A-Za-z0-9_.]*?)(\d+)$/);
  if (m) return { kind: 'number', prefix: m[1], width: m[2].length > 1 && m[2].startsWith('0') ? m[2].length : 0, n: Number(m[2]) };
  return null;
}

function labelAt(at, n) {
  if (at.kind === 'number') return at.prefix + String(n).padStart(at.width, '0');
  let s = '';
  while (n > 0) {
    const r = (n - 1) % 26;
    s = String.fromCharCode(65 + r) + s;
    n = Math.floor((n - 1) / 26);
  }
  return s;
}

/** `count` labels starting at `start` (A → A, B, C; A1 → A1, A2); null when `start` is no counter. */
function rowLabels(start, count) {
  const at = labelIndex(start);
  if (!at) return null;
  return Array.from({ length: count }, (_, i) => labelAt(at, at.n + i));
}

/** The label after `last` (Z → AA, 9 → 10, A9 → A10). */
function labelAfter(last) {
  const at = labelIndex(last);
  return at ? labelAt(at, at.n + 1) : 'A';
}

/** Whether two labels count in the same series (letters, or numbers with the same prefix). */
function sameSeries(a, b) {
  const x = labelIndex(a);
  const y = labelIndex(b);
  return Boolean(x && y && x.kind === y.kind && x.prefix === y.prefix);
}

// ---- money -----------------------------------------------------------------------

function fractionDigits(currency) {
  try {
    return new Intl.NumberFormat('en', { style: 'currency', currency }).resolvedOptions().maximumFractionDigits;
  } catch {
    return 0;
  }
}

/** "1,500" / "45.50" → minor units, or an error sentence. */
function parsePrice(raw, currency) {
  let v = raw.trim().replace(/\s/g, '');
  if (v === '') return { error: 'Enter a price (0 for free tickets).' };
  if (/^\d{1,3}(,\d{3})+(\.\d+)?$/.test(v)) v = v.replace(/,/g, '');
  if (!/^\d+(\.\d+)?$/.test(v)) return { error: `Price must be a number, e.g. ${fractionDigits(currency) ? '45.00' : '4500'}.` };
  const digits = fractionDigits(currency);
  const decimals = (v.split('.')[1] || '').replace(/0+$/, '').length;
  if (decimals > digits) {
    return { error: digits === 0 ? `${currency} prices have no decimals.` : `${currency} prices have at most ${digits} decimals.` };
  }
  const minor = Math.round(Number(v) * 10 ** digits);
  if (!Number.isSafeInteger(minor) || minor > 1e12) return { error: 'That price is too large.' };
  return { minor };
}

function majorString(minor, currency) {
  const digits = fractionDigits(currency);
  return (minor / 10 ** digits).toFixed(digits);
}

// ---- field errors ----------------------------------------------------------------

/** Shows `message` under `input` (its `.field-error`, or one made for it). */
function fieldError(input, message) {
  let box = input.id ? $(`${input.id}-error`) : null;
  if (!box) {
    const holder = input.closest('.field') || input.parentElement;
    box = holder.querySelector(':scope > .field-error');
    if (!box) {
      box = el('p', { class: 'field-error', id: input.id ? `${input.id}-error` : undefined, 'aria-live': 'polite' });
      holder.append(box);
    }
  }
  box.textContent = message;
  input.setAttribute('aria-invalid', 'true');
  if (box.id) {
    const ids = new Set((input.getAttribute('aria-describedby') || '').split(/\s+/).filter(Boolean));
    ids.add(box.id);
    input.setAttribute('aria-describedby', [...ids].join(' '));
  }
}

function clearErrors() {
  for (const box of document.querySelectorAll('#event-form .field-error')) box.textContent = '';
  for (const input of document.querySelectorAll('#event-form [aria-invalid]')) input.removeAttribute('aria-invalid');
}

// ---- builder rows ----------------------------------------------------------------

function labelled(labelText, input, extra) {
  return el('div', { class: 'field' }, el('label', { for: input.id }, labelText), input, extra || null);
}

function addTier(code = '', price = '') {
  const codeInput = el('input', { id: nextId('tier-code'), class: 'tier-code', maxlength: 64, value: code, autocomplete: 'off', placeholder: 'e.g. VIP' });
  const priceInput = el('input', { id: nextId('tier-price'), class: 'tier-price', inputmode: 'decimal', value: price, autocomplete: 'off', placeholder: '0' });
  const row = el('div', { class: 'tier-row builder-row' },
    labelled('Tier code', codeInput),
    labelled(el('span', {}, 'Price (', el('span', { class: 'currency-code' }, $('currency').value), ')'), priceInput),
    el('div', { class: 'row-buttons' },
      el('button', { type: 'button', class: 'secondary remove-tier', 'aria-label': 'Remove this price tier', onclick: () => {
        row.remove();
        changed();
      } }, 'Remove')));
  $('tiers').append(row);
  return row;
}

function addSection(init = {}) {
  const kind = init.kind || 'seated';
  const nameInput = el('input', { id: nextId('section-name'), class: 'section-name', maxlength: 64, value: init.name || '', autocomplete: 'off', placeholder: 'e.g. Stalls' });
  const kindSelect = el('select', { id: nextId('section-kind'), class: 'section-kind' },
    el('option', { value: 'seated', selected: kind === 'seated' }, 'Seated (rows × seats)'),
    el('option', { value: 'general', selected: kind === 'general' }, 'General admission (standing)'));
  const tierSelect = el('select', { id: nextId('section-tier'), class: 'section-tier', 'data-wanted': init.tier || '' });
  const rowsInput = el('input', { id: nextId('section-rows'), class: 'section-rows', type: 'number', inputmode: 'numeric', min: 1, value: init.rows ?? 10 });
  const startInput = el('input', { id: nextId('section-row-start'), class: 'section-row-start', maxlength: 8, value: init.start || '', autocomplete: 'off', 'data-auto': init.start ? '0' : '1', placeholder: 'A' });
  const seatsInput = el('input', { id: nextId('section-seats'), class: 'section-seats', type: 'number', inputmode: 'numeric', min: 1, value: init.seats ?? 20 });
  const capacityInput = el('input', { id: nextId('section-capacity'), class: 'section-capacity', type: 'number', inputmode: 'numeric', min: 1, value: init.capacity ?? 500 });
  const seated = el('div', { class: 'seated-fields grid-3' },
    labelled('Rows', rowsInput),
    labelled('First row', startInput, el('p', { class: 'hint' }, 'Letters (A, AA) or a number (1, A1).')),
    labelled('Seats per row', seatsInput));
  const general = el('div', { class: 'general-fields grid-3' }, labelled('Capacity (places)', capacityInput));
  const summary = el('p', { class: 'section-summary muted small' });
  const row = el('li', { class: 'section-row builder-row' },
    el('div', { class: 'grid-3' }, labelled('Section name', nameInput), labelled('Kind', kindSelect), labelled('Price tier', tierSelect)),
    seated, general, summary,
    el('div', { class: 'row-buttons' },
      el('button', { type: 'button', class: 'secondary move-up', 'aria-label': 'Move this section up', onclick: () => move(row, -1) }, '↑ Up'),
      el('button', { type: 'button', class: 'secondary move-down', 'aria-label': 'Move this section down', onclick: () => move(row, 1) }, '↓ Down'),
      el('button', { type: 'button', class: 'secondary remove-section', 'aria-label': 'Remove this section', onclick: () => {
        row.remove();
        changed();
      } }, 'Remove')));
  if (init.customRows) customRows.set(row, init.customRows);
  startInput.addEventListener('input', () => {
    startInput.dataset.auto = startInput.value.trim() ? '0' : '1';
  });
  for (const input of [rowsInput, startInput, seatsInput]) input.addEventListener('input', () => customRows.delete(row));
  $('sections-list').append(row);
  return row;
}

/** Sections loaded from a map whose rows the simple fields cannot express: kept as they are until edited. */
const customRows = new WeakMap();

function move(row, delta) {
  const list = $('sections-list');
  if (delta < 0 && row.previousElementSibling) list.insertBefore(row, row.previousElementSibling);
  else if (delta > 0 && row.nextElementSibling) list.insertBefore(row.nextElementSibling, row);
  changed();
  row.querySelector(delta < 0 ? '.move-up' : '.move-down').focus();
}

// ---- reading and checking the builder ----------------------------------------------

/**
 * Reads the builder into a seat map, or `errors` ([input, message] pairs). Also
 * refreshes the tier choices, the automatic first-row labels and each section's summary.
 */
function readBuilder() {
  const currency = $('currency').value;
  const errors = [];
  const tiers = [];
  const codes = new Map();
  for (const row of document.querySelectorAll('#tiers .tier-row')) {
    const codeInput = row.querySelector('.tier-code');
    const priceInput = row.querySelector('.tier-price');
    const code = codeInput.value.trim();
    if (!code) errors.push([codeInput, 'Give the tier a code, e.g. VIP or A.']);
    else if (!NAME_RE.test(code)) errors.push([codeInput, 'Use letters, digits, space, _ . or - (at most 64).']);
    else if (codes.has(code)) errors.push([codeInput, `Tier code “${code}” is used twice.`]);
    const price = parsePrice(priceInput.value, currency);
    if (price.error) errors.push([priceInput, price.error]);
    if (code) codes.set(code, tiers.length);
    tiers.push({ code, price: price.minor ?? 0 });
  }
  if (tiers.length === 0) errors.push([$('add-tier'), 'Add at least one price tier.']);

  const sections = [];
  const names = new Set();
  const owner = new Map(); // row label → section name
  let lastLabel = null;
  let seats = 0;
  let standing = 0;
  for (const row of document.querySelectorAll('#sections-list .section-row')) {
    const nameInput = row.querySelector('.section-name');
    const kind = row.querySelector('.section-kind').value;
    const tierSelect = row.querySelector('.section-tier');
    const name = nameInput.value.trim();
    row.querySelector('.seated-fields').hidden = kind !== 'seated';
    row.querySelector('.general-fields').hidden = kind !== 'general';
    // Tier choices follow the tier list.
    const wanted = tierSelect.value || tierSelect.dataset.wanted || '';
    const choices = tiers.map((t) => t.code).filter(Boolean);
    const uniqueChoices = [...new Set(choices)];
    const same = [...tierSelect.options].map((o) => o.value).join('\n') === uniqueChoices.join('\n');
    if (!same) {
      put(tierSelect, uniqueChoices.map((c) => el('option', { value: c }, c)));
      if (uniqueChoices.includes(wanted)) tierSelect.value = wanted;
    }
    if (tierSelect.value) tierSelect.dataset.wanted = tierSelect.value;
    const tier = tierSelect.value;
    if (!name) errors.push([nameInput, 'Give the section a name, e.g. Stalls.']);
    else if (!NAME_RE.test(name)) errors.push([nameInput, 'Use letters, digits, space, _ . or - (at most 64).']);
    else if (names.has(name)) errors.push([nameInput, `Section name “${name}” is used twice.`]);
    names.add(name);
    if (!tier) errors.push([tierSelect, 'Choose a price tier (add one above first).']);
    const summary = row.querySelector('.section-summary');
    const tierIndex = codes.get(tier) ?? 0;
    if (kind === 'general') {
      const capInput = row.querySelector('.section-capacity');
      const capacity = Number(capInput.value);
      if (!Number.isInteger(capacity) || capacity < 1) {
        errors.push([capInput, 'Capacity must be a whole number of places, at least 1.']);
        summary.textContent = '';
      } else {
        standing += capacity;
        summary.textContent = `${capacity.toLocaleString()} standing places`;
      }
      sections.push({ name, kind: 'general', tier, capacity, tierIndex });
      continue;
    }
    const rowsInput = row.querySelector('.section-rows');
    const startInput = row.querySelector('.section-row-start');
    const seatsInput = row.querySelector('.section-seats');
    const custom = customRows.get(row);
    if (startInput.dataset.auto === '1') startInput.value = lastLabel ? labelAfter(lastLabel) : 'A';
    const start = startInput.value.trim().toUpperCase();
    let rows = null;
    if (custom) {
      rows = custom;
    } else {
      const count = Number(rowsInput.value);
      const perRow = Number(seatsInput.value);
      let ok = true;
      if (!Number.isInteger(count) || count < 1) {
        errors.push([rowsInput, 'Rows must be a whole number, at least 1.']);
        ok = false;
      }
      if (!Number.isInteger(perRow) || perRow < 1) {
        errors.push([seatsInput, 'Seats per row must be a whole number, at least 1.']);
        ok = false;
      }
      const labels = ok && count <= 100_000 ? rowLabels(start, count) : null;
      if (ok && count > 100_000) {
        errors.push([rowsInput, 'At most 100,000 rows per section.']);
        ok = false;
      }
      if (!labels && start && !labelIndex(start)) {
        errors.push([startInput, 'The first row is letters (A, AA…) or a number, maybe after a prefix (1, A1, R01…).']);
      } else if (!start) {
        errors.push([startInput, 'Give the first row’s label, e.g. A.']);
      }
      if (labels) rows = labels.map((label) => ({ label, seats: perRow }));
    }
    if (rows) {
      const clashes = rows.filter((r) => owner.has(r.label));
      if (clashes.length) {
        const other = owner.get(clashes[0].label);
        const series = [...owner.keys()].filter((l) => sameSeries(l, rows[0].label)).sort((x, y) => labelIndex(x).n - labelIndex(y).n);
        const next = series.length ? labelAfter(series[series.length - 1]) : 'A';
        const which = clashes.length === 1 ? `Row ${clashes[0].label} is` : `Rows ${clashes[0].label}–${clashes[clashes.length - 1].label} are`;
        errors.push([custom ? rowsInput : startInput, `${which} already in section “${other}”: row labels must be unique across the event. Start this section at ${next}.`]);
      }
      for (const r of rows) if (!owner.has(r.label)) owner.set(r.label, name || 'another section');
      const count = rows.reduce((n, r) => n + r.seats, 0);
      seats += count;
      lastLabel = rows[rows.length - 1].label;
      const first = rows[0].label;
      const even = rows.every((r) => r.seats === rows[0].seats);
      summary.textContent = `Rows ${first}${rows.length > 1 ? `${custom ? '…' : '–'}${lastLabel}` : ''}: ${rows.length.toLocaleString()} × ${even ? rows[0].seats.toLocaleString() : 'varied'} = ${count.toLocaleString()} seats${custom ? ' (rows as set through the API, kept unless you change rows, first row or seats)' : ''}`;
    } else {
      summary.textContent = '';
    }
    sections.push({ name, kind: 'seated', tier, rows: rows || [], tierIndex });
  }
  if (sections.length === 0) errors.push([$('add-section'), 'Add at least one section.']);
  if (seats + standing > MAX_PLACES) errors.push([$('add-section'), `At most ${MAX_PLACES.toLocaleString()} places per event (this map has ${(seats + standing).toLocaleString()}).`]);
  if (seats + standing === 0 && sections.length) errors.push([$('add-section'), 'The map has no places.']);
  const map = {
    tiers: tiers.map(({ code, price }) => ({ code, price })),
    sections: sections.map((s) => (s.kind === 'general'
      ? { name: s.name, kind: 'general', tier: s.tier, capacity: s.capacity }
      : { name: s.name, kind: 'seated', tier: s.tier, rows: s.rows })),
  };
  return { map, errors, sections, tiers, seats, standing };
}

// ---- preview ---------------------------------------------------------------------

function drawPreview(built) {
  const { sections, tiers, seats, standing } = built;
  const currency = $('currency').value;
  const parts = [`${sections.length} section${sections.length === 1 ? '' : 's'}`];
  if (seats) parts.push(`${seats.toLocaleString()} seat${seats === 1 ? '' : 's'}`);
  if (standing) parts.push(`${standing.toLocaleString()} standing`);
  const total = seats + standing;
  const prices = tiers.filter((t) => t.code).map((t) => `${t.code} ${money(t.price, currency)}`);
  $('preview-summary').textContent = `${parts[0]}, ${parts.slice(1).join(' + ') || 'no places yet'}${total && seats && standing ? ` (${total.toLocaleString()} in all)` : ''}. ${prices.length ? `Tiers: ${prices.join(', ')}.` : ''}`;

  const W = 600;
  const items = [];
  let y = 10;
  items.push(svg('rect', { x: 150, y, width: 300, height: 18, rx: 3, class: 'pv-stage' }), svg('text', { x: 300, y: y + 13, 'text-anchor': 'middle', class: 'pv-stage-label' }, 'STAGE'));
  y += 34;
  for (const s of sections) {
    const colour = TIER_COLOURS[s.tierIndex % TIER_COLOURS.length];
    if (s.kind === 'general') {
      const h = 40;
      items.push(svg('rect', { x: 60, y, width: W - 120, height: h, rx: 8, fill: colour, 'fill-opacity': 0.18, stroke: colour }),
        svg('text', { x: W / 2, y: y + 25, 'text-anchor': 'middle', class: 'pv-label' }, `${s.name || 'Section'} · ${Number(s.capacity || 0).toLocaleString()} standing · ${s.tier}`));
      y += h + 14;
      continue;
    }
    if (!s.rows.length) continue;
    const maxSeats = Math.max(...s.rows.map((r) => r.seats));
    const cell = Math.max(0.5, Math.min(10, (W - 80) / maxSeats, 160 / s.rows.length));
    const drawSeats = s.rows.length * maxSeats <= 4000 && cell >= 3;
    items.push(svg('text', { x: W / 2, y: y + 12, 'text-anchor': 'middle', class: 'pv-label' }, `${s.name || 'Section'} · ${s.tier}`));
    y += 18;
    s.rows.forEach((r, i) => {
      const width = r.seats * cell;
      const x0 = (W - width) / 2;
      const ry = y + i * cell;
      if (drawSeats) {
        for (let k = 0; k < r.seats; k++) items.push(svg('rect', { x: x0 + k * cell + 0.5, y: ry + 0.5, width: cell - 1, height: cell - 1, rx: 1, fill: colour }));
      } else {
        items.push(svg('rect', { x: x0, y: ry, width, height: Math.max(cell - (cell > 2 ? 1 : 0), 0.5), fill: colour }));
      }
      const every = Math.ceil(9 / cell);
      if (cell >= 6 || i % every === 0) items.push(svg('text', { x: x0 - 4, y: ry + Math.min(cell, 9) - 0.5, 'text-anchor': 'end', class: 'pv-row' }, r.label));
    });
    y += s.rows.length * cell + 14;
  }
  const picture = svg('svg', { viewBox: `0 0 ${W} ${Math.max(y, 60)}`, role: 'img', 'aria-label': `Preview of the seat map: ${$('preview-summary').textContent}`, class: 'preview-svg' }, items);
  put($('preview-map'), picture);
}

// ---- the form --------------------------------------------------------------------

let loaded = null; // the event as loaded (edit), with `initialMap` (JSON) and window values

function changed() {
  const built = readBuilder();
  for (const node of document.querySelectorAll('.currency-code')) node.textContent = $('currency').value;
  drawPreview(built);
  return built;
}

/** Checks the whole form; returns the request body parts or null (errors shown). */
function check() {
  clearErrors();
  const errors = [];
  const title = $('title').value.trim();
  const venue = $('venue').value.trim();
  if (!title) errors.push([$('title'), 'Give the event a title.']);
  if (!venue) errors.push([$('venue'), 'Say where it takes place.']);
  const date = fromLocalInput($('date').value);
  if (!$('date').value) errors.push([$('date'), 'Choose the date and time.']);
  else if (!date) errors.push([$('date'), 'That is not a date and time.']);
  else if (!loaded && new Date(date) <= new Date()) errors.push([$('date'), 'The event must be in the future.']);
  const limitRaw = $('per-buyer-limit').value.trim();
  const limit = Number(limitRaw);
  if (!limitRaw || !Number.isInteger(limit) || limit < 1 || limit > 50) errors.push([$('per-buyer-limit'), 'A whole number from 1 to 50.']);
  const opensAt = fromLocalInput($('opens-at').value);
  const closesAt = fromLocalInput($('closes-at').value);
  if ($('opens-at').value && !opensAt) errors.push([$('opens-at'), 'That is not a date and time.']);
  if ($('closes-at').value && !closesAt) errors.push([$('closes-at'), 'That is not a date and time.']);
  if (opensAt && closesAt && new Date(closesAt) <= new Date(opensAt)) errors.push([$('closes-at'), 'The sale must close after it opens.']);
  if (closesAt && date && new Date(closesAt) > new Date(date)) errors.push([$('closes-at'), 'The sale cannot close after the event starts (it ends then anyway).']);
  const built = changed();
  errors.push(...built.errors);
  if (errors.length) {
    for (const [input, message] of errors) fieldError(input, message);
    if (built.errors.length) $('builder-error').textContent = built.errors.length === 1 ? 'The seat map has a problem: see below.' : `The seat map has ${built.errors.length} problems: see below.`;
    notify(errors.length === 1 ? `Fix this first: ${errors[0][1]}` : `Fix the ${errors.length} problems marked below. First: ${errors[0][1]}`, 'error');
    errors[0][0].focus();
    return null;
  }
  return {
    title,
    venue_name: venue,
    venue_address: $('venue-address').value.trim(),
    event_date: date,
    category: $('category').value.trim(),
    description: $('description').value.trim(),
    currency: $('currency').value,
    seat_map: built.map,
    window: { opens_at: opensAt, closes_at: closesAt, per_buyer_limit: limit },
  };
}

const FIELD_INPUTS = { title: 'title', venue_name: 'venue', venue_address: 'venue-address', event_date: 'date', category: 'category', description: 'description', currency: 'currency' };

/** A server problem: in words in the notice, and next to the field it names. */
function serverProblem(e) {
  fail(e);
  if (!(e instanceof ApiProblem)) return;
  const p = e.problem || {};
  const inputId = FIELD_INPUTS[p.field] || (p.code === 'invalid_currency' ? 'currency' : null);
  if (inputId) fieldError($(inputId), e.message);
  if (['invalid_seat_map', 'seat_map_conflict'].includes(p.code)) $('builder-error').textContent = e.message;
  if (p.code === 'invalid_sales_window') {
    const detail = String(p.detail || '');
    const target = detail.includes('per_buyer') ? 'per-buyer-limit' : detail.includes('opens_at') && !detail.includes('closes_at') ? 'opens-at' : 'closes-at';
    fieldError($(target), e.message);
  }
  if (p.code === 'event_has_sales' && /currency/.test(String(p.detail))) fieldError($('currency'), e.message);
}

/**
 * The `sales_window` object. Creating: every field (an empty time is `null`: on
 * sale from publication / until the event starts). Updating: only what the
 * organizer changed (left out = unchanged on the server), an emptied time as
 * `null`, which clears it.
 */
function windowBody(w) {
  if (!loaded) return { opens_at: w.opens_at, closes_at: w.closes_at, per_buyer_limit: w.per_buyer_limit };
  const was = loaded.window;
  const body = {};
  if ($('opens-at').value !== toLocalInput(was.opens_at)) body.opens_at = w.opens_at;
  if ($('closes-at').value !== toLocalInput(was.closes_at)) body.closes_at = w.closes_at;
  if (w.per_buyer_limit !== was.per_buyer_limit) body.per_buyer_limit = w.per_buyer_limit;
  return body;
}

/** Saves: creates the event, or updates what changed. Returns the event, or null. */
let unchanged = false; // the last save found nothing to send

async function save() {
  unchanged = false;
  const form = check();
  if (!form) return null;
  const { window: w, seat_map, ...details } = form;
  $('save').disabled = true;
  try {
    if (!loaded) {
      const body = { ...details, seat_map, sales_window: windowBody(w) };
      if (!body.venue_address) delete body.venue_address;
      if (!body.category) delete body.category;
      return await api('POST', '/events/create', body);
    }
    const body = {};
    const e = loaded.event;
    if (details.title !== e.title) body.title = details.title;
    if (details.venue_name !== e.venue_name) body.venue_name = details.venue_name;
    if (details.venue_address !== (e.venue_address || '')) body.venue_address = details.venue_address;
    if (details.category !== (e.category || '')) body.category = details.category;
    if (details.description !== (e.description || '')) body.description = details.description;
    if (details.currency !== e.currency) body.currency = details.currency;
    if ($('date').value !== toLocalInput(e.event_date)) body.event_date = details.event_date;
    if (JSON.stringify(seat_map) !== loaded.initialMap) body.seat_map = seat_map;
    const salesWindow = windowBody(w);
    if (Object.keys(salesWindow).length) body.sales_window = salesWindow;
    if (Object.keys(body).length === 0) {
      unchanged = true;
      return e;
    }
    const event = await api('PUT', `/events/${encodeURIComponent(e.event_id)}/update`, body);
    await load(event.event_id);
    return event;
  } catch (e) {
    serverProblem(e);
    return null;
  } finally {
    $('save').disabled = false;
  }
}

function fillBuilder(map, currency) {
  put($('tiers'));
  put($('sections-list'));
  for (const t of map.tiers || []) addTier(t.code, majorString(t.price, currency));
  for (const s of map.sections || []) {
    if (s.kind === 'general') {
      addSection({ name: s.name, kind: 'general', tier: s.tier, capacity: s.capacity });
      continue;
    }
    const rows = s.rows || [];
    const first = rows[0];
    const expected = first ? rowLabels(first.label, rows.length) : null;
    const regular = first && expected && rows.every((r, i) => r.label === expected[i] && r.seats === first.seats && (r.first ?? 1) === 1 && !r.tier);
    addSection({
      name: s.name,
      kind: 'seated',
      tier: s.tier,
      rows: rows.length,
      start: first?.label || 'A',
      seats: first?.seats ?? 1,
      customRows: regular ? null : rows.map((r) => Object.fromEntries(Object.entries(r).filter(([, v]) => v !== null))),
    });
  }
}

async function load(eventId) {
  const details = await api('GET', `/events/${encodeURIComponent(eventId)}/details`);
  const e = details;
  $('title').value = e.title;
  $('venue').value = e.venue_name;
  $('venue-address').value = e.venue_address || '';
  $('date').value = toLocalInput(e.event_date);
  $('category').value = e.category || '';
  $('description').value = e.description || '';
  if (![...$('currency').options].some((o) => o.value === e.currency)) $('currency').append(el('option', { value: e.currency }, e.currency));
  $('currency').value = e.currency;
  const w = e.sales_window || {};
  $('opens-at').value = toLocalInput(w.opens_at);
  $('closes-at').value = toLocalInput(w.closes_at);
  $('per-buyer-limit').value = w.per_buyer_limit ?? 10;
  if (details.seat_map) fillBuilder(details.seat_map, e.currency);
  const built = changed();
  loaded = {
    event: e,
    initialMap: details.seat_map ? JSON.stringify(built.map) : '',
    window: { opens_at: w.opens_at || null, closes_at: w.closes_at || null, per_buyer_limit: w.per_buyer_limit ?? 10 },
  };
  $('editor-title').textContent = `Edit: ${e.title}`;
  document.title = `Edit ${e.title} · boxoffice`;
  put($('event-status'), statusBadge(e.status));
  const dash = $('dashboard-link');
  dash.href = `/app/organizer/events/${encodeURIComponent(e.event_id)}`;
  dash.hidden = false;
  const locked = e.status === 'cancelled';
  for (const node of document.querySelectorAll('#event-form input, #event-form select, #event-form textarea, #event-form fieldset button, #save')) node.disabled = locked;
  if (locked) notify('This event is cancelled: it can no longer change.', 'info');
  if (e.status !== 'draft' && !locked) {
    $('builder-error').textContent = '';
    if (!$('published-hint')) {
      $('builder').querySelector('legend').after(el('p', { class: 'hint', id: 'published-hint' },
        'This event is past its draft: the map may change only if every seat held or sold stays in it, and the currency cannot change once seats were held.'));
    }
  }
  return e;
}

start(async () => {
  await requireSession(['organizer', 'admin']);
  const m = location.pathname.match(/^\/app\/organizer\/events\/([^/]+)\/edit/);
  const eventId = m ? decodeURIComponent(m[1]) : null;
  const form = $('event-form');

  $('add-tier').addEventListener('click', () => {
    const row = addTier(document.querySelectorAll('.tier-row').length ? '' : 'A', '');
    changed();
    row.querySelector('.tier-code').focus();
  });
  $('add-section').addEventListener('click', () => {
    const row = addSection({ kind: 'seated', name: `Section ${document.querySelectorAll('.section-row').length + 1}` });
    changed();
    row.querySelector('.section-name').focus();
  });
  form.addEventListener('input', () => changed());
  form.addEventListener('change', () => changed());

  let status = null;
  const buttons = lifecycleButtons(eventId || 'new', {
    getStatus: () => status,
    before: async () => {
      const event = await save();
      if (!event) return false;
      if (!eventId) {
        // Created by this click: publish it, then go to its dashboard.
        const published = await api('POST', `/events/${encodeURIComponent(event.event_id)}/publish`).catch((e) => {
          location.assign(`/app/organizer/events/${encodeURIComponent(event.event_id)}/edit?created=1`);
          throw e;
        });
        location.assign(`/app/organizer/events/${encodeURIComponent(published.event_id)}?published=1`);
        return false;
      }
      return true;
    },
    changed: async (event, to) => {
      if (to === 'published') {
        location.assign(`/app/organizer/events/${encodeURIComponent(event.event_id)}?published=1`);
        return;
      }
      await load(event.event_id);
      status = event.status;
    },
  });

  if (eventId) {
    const e = await load(eventId);
    status = e.status;
    buttons.refresh();
    if (new URLSearchParams(location.search).get('created')) notify('Event created as a draft. Publish it when it is ready.', 'ok');
  } else {
    status = 'new';
    buttons.refresh();
    $('publish').textContent = 'Save and publish';
    const d = new Date(Date.now() + 30 * 24 * 3600 * 1000);
    d.setHours(19, 0, 0, 0);
    $('date').value = toLocalInput(d.toISOString());
    addTier('A', '');
    addSection({ name: 'Stalls', kind: 'seated', rows: 10, seats: 20 });
    changed();
  }

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearNotice();
    const event = await save();
    if (!event) return;
    if (!eventId) {
      location.assign(`/app/organizer/events/${encodeURIComponent(event.event_id)}/edit?created=1`);
      return;
    }
    status = event.status;
    buttons.refresh();
    notify(unchanged ? 'Nothing changed: there was nothing to save.' : 'Saved.', unchanged ? 'info' : 'ok');
  });
});
