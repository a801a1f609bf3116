// My tickets (`/app/tickets`): the signed-in buyer's tickets from
// `GET /tickets/user/{id}`, grouped by event, each with its QR code (an <img>
// of the ticket's signed `qr_link`, which needs no token) and, before the
// event, a cancel button (confirmed in a <dialog>, then `POST /tickets/{id}/cancel`).

import { api, money, requireSession } from './api.js';
import { el, fail, notify, put, start, when } from './ui.js';

const PER_PAGE = 100;
const STATUS_WORDS = { valid: 'Valid', used: 'Used', cancelled: 'Cancelled', refunded: 'Refunded' };
const $ = (id) => document.getElementById(id);

/** `A-12` → `Row A seat 12`. */
function seatWords(label) {
  if (!label) return 'General admission';
  const cut = label.lastIndexOf('-');
  return cut > 0 ? `Row ${label.slice(0, cut)} seat ${label.slice(cut + 1)}` : label;
}

async function allTickets(userId) {
  const tickets = [];
  for (let page = 1; page <= 100; page++) {
    const body = await api('GET', `/tickets/user/${encodeURIComponent(userId)}?page=${page}&per_page=${PER_PAGE}`);
    tickets.push(...body.tickets);
    if (body.tickets.length < PER_PAGE) break;
  }
  return tickets;
}

/** Asks before cancelling; resolves true to go ahead. */
function confirmCancel(ticket) {
  const dialog = $('cancel-dialog');
  put(
    $('cancel-text'),
    `${ticket.event_title}: ${ticket.section}, ${seatWords(ticket.seat_number)}. ` +
      `You get ${money(ticket.price, ticket.currency)} back and the seat goes back on sale. This cannot be undone.`,
  );
  return new Promise((resolve) => {
    dialog.returnValue = '';
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'cancel'), { once: true });
    dialog.showModal();
    $('cancel-keep').focus();
  });
}

function statusBadge(status) {
  const cls = status === 'valid' ? 'badge on' : status === 'cancelled' ? 'badge off' : 'badge';
  return el('span', { class: `${cls} ticket-status` }, STATUS_WORDS[status] || status);
}

function ticketCard(ticket) {
  const upcoming = Date.parse(ticket.event_date) > Date.now();
  const where = `${ticket.section}, ${seatWords(ticket.seat_number)}`;
  const node = el('article', {
    class: 'ticket',
    'data-ticket-id': ticket.ticket_id,
    'data-status': ticket.status,
    'aria-label': `Ticket: ${where}`,
  });
  const info = el(
    'div',
    { class: 'info' },
    el('p', { class: 'seat-name' }, el('span', { class: 'ticket-seat', 'data-seat': ticket.seat_number || '' }, seatWords(ticket.seat_number))),
    el('p', { class: 'ticket-section' }, ticket.section),
    el('p', { class: 'ticket-price' }, money(ticket.price, ticket.currency)),
    el('p', {}, statusBadge(ticket.status)),
    el('p', { class: 'small muted' }, `Bought ${when(ticket.purchase_date)}`),
  );
  if (ticket.status !== 'cancelled') {
    node.append(
      el('img', {
        class: 'qr',
        src: ticket.qr_link,
        alt: `QR code for ${ticket.event_title}, ${where}`,
        width: 240,
        height: 240,
        loading: 'lazy',
        decoding: 'async',
      }),
    );
  }
  node.append(info);
  if (ticket.status === 'valid' && upcoming) {
    const button = el(
      'button',
      {
        type: 'button',
        class: 'secondary cancel-ticket',
        'aria-label': `Cancel ticket: ${where}`,
        onclick: () => cancel(ticket, node, button),
      },
      'Cancel ticket',
    );
    info.append(button);
  }
  return node;
}

async function cancel(ticket, node, button) {
  if (!(await confirmCancel(ticket))) {
    button.focus();
    return;
  }
  button.disabled = true;
  try {
    const answer = await api('POST', `/tickets/${encodeURIComponent(ticket.ticket_id)}/cancel`);
    ticket.status = answer.status || 'cancelled';
    node.setAttribute('data-status', ticket.status);
    node.querySelector('.qr')?.remove();
    const info = node.querySelector('.info');
    info.querySelector('.ticket-status').replaceWith(statusBadge(ticket.status));
    button.remove();
    let refund = '';
    if (answer.refund_amount !== undefined) {
      const amount = money(answer.refund_amount, ticket.currency);
      refund =
        answer.refund_status === 'succeeded'
          ? `Refunded ${amount}.`
          : answer.refund_status === 'pending'
            ? `Refund of ${amount} is on its way.`
            : `The refund of ${amount} failed; the organizer has been told.`;
      info.append(el('p', { class: 'refund' }, refund));
    }
    notify(`Ticket cancelled (${seatWords(ticket.seat_number)}). ${refund}`, 'ok');
    info.setAttribute('tabindex', '-1');
    info.focus();
  } catch (e) {
    fail(e);
    button.disabled = false;
  }
}

start(async () => {
  const user = await requireSession();
  const container = $('tickets');
  const status = $('tickets-status');
  let tickets;
  try {
    tickets = await allTickets(user.user_id || user.id);
  } finally {
    container.setAttribute('aria-busy', 'false');
  }
  if (!tickets.length) {
    put(status, '');
    put(container, el('div', { class: 'card' }, el('p', {}, 'You have no tickets yet.'), el('p', {}, el('a', { href: '/' }, 'Find an event'))));
    return;
  }
  // Group by event: upcoming events first (soonest first), then past ones.
  const groups = new Map();
  for (const t of tickets) {
    if (!groups.has(t.event_id)) groups.set(t.event_id, []);
    groups.get(t.event_id).push(t);
  }
  const now = Date.now();
  const ordered = [...groups.values()].sort((a, b) => {
    const da = Date.parse(a[0].event_date);
    const db = Date.parse(b[0].event_date);
    const pa = da < now;
    const pb = db < now;
    if (pa !== pb) return pa ? 1 : -1;
    return pa ? db - da : da - db;
  });
  const valid = tickets.filter((t) => t.status === 'valid').length;
  put(status, `${tickets.length} ticket${tickets.length === 1 ? '' : 's'} for ${groups.size} event${groups.size === 1 ? '' : 's'}, ${valid} valid.`);
  put(
    container,
    ordered.map((list) => {
      const first = list[0];
      const headingId = `event-${first.event_id}`;
      list.sort((a, b) => (a.seat_number || '').localeCompare(b.seat_number || '', undefined, { numeric: true }));
      return el(
        'section',
        { class: 'card event-tickets', 'aria-labelledby': headingId, 'data-event-id': first.event_id },
        el('h2', { id: headingId }, el('a', { href: `/app/events/${encodeURIComponent(first.event_id)}` }, first.event_title)),
        el('p', { class: 'event-when' }, el('time', { datetime: first.event_date }, when(first.event_date)), ` · ${first.venue_name}`),
        el('div', { class: 'ticket-grid' }, list.map(ticketCard)),
      );
    }),
  );
});
