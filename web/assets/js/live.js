// The live seat map: reads `GET /events/{id}/live` (Server-Sent Events) through
// fetch rather than EventSource, so an organizer's bearer token can go with it
// (and bring the `stats` frames). Reconnects with `Last-Event-ID` after a drop,
// backing off up to 10 s; the server answers with the changes since then or a
// fresh snapshot.

import { refresh, token } from './api.js';

/** Splits an SSE byte stream into frames `{event, id, data}`. */
function frames(onFrame) {
  let buffer = '';
  let frame = { event: 'message', id: null, data: [] };
  return (text) => {
    buffer += text;
    let newline;
    while ((newline = buffer.search(/\r\n|\r|\n/)) >= 0) {
      const line = buffer.slice(0, newline);
      buffer = buffer.slice(newline + (buffer.startsWith('\r\n', newline) ? 2 : 1));
      if (line === '') {
        if (frame.data.length) onFrame({ event: frame.event, id: frame.id, data: frame.data.join('\n') });
        frame = { event: 'message', id: null, data: [] };
        continue;
      }
      if (line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
      if (field === 'event') frame.event = value;
      else if (field === 'id') frame.id = value;
      else if (field === 'data') frame.data.push(value);
    }
  };
}

/**
 * Watches an event's seats. Handlers: `onSnapshot(seats)`, `onChanges(changes)`,
 * `onStats(stats)`, `onQueue(waitingRoom)`, `onState('live' | 'reconnecting' | 'closed', detail)`.
 * `withToken` sends the access token (organizers get `stats` frames).
 */
export function watch(eventId, handlers, { withToken = false } = {}) {
  const controller = new AbortController();
  let lastId = null;
  let delay = 500;
  let closed = false;
  const state = (name, detail) => handlers.onState && handlers.onState(name, detail);

  const dispatch = ({ event, id, data }) => {
    let body;
    try {
      body = JSON.parse(data);
    } catch {
      return;
    }
    if (id) lastId = id;
    if (event === 'snapshot' && handlers.onSnapshot) handlers.onSnapshot(body);
    else if (event === 'changes' && handlers.onChanges) handlers.onChanges(body);
    else if (event === 'stats' && handlers.onStats) handlers.onStats(body);
    else if (event === 'queue' && handlers.onQueue) handlers.onQueue(body);
  };

  const connect = async () => {
    const headers = { Accept: 'text/event-stream' };
    if (lastId) headers['Last-Event-ID'] = lastId;
    if (withToken && token()) headers.Authorization = `Bearer ${token()}`;
    let response = await fetch(`/events/${encodeURIComponent(eventId)}/live`, {
      headers,
      signal: controller.signal,
      credentials: 'same-origin',
      cache: 'no-store',
    });
    if (response.status === 401 && withToken && (await refresh())) {
      headers.Authorization = `Bearer ${token()}`;
      response = await fetch(`/events/${encodeURIComponent(eventId)}/live`, { headers, signal: controller.signal });
    }
    if (!response.ok || !response.body) {
      const problem = await response.json().catch(() => ({}));
      const error = new Error(problem.detail || `live stream answered ${response.status}`);
      error.status = response.status;
      throw error;
    }
    state('live');
    delay = 500;
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    const feed = frames(dispatch);
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      feed(value);
    }
  };

  const loop = async () => {
    while (!closed) {
      try {
        await connect();
      } catch (error) {
        if (closed || error.name === 'AbortError') break;
        // 4xx other than overload will not fix itself: stop and say so.
        if (error.status && error.status >= 400 && error.status < 500 && error.status !== 429) {
          state('closed', error);
          return;
        }
      }
      if (closed) break;
      state('reconnecting');
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, 10_000);
    }
  };
  loop();

  return {
    close() {
      closed = true;
      controller.abort();
    },
  };
}
