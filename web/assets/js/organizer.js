// Organizer: "My events" — `GET /organizer/events` (paged, newest first) as the
// table #my-events with each event's status, capacity, tickets sold and links to
// its dashboard, editor and scanner. Also the helpers the editor and dashboard
// share: status badge, date-input conversions, and the publish / close-sale /
// cancel-event buttons with their dialogs (close asks to confirm, cancel asks
// for a reason).

import { api, requireSession } from './api.js';
import { el, fail, notify, put, start, when } from './ui.js';

const PER_PAGE = 20;

const STATUS_WORDS = { draft: 'Draft', published: 'On sale / published', closed: 'Sale closed', cancelled: 'Cancelled' };

/** The badge for an event status (draft, published, closed, cancelled). */
export function statusBadge(status) {
  return el('span', { class: `badge status-${status}`, 'data-status': status, title: STATUS_WORDS[status] || status }, status);
}

/** ISO instant → the value of a `datetime-local` input (local time, minutes). */
export function toLocalInput(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** A `datetime-local` value (local time) → RFC 3339 in UTC, or null when empty or invalid. */
export function fromLocalInput(value) {
  if (!value) return null;
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? null : d.toISOString();
}

/** The `<dialog>` asking for a cancellation reason; resolves to the reason, or null when dismissed. */
function askCancelReason() {
  let dialog = document.getElementById('cancel-dialog');
  if (!dialog) {
    const reason = el('textarea', { id: 'cancel-reason', rows: 3, maxlength: 1000, required: true, 'aria-describedby': 'cancel-reason-error' });
    dialog = el('dialog', { id: 'cancel-dialog', 'aria-labelledby': 'cancel-heading' },
      el('form', { id: 'cancel-form', method: 'dialog', novalidate: true },
        el('h2', { id: 'cancel-heading' }, 'Cancel this event?'),
        el('p', {}, 'Every ticket is cancelled and refunded, active holds are released and buyers are emailed. This cannot be undone.'),
        el('div', { class: 'field' },
          el('label', { for: 'cancel-reason' }, 'Reason shown to buyers'),
          reason,
          el('p', { class: 'field-error', id: 'cancel-reason-error', 'aria-live': 'polite' })),
        el('div', { class: 'actions' },
          el('button', { type: 'submit', id: 'cancel-confirm', class: 'danger', value: 'confirm' }, 'Cancel the event'),
          el('button', { type: 'button', id: 'cancel-dismiss', class: 'secondary', onclick: () => dialog.close('dismiss') }, 'Keep it'))));
    document.body.append(dialog);
    dialog.querySelector('form').addEventListener('submit', (e) => {
      const text = reason.value.trim();
      if (!text) {
        e.preventDefault();
        document.getElementById('cancel-reason-error').textContent = 'Say why, in a sentence buyers will read.';
        reason.setAttribute('aria-invalid', 'true');
        reason.focus();
      }
    });
  }
  const reason = document.getElementById('cancel-reason');
  reason.value = '';
  reason.removeAttribute('aria-invalid');
  document.getElementById('cancel-reason-error').textContent = '';
  dialog.returnValue = '';
  dialog.showModal();
  reason.focus();
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'confirm' ? reason.value.trim() : null), { once: true });
  });
}

/** A yes/no `<dialog>` (#close-dialog: #close-confirm / #close-dismiss); resolves to true on yes. */
function confirmClose() {
  let dialog = document.getElementById('close-dialog');
  if (!dialog) {
    dialog = el('dialog', { id: 'close-dialog', 'aria-labelledby': 'close-heading' },
      el('form', { method: 'dialog' },
        el('h2', { id: 'close-heading' }, 'Close the sale now?'),
        el('p', {}, 'Nothing more can be held or bought. Tickets already sold stay valid. A closed sale cannot be reopened.'),
        el('div', { class: 'actions' },
          el('button', { type: 'submit', id: 'close-confirm', value: 'confirm' }, 'Close the sale'),
          el('button', { type: 'button', id: 'close-dismiss', class: 'secondary', onclick: () => dialog.close('dismiss') }, 'Keep selling'))));
    document.body.append(dialog);
  }
  dialog.returnValue = '';
  dialog.showModal();
  document.getElementById('close-dismiss').focus();
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'confirm'), { once: true });
  });
}

/**
 * Wires #publish, #close-sale and #cancel-event for one event. `getStatus()` is the
 * current status; `before()` (optional) runs before publishing (the editor saves);
 * `changed(event)` gets the event after each transition.
 */
export function lifecycleButtons(eventId, { getStatus, before, changed }) {
  const publish = document.getElementById('publish');
  const close = document.getElementById('close-sale');
  const cancel = document.getElementById('cancel-event');
  const id = encodeURIComponent(eventId);
  const busy = async (button, work) => {
    button.disabled = true;
    button.setAttribute('aria-busy', 'true');
    try {
      await work();
    } catch (e) {
      fail(e);
    } finally {
      button.disabled = false;
      button.removeAttribute('aria-busy');
      refresh();
    }
  };
  const refresh = () => {
    const status = getStatus();
    // `new`: the editor before the event exists (its publish button saves first).
    if (publish) publish.hidden = status !== 'draft' && status !== 'new';
    if (close) close.hidden = status !== 'published';
    if (cancel) cancel.hidden = !status || status === 'new' || status === 'cancelled';
  };
  publish?.addEventListener('click', () => busy(publish, async () => {
    if (before && (await before()) === false) return;
    const event = await api('POST', `/events/${id}/publish`);
    notify('Published: the event is listed and sells within its sales window.', 'ok');
    await changed(event, 'published');
  }));
  close?.addEventListener('click', () => busy(close, async () => {
    if (!(await confirmClose())) return;
    const event = await api('POST', `/events/${id}/close`);
    notify('Sale closed. Tickets already sold stay valid.', 'ok');
    await changed(event, 'closed');
  }));
  cancel?.addEventListener('click', () => busy(cancel, async () => {
    const reason = await askCancelReason();
    if (reason === null) return;
    notify('Cancelling: releasing holds and refunding tickets…', 'info');
    const out = await api('POST', `/events/${id}/cancel`, { reason });
    const c = out.cancellation || {};
    const parts = ['Event cancelled.'];
    if (c.tickets_cancelled !== undefined) parts.push(`${c.tickets_cancelled} ticket(s) cancelled.`);
    if (c.status === 'in_progress' || c.tickets_remaining > 0 || c.refunds?.pending > 0) {
      parts.push('Cancelling and refunding the rest continues in the background.');
    }
    notify(parts.join(' '), 'ok');
    await changed(out, 'cancelled');
  }));
  refresh();
  return { refresh };
}

async function myEvents() {
  await requireSession(['organizer', 'admin']);
  const body = document.querySelector('#my-events tbody');
  const state = document.getElementById('my-events-state');
  const prev = document.getElementById('prev-page');
  const next = document.getElementById('next-page');
  const label = document.getElementById('page-label');
  let page = Math.max(1, Number(new URLSearchParams(location.search).get('page')) || 1);

  const load = async () => {
    state.textContent = 'Loading…';
    const list = await api('GET', `/organizer/events?page=${page}&per_page=${PER_PAGE}`);
    put(body, list.events.map((e) => {
      const id = encodeURIComponent(e.event_id);
      return el('tr', { 'data-event-id': e.event_id },
        el('th', { scope: 'row' }, el('a', { href: `/app/organizer/events/${id}` }, e.title)),
        el('td', { 'data-label': 'Date' }, when(e.event_date)),
        el('td', { 'data-label': 'Status' }, statusBadge(e.status)),
        el('td', { class: 'num', 'data-label': 'Capacity' }, Number(e.capacity).toLocaleString()),
        el('td', { class: 'num', 'data-label': 'Sold' }, Number(e.sold).toLocaleString()),
        el('td', { class: 'links' },
          el('a', { href: `/app/organizer/events/${id}`, class: 'dash-link', 'aria-label': `Dashboard of ${e.title}` }, 'Dashboard'),
          el('a', { href: `/app/organizer/events/${id}/edit`, class: 'edit-link', 'aria-label': `Edit ${e.title}` }, 'Edit'),
          el('a', { href: `/app/scan/${id}`, class: 'scan-link', 'aria-label': `Scan tickets of ${e.title}` }, 'Scan')),
      );
    }));
    if (list.events.length === 0) {
      state.textContent = page === 1 ? 'No events yet. Create one with “New event”.' : 'No more events.';
    } else {
      state.textContent = `${list.events.length} event${list.events.length === 1 ? '' : 's'} on this page.`;
    }
    label.textContent = `Page ${page}`;
    prev.disabled = page <= 1;
    next.disabled = list.events.length < PER_PAGE;
  };
  const go = async (delta) => {
    page = Math.max(1, page + delta);
    history.replaceState(null, '', page > 1 ? `?page=${page}` : location.pathname);
    await load().catch(fail);
  };
  prev.addEventListener('click', () => go(-1));
  next.addEventListener('click', () => go(1));
  await load();
}

// The "My events" page runs only where its table is (modules run once the
// document is parsed); the editor and dashboard import only the helpers.
if (document.getElementById('my-events')) start(myEvents);
