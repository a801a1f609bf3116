// The waiting-room page (`/app/events/{id}/queue`): joins the event's queue (one
// entry per account; joining again answers the same entry), then shows the place
// in line, people ahead, the estimate and a progress bar. The live stream's
// `queue` frames say how far admissions have got, so the page asks for its own
// admission the moment its turn comes (and polls slowly besides); once admitted it
// keeps the admission for the event page and moves the buyer there.

import { ApiProblem, api, requireSession } from './api.js';
import { keepAdmission } from './admission.js';
import { watch } from './live.js';
import { el, fail, notify, pathId, put, start, when } from './ui.js';

const $ = (id) => document.getElementById(id);
const POLL_MS = 10_000;

let eventId = '';
let firstAhead = null;
let place = null;
let stream = null;
let pollTimer = null;
let asking = false;

function duration(secs) {
  if (secs === null || secs === undefined) return 'unknown';
  if (secs < 60) return 'less than a minute';
  const minutes = Math.round(secs / 60);
  if (minutes < 60) return `about ${minutes} minute${minutes === 1 ? '' : 's'}`;
  const hours = Math.floor(minutes / 60);
  const rest = minutes % 60;
  return `about ${hours} h ${rest} min`;
}

function eventPage() {
  return `/app/events/${encodeURIComponent(eventId)}`;
}

function show(q) {
  const box = $('queue');
  box.dataset.state = q.state;
  place = q.position ?? null;
  const bar = $('queue-progress-wrap');
  $('go').hidden = true;
  switch (q.state) {
    case 'pre_queue':
      put($('queue-headline'), 'You are in the waiting room.');
      put($('queue-detail'), q.opens_at ? `The sale opens at ${when(q.opens_at)}. Then everyone here gets a random place in line, and people are let in in that order.` : 'The sale opens soon.');
      bar.hidden = true;
      $('queue-estimate').textContent = '';
      break;
    case 'waiting': {
      if (q.position === null || q.position === undefined) {
        put($('queue-headline'), 'The sale has opened: drawing places…');
        put($('queue-detail'));
        bar.hidden = true;
        break;
      }
      put($('queue-headline'), el('span', {}, 'Your place in line: ', el('strong', { id: 'queue-position' }, q.position.toLocaleString())));
      const ahead = q.ahead ?? Math.max(0, q.position - 1);
      if (firstAhead === null || ahead > firstAhead) firstAhead = ahead;
      put($('queue-detail'), ahead === 0 ? 'You are next.' : `${ahead.toLocaleString()} ${ahead === 1 ? 'person is' : 'people are'} ahead of you.`);
      const done = firstAhead > 0 ? Math.round(((firstAhead - ahead) / firstAhead) * 100) : 100;
      bar.hidden = false;
      $('queue-progress').value = done;
      $('queue-progress-label').textContent = `${done}% of the way since you arrived`;
      $('queue-estimate').textContent = `Estimated wait: ${duration(q.estimated_wait_secs)}.`;
      if (q.sold_out) notify('Everything is sold for now. You stay in line in case tickets come back.', 'info');
      break;
    }
    case 'admitted':
      if (q.admission) {
        keepAdmission(eventId, q.admission);
        put($('queue-headline'), 'It is your turn!');
        put($('queue-detail'), `Choose your seats before ${when(q.admission.expires_at)}. Taking you there…`);
        bar.hidden = false;
        $('queue-progress').value = 100;
        $('queue-progress-label').textContent = '';
        $('queue-estimate').textContent = '';
        $('go').hidden = false;
        stop();
        setTimeout(() => location.assign(eventPage()), 800);
      }
      break;
    case 'used':
      put($('queue-headline'), 'You have been let in and made a hold.');
      put($('queue-detail'), 'Go back to the event to pay for your seats.');
      $('go').hidden = false;
      stop();
      break;
    case 'expired':
      put($('queue-headline'), 'Your turn came and went.');
      put($('queue-detail'), 'Your admission expired before a hold was made, so the place went to the next person in line.');
      bar.hidden = true;
      $('queue-estimate').textContent = '';
      stop();
      break;
    case 'sold_out':
      put($('queue-headline'), 'Sold out.');
      put($('queue-detail'), 'Every ticket has been sold. Sorry!');
      bar.hidden = true;
      $('queue-estimate').textContent = '';
      stop();
      break;
    default:
      put($('queue-headline'), `Waiting room: ${q.state}`);
  }
}

function stop() {
  if (stream) stream.close();
  stream = null;
  clearTimeout(pollTimer);
}

async function ask() {
  if (asking) return;
  asking = true;
  try {
    show(await api('GET', `/events/${encodeURIComponent(eventId)}/queue/me`));
  } catch (e) {
    if (!(e instanceof ApiProblem && e.code === 'network')) fail(e);
  } finally {
    asking = false;
  }
}

function poll() {
  clearTimeout(pollTimer);
  pollTimer = setTimeout(async () => {
    await ask();
    if ($('queue').dataset.state === 'waiting' || $('queue').dataset.state === 'pre_queue') poll();
  }, POLL_MS);
}

start(async () => {
  eventId = pathId('/app/events/');
  $('event-link').href = eventPage();
  $('go').href = eventPage();
  await requireSession();
  const details = await api('GET', `/events/${encodeURIComponent(eventId)}/details`);
  $('queue-event').textContent = `${details.title} · ${when(details.event_date)} · ${details.venue_name}`;
  document.title = `Waiting room · ${details.title} · boxoffice`;
  let entry;
  try {
    entry = await api('POST', `/events/${encodeURIComponent(eventId)}/queue`);
  } catch (e) {
    if (e instanceof ApiProblem && e.code === 'no_waiting_room') {
      // Nothing to wait for: straight to the seats.
      location.replace(eventPage());
      return;
    }
    throw e;
  }
  show(entry);
  if (['waiting', 'pre_queue'].includes(entry.state)) {
    // Spread over `spread` ms: at the opening every page asks at once otherwise.
    const askSoon = (spread) => setTimeout(ask, Math.random() * spread);
    let opened = entry.state !== 'pre_queue';
    stream = watch(eventId, {
      onQueue(frame) {
        if (frame.sold_out && !frame.waitlist) {
          askSoon(2000);
          return;
        }
        if (!opened && frame.opened) {
          opened = true;
          askSoon(3000);
          return;
        }
        // Our turn: ask for the admission at once.
        if (place !== null && frame.admitted_through >= place) ask();
      },
    });
    poll();
  }
});
