// Door staff: the scanner (`/app/scan`, `/app/scan/{eventId}`). Without an event
// id it lists the events the visitor may scan as links `#event-list
// a[data-event-id]` (staff: `GET /staff/events`, the events they are assigned to,
// soonest first; organizers: their published and closed events), with a field
// #event-id for a pasted event id or scan link as a fallback. With one: the
// camera in <video id="camera"> decoded by the browser's BarcodeDetector, or the
// vendored jsQR (loaded only when needed) on a canvas; a photo input #qr-file;
// manual entry #manual-code + #check. Each code goes to
// `POST /events/{id}/check-ins`; #result shows it big (data-outcome="ok" green:
// Admitted, holder, seat; "bad" red: the reason in words — data-reason has the
// problem code, "offline" when the server could not be reached: nothing is queued).
// The camera does not resend a code it saw within the last 3 s (one held in view
// is sent once). #history keeps the last scans.

import { api, ApiProblem, requireSession } from './api.js';
import { el, notify, put, start, when } from './ui.js';

const $ = (id) => document.getElementById(id);
const UUID_RE = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/i;
const SAME_CODE_MS = 3000;
const HISTORY = 15;

let eventId = null;
let eventTitle = '';
const eventNames = new Map();

// ---- the result panel and history -------------------------------------------------------

function show(outcome, reason, headline, detail, extra) {
  const box = $('result');
  box.dataset.outcome = outcome;
  if (reason) box.dataset.reason = reason;
  else delete box.dataset.reason;
  put(box,
    el('p', { class: 'headline' }, headline),
    detail ? el('p', { class: 'detail' }, detail) : null,
    extra ? el('p', { class: 'extra' }, extra) : null);
  if (navigator.vibrate && outcome !== 'busy') navigator.vibrate(outcome === 'ok' ? 80 : [200, 80, 200]);
}

function remember(outcome, reason, text) {
  const list = $('history');
  const now = new Date();
  const kind = outcome === 'ok' ? 'ok' : reason === 'offline' ? 'offline' : 'bad';
  list.prepend(el('li', { 'data-outcome': outcome, 'data-reason': reason || undefined },
    el('span', { class: `h-${kind}` }, outcome === 'ok' ? '✔ Admitted' : reason === 'offline' ? '⚠ Not verified' : '✖ Refused'),
    el('span', {}, text),
    el('time', { datetime: now.toISOString() }, now.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' }))));
  while (list.children.length > HISTORY) list.lastElementChild.remove();
}

function ago(iso) {
  const seconds = Math.round((Date.now() - new Date(iso).getTime()) / 1000);
  if (!Number.isFinite(seconds)) return '';
  if (seconds < 60) return `${Math.max(seconds, 0)} s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  return `${Math.round(seconds / 3600)} h ago`;
}

async function eventName(id) {
  if (!id) return 'another event';
  if (!eventNames.has(id)) {
    const name = await api('GET', `/events/${encodeURIComponent(id)}/details`).then((e) => `“${e.title}” (${when(e.event_date)})`, () => 'another event');
    eventNames.set(id, name);
  }
  return eventNames.get(id);
}

// ---- checking a code -------------------------------------------------------------------

let lastCode = '';
let lastAt = 0;
let busy = false;

/** Checks `code` in. `source` is camera, photo or manual; the camera skips a code it just sent. */
async function check(code, source) {
  code = String(code || '').trim();
  if (!code) return;
  const now = Date.now();
  if (source === 'camera') {
    if (busy) return;
    // A code still in view is not sent again: only once it was out of sight for 3 s.
    const seen = code === lastCode && now - lastAt < SAME_CODE_MS;
    lastAt = now;
    if (seen) return;
  }
  lastCode = code;
  lastAt = now;
  busy = true;
  show('busy', null, 'Checking…', null);
  try {
    const out = await api('POST', `/events/${encodeURIComponent(eventId)}/check-ins`, { qr: code });
    const seat = out.seat_number ? `Seat ${out.seat_number}` : 'General admission';
    show('ok', null, 'Admitted', out.holder_name || 'Ticket holder', `${out.section} · ${seat}`);
    remember('ok', null, `${out.holder_name || 'Ticket holder'} — ${out.section}${out.seat_number ? ` ${out.seat_number}` : ''}`);
  } catch (e) {
    if (e.name === 'AbortError') return;
    const { headline, detail, extra, reason } = await refusal(e);
    show('bad', reason, headline, detail, extra);
    remember('bad', reason, reason === 'offline' ? 'Offline: not verified' : `${headline}${detail ? ` — ${detail}` : ''}`);
  } finally {
    busy = false;
    lastAt = Date.now();
  }
}

/** Why a code was not admitted, in words. */
async function refusal(e) {
  if (!(e instanceof ApiProblem)) return { reason: 'error', headline: 'Not admitted', detail: String(e?.message || e) };
  const p = e.problem || {};
  switch (e.code) {
    case 'network':
      return { reason: 'offline', headline: 'Offline — this ticket could not be verified; try again', detail: 'The server could not be reached. Do not admit until it is verified.' };
    case 'already_used': {
      const at = p.first_checked_in_at;
      const by = p.checked_in_by_name;
      return {
        reason: 'already_used',
        headline: 'Already used',
        detail: at ? `Checked in at ${new Date(at).toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' })} (${ago(at)})${by ? ` by ${by}` : ''}.` : 'This ticket was already checked in.',
        extra: at && new Date(at).toDateString() !== new Date().toDateString() ? `On ${new Date(at).toLocaleDateString()}.` : null,
      };
    }
    case 'ticket_cancelled':
      return { reason: 'ticket_cancelled', headline: 'Ticket cancelled', detail: 'This ticket was cancelled (and refunded). Do not admit.' };
    case 'event_cancelled':
      return { reason: 'event_cancelled', headline: 'Event cancelled', detail: 'This event is cancelled: its tickets admit no one.' };
    case 'wrong_event':
      return { reason: 'wrong_event', headline: 'Wrong event', detail: `This ticket is for ${await eventName(p.ticket_event_id)}, not ${eventTitle ? `“${eventTitle}”` : 'this event'}.` };
    case 'invalid_qr':
      return { reason: 'invalid_qr', headline: 'Invalid code', detail: /another event/.test(String(p.detail)) ? 'This code is for another event.' : 'This is not a valid ticket code (forged, altered or from elsewhere).' };
    case 'forbidden':
      return { reason: 'forbidden', headline: 'Not staff of this event', detail: 'Your account is not assigned to scan this event. Ask the organizer to add you.' };
    case 'not_found':
      return { reason: 'not_found', headline: 'Unknown ticket', detail: 'No ticket has this code.' };
    case 'invalid_body':
    case 'bad_body':
      return { reason: e.code, headline: 'Invalid code', detail: e.message };
    default:
      if (e.status === 401) return { reason: 'signed_out', headline: 'Signed out', detail: 'Sign in again to keep scanning.' };
      if (e.status === 503 || e.status === 429) return { reason: 'busy', headline: 'Busy — scan again', detail: e.message };
      return { reason: e.code || 'error', headline: 'Not admitted', detail: e.message };
  }
}

// ---- decoding --------------------------------------------------------------------------

let detector; // BarcodeDetector, null when absent, undefined before the first look

async function barcodeDetector() {
  if (detector !== undefined) return detector;
  detector = null;
  if ('BarcodeDetector' in window) {
    try {
      const formats = await window.BarcodeDetector.getSupportedFormats();
      if (formats.includes('qr_code')) detector = new window.BarcodeDetector({ formats: ['qr_code'] });
    } catch {
      detector = null;
    }
  }
  return detector;
}

let jsqrLoading = null;

/** Loads the vendored jsQR (a classic script defining `window.jsQR`) once, only when needed. */
function jsQR() {
  if (window.jsQR) return Promise.resolve(window.jsQR);
  if (!jsqrLoading) {
    jsqrLoading = new Promise((resolve, reject) => {
      const script = el('script', { src: '/assets/vendor/jsqr/jsQR.js', async: true });
      script.addEventListener('load', () => (window.jsQR ? resolve(window.jsQR) : reject(new Error('jsQR did not load'))));
      script.addEventListener('error', () => {
        jsqrLoading = null;
        reject(new Error('the QR decoder could not be loaded'));
      });
      document.head.append(script);
    });
  }
  return jsqrLoading;
}

/** Draws `source` (w × h) on the work canvas, at most `max` px on its longer side; returns its pixels. */
function pixels(source, w, h, max) {
  const scale = Math.min(1, max / Math.max(w, h));
  const canvas = $('frame');
  canvas.width = Math.max(1, Math.round(w * scale));
  canvas.height = Math.max(1, Math.round(h * scale));
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  ctx.drawImage(source, 0, 0, canvas.width, canvas.height);
  return ctx.getImageData(0, 0, canvas.width, canvas.height);
}

/** The QR text in an image source, or null. */
async function decode(source, w, h, { thorough }) {
  const bd = await barcodeDetector();
  if (bd) {
    try {
      const found = await bd.detect(source);
      if (found.length) return found[0].rawValue;
    } catch {
      /* fall through to jsQR */
    }
    if (!thorough) return null;
  }
  const decodeQr = await jsQR();
  for (const max of thorough ? [1600, 800, 2400] : [640]) {
    const image = pixels(source, w, h, max);
    const hit = decodeQr(image.data, image.width, image.height, { inversionAttempts: thorough ? 'attemptBoth' : 'dontInvert' });
    if (hit && hit.data) return hit.data;
  }
  return null;
}

// ---- camera ----------------------------------------------------------------------------

let stream = null;
let timer = null;

async function startCamera() {
  const button = $('camera-toggle');
  if (!navigator.mediaDevices?.getUserMedia) {
    notify('This browser gives no camera here (it needs HTTPS). Use “Scan a photo” or type the code.', 'error');
    return;
  }
  button.disabled = true;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: 'environment' }, audio: false });
    const video = $('camera');
    video.srcObject = stream;
    await video.play();
    $('camera-off').hidden = true;
    button.textContent = 'Stop camera';
    button.setAttribute('aria-pressed', 'true');
    // Warm the decoder up (BarcodeDetector, or load jsQR) before the first frame.
    if (!(await barcodeDetector())) await jsQR();
    loop();
  } catch (e) {
    stopCamera();
    const why = e?.name === 'NotAllowedError' ? 'Camera permission was refused.'
      : e?.name === 'NotFoundError' ? 'No camera was found.'
        : e?.name === 'NotReadableError' ? 'The camera is in use by another app.'
          : `The camera could not start (${e?.message || e}).`;
    notify(`${why} Use “Scan a photo” or type the code instead.`, 'error');
  } finally {
    button.disabled = false;
  }
}

function stopCamera() {
  clearTimeout(timer);
  timer = null;
  if (stream) for (const track of stream.getTracks()) track.stop();
  stream = null;
  const video = $('camera');
  video.srcObject = null;
  $('camera-off').hidden = false;
  $('camera-toggle').textContent = 'Start camera';
  $('camera-toggle').setAttribute('aria-pressed', 'false');
}

function loop() {
  if (!stream) return;
  timer = setTimeout(async () => {
    const video = $('camera');
    if (stream && video.readyState >= 2 && !busy && !document.hidden) {
      try {
        const code = await decode(video, video.videoWidth, video.videoHeight, { thorough: false });
        if (code) await check(code, 'camera');
      } catch {
        /* a frame that could not be read: try the next */
      }
    }
    loop();
  }, 150);
}

// ---- photo input -----------------------------------------------------------------------

async function fromFile(file) {
  if (!file) return;
  show('busy', null, 'Reading the photo…', null);
  let bitmap;
  try {
    bitmap = await createImageBitmap(file);
  } catch {
    bitmap = await imageElement(file); // SVG and a few other formats load only as <img>
  }
  if (!bitmap || !bitmap.width) {
    show('bad', 'unreadable', 'Not an image', 'That file could not be read as a picture.');
    return;
  }
  try {
    const code = await decode(bitmap, bitmap.width, bitmap.height, { thorough: true });
    if (!code) {
      show('bad', 'no_code', 'No QR code found', 'Take the photo closer, flat and sharp, or type the code.');
      remember('bad', 'no_code', 'No QR code found in the photo');
      return;
    }
    await check(code, 'photo');
  } catch (e) {
    show('bad', 'error', 'Could not read the photo', String(e?.message || e));
  } finally {
    bitmap.close?.();
  }
}

/** The file as a loaded <img> (from a blob: URL), or null. */
function imageElement(file) {
  return new Promise((resolve) => {
    const url = URL.createObjectURL(file);
    const img = new Image();
    img.onload = () => {
      URL.revokeObjectURL(url);
      const width = img.naturalWidth || 600;
      const height = img.naturalHeight || 600;
      resolve(Object.assign(img, { width, height }));
    };
    img.onerror = () => {
      URL.revokeObjectURL(url);
      resolve(null);
    };
    img.src = url;
  });
}

// ---- pages -----------------------------------------------------------------------------

const STAFF_PER_PAGE = 50;

/** One event to pick: a big link to its scanner. */
function pickLink(id, title, detail) {
  return el('li', {}, el('a', { href: `/app/scan/${encodeURIComponent(id)}`, 'data-event-id': id }, title, el('span', {}, detail)));
}

/** Staff: the events they are assigned to, a page at a time ("More events" while pages are full). */
async function staffEvents(user, page = 1) {
  const list = $('event-list');
  list.querySelector('.more-events')?.remove();
  try {
    const out = await api('GET', `/staff/events?page=${page}&per_page=${STAFF_PER_PAGE}`);
    const items = out.events.map((e) => pickLink(e.event_id, e.title,
      `${when(e.event_date)} · ${e.venue_name}${e.status === 'published' ? '' : ` · ${e.status === 'cancelled' ? 'CANCELLED' : e.status}`}`));
    list.append(...items);
    if (page > 1) items[0]?.querySelector('a').focus(); // the "More events" button that had focus is gone
    if (page === 1 && !out.events.length) {
      list.append(el('li', { class: 'muted' }, `You are not assigned to scan any upcoming event. Ask the organizer to add you by your email, ${user.email}, or paste the event’s scan link below.`));
    }
    if (out.events.length === STAFF_PER_PAGE) {
      list.append(el('li', { class: 'more-events' }, el('button', { type: 'button', class: 'secondary', id: 'more-events', onclick: (ev) => {
        ev.currentTarget.disabled = true;
        staffEvents(user, page + 1);
      } }, 'More events')));
    }
  } catch (e) {
    list.append(el('li', { class: 'muted' }, `Your events could not be listed (${e.message}). Paste the event’s scan link or id below.`));
  }
}

async function chooseEvent(user) {
  $('pick').hidden = false;
  const list = $('event-list');
  list.setAttribute('aria-busy', 'true');
  if (user.user_type === 'staff') {
    await staffEvents(user);
  } else if (user.user_type === 'organizer' || user.user_type === 'admin') {
    try {
      const out = await api('GET', '/organizer/events?per_page=100');
      const events = out.events.filter((e) => e.status === 'published' || e.status === 'closed');
      put(list, events.map((e) => pickLink(e.event_id, e.title, `${when(e.event_date)} · ${Number(e.sold).toLocaleString()} sold · ${e.status}`)));
      if (!events.length) list.append(el('li', { class: 'muted' }, 'None of your events is published yet.'));
    } catch {
      /* the id field still works */
    }
  }
  list.removeAttribute('aria-busy');
  $('event-choose').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const match = $('event-id').value.match(UUID_RE);
    if (!match) {
      $('event-id-error').textContent = 'Paste the event’s id (like 01a24a9c-d0a0-75de-87b3-d1fda72665c3) or its scan link.';
      $('event-id').setAttribute('aria-invalid', 'true');
      $('event-id').focus();
      return;
    }
    location.assign(`/app/scan/${encodeURIComponent(match[0].toLowerCase())}`);
  });
}

async function scanner() {
  $('scanner').hidden = false;
  try {
    const e = await api('GET', `/events/${encodeURIComponent(eventId)}/details`);
    eventTitle = e.title;
    $('scan-title').textContent = `Scan: ${e.title}`;
    document.title = `Scan ${e.title} · boxoffice`;
    $('scan-event').textContent = `${when(e.event_date)} · ${e.venue_name}${e.status === 'cancelled' ? ' · CANCELLED' : ''}`;
  } catch {
    $('scan-event').textContent = `Event ${eventId}`;
  }
  $('camera-toggle').addEventListener('click', () => (stream ? stopCamera() : startCamera()));
  $('qr-file').addEventListener('change', async (ev) => {
    const input = ev.currentTarget;
    const file = input.files && input.files[0];
    await fromFile(file);
    input.value = ''; // the same photo may be chosen again
  });
  $('manual-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const input = $('manual-code');
    if (!input.value.trim()) {
      show('bad', 'empty', 'No code', 'Type or paste the code printed under the QR.');
      input.focus();
      return;
    }
    await check(input.value, 'manual');
    input.select();
  });
  document.addEventListener('visibilitychange', () => {
    if (document.hidden && stream) stopCamera();
  });
  window.addEventListener('online', () => notify('Back online.', 'ok'));
  window.addEventListener('offline', () => notify('Offline: tickets cannot be verified until the connection is back.', 'error'));
}

start(async () => {
  const user = await requireSession(['staff', 'organizer', 'admin']);
  const match = location.pathname.match(/^\/app\/scan\/([^/]+)/);
  eventId = match ? decodeURIComponent(match[1]) : null;
  if (eventId && !UUID_RE.test(eventId)) {
    notify('That scan link has no valid event id: choose the event below.', 'error');
    eventId = null;
  }
  if (eventId) await scanner();
  else await chooseEvent(user);
});
