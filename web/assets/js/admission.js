// A waiting-room admission for one event, kept in this tab's sessionStorage
// between the waiting-room page and the event page (a navigation loses module
// memory). It is short-lived, bound to the buyer's account and this event, and
// useless without the access token, which never leaves memory.

const key = (eventId) => `boxoffice-admission-${eventId}`;

/** The admission token for `eventId`, if one is kept and not yet expired. */
export function admissionFor(eventId) {
  try {
    const kept = JSON.parse(sessionStorage.getItem(key(eventId)) || 'null');
    if (kept && Date.parse(kept.expires_at) > Date.now()) return kept;
  } catch {
    // Unreadable: as if none.
  }
  sessionStorage.removeItem(key(eventId));
  return null;
}

/** Keeps `admission` ({token, expires_at}) for `eventId`. */
export function keepAdmission(eventId, admission) {
  sessionStorage.setItem(key(eventId), JSON.stringify({ token: admission.token, expires_at: admission.expires_at }));
}

/** Forgets the admission for `eventId` (used or refused). */
export function dropAdmission(eventId) {
  sessionStorage.removeItem(key(eventId));
}

/** Headers that carry the admission for `eventId`, when there is one. */
export function admissionHeaders(eventId) {
  const kept = admissionFor(eventId);
  return kept ? { 'Queue-Admission': kept.token } : {};
}

/** The waiting-room page of `eventId`. */
export function queuePage(eventId) {
  return `/app/events/${encodeURIComponent(eventId)}/queue`;
}
