//! Event search, answered from memory.
//!
//! `GET /events/search` filters, ranks, counts and pages published events in an
//! in-memory index; PostgreSQL then returns only the rows of the page, by primary
//! key. A query touches memory proportional to its matches (a word's posting list)
//! or, without words, one compact record per published event — never a heap page
//! per match, which is what kept full-text search in PostgreSQL at 40–60 ms for a
//! common word over 100k events.
//!
//! **Freshness.** A trigger stamps every inserted or updated `events` row with the
//! id of the transaction that wrote it (`search_xid`), and every deleted row leaves
//! a tombstone in `event_deletions`. [`SearchIndex::sync`] re-reads, in one
//! snapshot, the rows stamped at or after the oldest transaction that was still
//! running at its previous read (`pg_snapshot_xmin`), so a transaction that commits
//! late is never skipped, whoever wrote it (this process, another, or plain SQL).
//! It runs every [`SYNC_EVERY`] and at once after this process changes an event, so
//! an organizer sees their own change in the next search.
//!
//! **Matching** (the `websearch_to_tsquery` syntax): words are case-insensitive
//! whole tokens (runs of letters and digits) found in the title, venue, category or
//! description; all words must match; `"quoted words"` must appear next to each
//! other in one field (so must the parts of `rock-n-roll`); `-word` excludes;
//! `a or b` matches either side (AND binds tighter than OR).
//!
//! **Relevance** (`sort=relevance`, the default with `q`): each matched word or
//! phrase scores 10 if it is in the title, 4 in the venue or category, 2 in the
//! description (summed over the fields it is in); ties go to the earlier event.
//!
//! One file because it is one data structure: the packed records, postings, the
//! date order and the sync that keeps them are read and written together under
//! one lock; the last quarter is its tests (including a churn test against a scan).

use chrono::{DateTime, Utc};
use rustc_hash::FxHashMap;
use sqlx::PgPool;
use std::collections::BinaryHeap;
use std::sync::RwLock;
use std::time::Duration;
use uuid::Uuid;

/// How often the index re-reads changed events.
pub const SYNC_EVERY: Duration = Duration::from_millis(500);
/// Changes applied per write-lock acquisition, so a bulk load never stalls searches.
const APPLY_CHUNK: usize = 1_000;
/// Tombstones older than this are pruned (every index has long read them by then).
const TOMBSTONE_RETENTION: &str = "1 day";

/// Field weights for relevance, by field bit.
const TITLE: u8 = 1;
const VENUE: u8 = 2;
const DESCRIPTION: u8 = 4;

fn weight(fields: u8) -> i64 {
    let mut w = 0;
    if fields & TITLE != 0 {
        w += 10;
    }
    if fields & VENUE != 0 {
        w += 4;
    }
    if fields & DESCRIPTION != 0 {
        w += 2;
    }
    w
}

/// One published event as the index needs it.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct IndexedEvent {
    pub event_id: Uuid,
    pub title: String,
    pub description: String,
    pub category: Option<String>,
    pub venue_name: String,
    pub event_date: DateTime<Utc>,
    pub min_price: Option<i64>,
    pub max_price: Option<i64>,
    pub total_seats: i32,
    pub taken_count: i32,
}

/// What a search keeps (all must hold).
#[derive(Clone, Debug, Default)]
pub struct Filters {
    /// Exact category.
    pub category: Option<String>,
    /// Events at or after (inclusive).
    pub from: Option<DateTime<Utc>>,
    /// Events before (exclusive).
    pub to: Option<DateTime<Utc>>,
    /// Some ticket at or under this price (`min_price <= max_price`).
    pub max_price: Option<i64>,
    /// Some ticket at or over this price (`max_price >= min_price`).
    pub min_price: Option<i64>,
    /// Only events with seats left (by the last availability report).
    pub available: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// Earliest first.
    Date,
    /// Latest first.
    DateDesc,
    /// Cheapest ticket first; events without prices last.
    Price,
    /// Dearest ticket first; events without prices last.
    PriceDesc,
    /// Best score first, then earliest (needs words).
    Relevance,
}

/// A page of results and how many matched in all.
#[derive(Debug, PartialEq, Eq)]
pub struct Hits {
    pub ids: Vec<Uuid>,
    pub total: u64,
}

/// The search index of published events, kept in step with PostgreSQL.
pub struct SearchIndex {
    index: RwLock<Index>,
    /// The transaction-id floor of the next sync; the lock serialises syncs.
    floor: tokio::sync::Mutex<i64>,
    db: PgPool,
}

impl SearchIndex {
    /// An empty index; [`SearchIndex::sync`] fills it.
    pub fn new(db: PgPool) -> Self {
        Self { index: RwLock::new(Index::default()), floor: tokio::sync::Mutex::new(0), db }
    }

    /// How many published events the index holds.
    pub fn len(&self) -> usize {
        self.read().live
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Searches; `words` uses the web-search syntax described in the module docs.
    pub fn search(&self, words: Option<&str>, filters: &Filters, order: Order, offset: usize, limit: usize) -> Hits {
        self.read().search(words, filters, order, offset, limit)
    }

    /// Reads what changed in `events` since the last sync and applies it.
    pub async fn sync(&self) -> Result<usize, sqlx::Error> {
        let mut floor = self.floor.lock().await;
        let mut tx = self.db.begin().await?;
        // One snapshot for the floor, the rows and the tombstones.
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY").execute(&mut *tx).await?;
        let next: i64 = sqlx::query_scalar("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
            .fetch_one(&mut *tx)
            .await?;
        // Rows no longer published come back with listed = false and leave the index.
        let rows: Vec<ChangedRow> = sqlx::query_as(
            "SELECT status = 'published' AS listed, event_id, title, description, category, venue_name, event_date,
                    min_price, max_price, total_seats, taken_count
             FROM events WHERE search_xid >= $1::text::xid8 AND ($1 > 0 OR status = 'published')",
        )
        .bind(*floor)
        .fetch_all(&mut *tx)
        .await?;
        let deleted: Vec<Uuid> =
            sqlx::query_scalar("SELECT event_id FROM event_deletions WHERE deleted_xid >= $1::text::xid8")
                .bind(*floor)
                .fetch_all(&mut *tx)
                .await?;
        tx.commit().await?;
        if *floor == 0 {
            let prune =
                format!("DELETE FROM event_deletions WHERE deleted_at < now() - interval '{TOMBSTONE_RETENTION}'");
            sqlx::query(sqlx::AssertSqlSafe(prune)).execute(&self.db).await?;
        }

        let changed = rows.len() + deleted.len();
        let mut changes = rows
            .into_iter()
            .map(|r| if r.listed { Change::Upsert(r.event) } else { Change::Remove(r.event.event_id) })
            .chain(deleted.into_iter().map(Change::Remove))
            .peekable();
        // In chunks, so searches run between them; a search meanwhile scans instead
        // of using the date order, which is rebuilt once at the end.
        while changes.peek().is_some() {
            let mut index = self.write();
            for change in changes.by_ref().take(APPLY_CHUNK) {
                match change {
                    Change::Upsert(event) => index.upsert(event),
                    Change::Remove(id) => index.remove(id),
                }
            }
        }
        if changed > 0 {
            self.write().finish();
        }
        *floor = next;
        metrics::gauge!("boxoffice_search_indexed_events").set(self.len() as f64);
        Ok(changed)
    }

    /// Syncs every [`SYNC_EVERY`] until the task is dropped.
    pub async fn keep_in_sync(self: std::sync::Arc<Self>) {
        let mut tick = tokio::time::interval(SYNC_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = self.sync().await {
                metrics::counter!("boxoffice_search_sync_failures_total").increment(1);
                tracing::debug!(error = %e, "search index sync failed; retrying");
            }
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Index> {
        self.index.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// What a sync does to one event.
enum Change {
    Upsert(IndexedEvent),
    Remove(Uuid),
}

#[derive(sqlx::FromRow)]
struct ChangedRow {
    listed: bool,
    #[sqlx(flatten)]
    event: IndexedEvent,
}

/// Splits text into lower-cased tokens: runs of letters and digits.
pub fn tokens(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric()).filter(|t| !t.is_empty()).map(str::to_lowercase)
}

/// One operand of a query: a word, or words that must be adjacent.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Operand {
    negated: bool,
    /// One token, or a phrase.
    tokens: Vec<String>,
}

/// Parses the web-search syntax into OR-ed groups of AND-ed operands. Words without
/// a letter or digit are dropped; an empty result matches nothing.
fn parse(q: &str) -> Vec<Vec<Operand>> {
    let mut groups = vec![Vec::new()];
    let mut rest = q;
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            break;
        }
        let negated = rest.len() > 1 && rest.starts_with('-') && !rest[1..].starts_with(char::is_whitespace);
        if negated {
            rest = &rest[1..];
        }
        let (text, quoted) = if let Some(inner) = rest.strip_prefix('"') {
            let end = inner.find('"').unwrap_or(inner.len());
            let text = &inner[..end];
            rest = inner.get(end + 1..).unwrap_or("");
            (text, true)
        } else {
            let end = rest.find(|c: char| c.is_whitespace() || c == '"').unwrap_or(rest.len());
            let text = &rest[..end];
            rest = &rest[end..];
            (text, false)
        };
        if !negated && !quoted && text.eq_ignore_ascii_case("or") {
            if groups.last().is_some_and(|g| !g.is_empty()) {
                groups.push(Vec::new());
            }
            continue;
        }
        let tokens: Vec<String> = tokens(text).collect();
        if !tokens.is_empty() {
            groups.last_mut().expect("one group at least").push(Operand { negated, tokens });
        }
    }
    groups.retain(|g| !g.is_empty());
    groups
}

/// An operand with its words looked up: `None` when some word is in no event.
struct Resolved {
    negated: bool,
    terms: Option<Box<[u32]>>,
}

/// What every query reads of an event, packed so a scan of 100k events streams
/// ~5 MB; the rest ([`Doc`]) is read only for words and phrases.
#[derive(Clone, Copy, Default)]
struct Hot {
    /// Microseconds since the epoch.
    date: i64,
    min_price: i64,
    max_price: i64,
    /// The event id as two big-endian halves: sorts like the UUID.
    id: (u64, u64),
    /// Interned category (0: none).
    category: u32,
    total: i32,
    taken: i32,
    flags: u8,
}

/// Orders results: two ranks, then the event id; smaller first.
type SortKey = (i64, i64, (u64, u64));

const LIVE: u8 = 1;
const HAS_MIN: u8 = 2;
const HAS_MAX: u8 = 4;

/// [`Filters`] in the index's terms.
struct Wanted {
    category: Option<u32>,
    from: i64,
    to: i64,
    max_price: Option<i64>,
    min_price: Option<i64>,
    available: bool,
}

impl Hot {
    fn passes(&self, w: &Wanted) -> bool {
        self.date >= w.from
            && self.date < w.to
            && w.category.is_none_or(|c| self.category == c)
            && w.max_price.is_none_or(|max| self.flags & HAS_MIN != 0 && self.min_price <= max)
            && w.min_price.is_none_or(|min| self.flags & HAS_MAX != 0 && self.max_price >= min)
            && (!w.available || self.taken < self.total)
    }

    /// Smaller sorts first.
    fn key(&self, order: Order, score: i64) -> SortKey {
        match order {
            Order::Date => (self.date, 0, self.id),
            Order::DateDesc => (-self.date, 0, self.id),
            Order::Price => (i64::from(self.flags & HAS_MIN == 0), self.min_price, self.id),
            Order::PriceDesc => (i64::from(self.flags & HAS_MAX == 0), -self.max_price, self.id),
            Order::Relevance => (-score, self.date, self.id),
        }
    }
}

#[derive(Default)]
struct Index {
    /// By slot; a free slot is not [`LIVE`].
    hot: Vec<Hot>,
    docs: Vec<Option<Doc>>,
    free: Vec<u32>,
    by_id: FxHashMap<Uuid, u32>,
    /// Live slots by date, for date-range filters; rebuilt by [`Index::finish`].
    by_date: Vec<(i64, u32)>,
    by_date_stale: bool,
    /// Category → id from 1. Never forgotten (few distinct categories).
    categories: FxHashMap<Box<str>, u32>,
    /// Token → term id. Never forgotten (the vocabulary is bounded).
    terms: FxHashMap<Box<str>, u32>,
    /// Term id → (slot, fields) of the events that have it, sorted by slot.
    postings: Vec<Vec<(u32, u8)>>,
    live: usize,
}

/// What words and phrases need of an event.
struct Doc {
    /// Term ids in text order: the title, then venue and category, then the description.
    tokens: Box<[u32]>,
    /// Where the title's and the venue/category's tokens end.
    ends: [u32; 2],
    /// Distinct term ids, sorted, each with the fields it appears in.
    terms: Box<[(u32, u8)]>,
}

impl Doc {
    fn fields_of(&self, term: u32) -> u8 {
        self.terms.binary_search_by_key(&term, |&(t, _)| t).map_or(0, |i| self.terms[i].1)
    }

    fn segments(&self) -> [(&[u32], u8); 3] {
        let [a, b] = self.ends.map(|e| e as usize);
        [(&self.tokens[..a], TITLE), (&self.tokens[a..b], VENUE), (&self.tokens[b..], DESCRIPTION)]
    }

    /// The fields where the operand occurs (0: nowhere).
    fn fields_matching(&self, terms: &[u32]) -> u8 {
        match terms {
            [one] => self.fields_of(*one),
            phrase => {
                if phrase.iter().any(|&t| self.fields_of(t) == 0) {
                    return 0;
                }
                self.segments()
                    .iter()
                    .filter(|(seg, _)| seg.windows(phrase.len()).any(|w| w == phrase))
                    .fold(0, |acc, (_, field)| acc | field)
            }
        }
    }
}

impl Index {
    fn term_id(&mut self, token: String) -> u32 {
        if let Some(&id) = self.terms.get(token.as_str()) {
            return id;
        }
        let id = u32::try_from(self.postings.len()).expect("fewer than 4 billion distinct words");
        self.terms.insert(token.into_boxed_str(), id);
        self.postings.push(Vec::new());
        id
    }

    fn category_id(&mut self, category: Option<&str>) -> u32 {
        let Some(category) = category else { return 0 };
        if let Some(&id) = self.categories.get(category) {
            return id;
        }
        let id = u32::try_from(self.categories.len() + 1).expect("fewer than 4 billion categories");
        self.categories.insert(category.into(), id);
        id
    }

    fn upsert(&mut self, e: IndexedEvent) {
        // A change that keeps the date (an availability report, a new title) keeps
        // the date order: the slot just freed is the one reused.
        let before = self.by_id.get(&e.event_id).map(|&slot| (self.hot[slot as usize].date, slot));
        let order_was_stale = self.by_date_stale;
        let mut tokens = Vec::new();
        let mut terms: Vec<(u32, u8)> = Vec::new();
        let mut ends = [0u32; 2];
        let venue_and_category = format!("{} {}", e.venue_name, e.category.as_deref().unwrap_or(""));
        let fields =
            [(e.title.as_str(), TITLE), (venue_and_category.as_str(), VENUE), (e.description.as_str(), DESCRIPTION)];
        for (i, (text, field)) in fields.into_iter().enumerate() {
            for token in self::tokens(text) {
                let term = self.term_id(token);
                tokens.push(term);
                terms.push((term, field));
            }
            if let Some(end) = ends.get_mut(i) {
                *end = u32::try_from(tokens.len()).unwrap_or(u32::MAX);
            }
        }
        let hot = Hot {
            date: e.event_date.timestamp_micros(),
            min_price: e.min_price.unwrap_or(0),
            max_price: e.max_price.unwrap_or(0),
            id: e.event_id.as_u64_pair(),
            category: self.category_id(e.category.as_deref()),
            total: e.total_seats,
            taken: e.taken_count,
            flags: LIVE
                | if e.min_price.is_some() { HAS_MIN } else { 0 }
                | if e.max_price.is_some() { HAS_MAX } else { 0 },
        };
        // Same words (an availability report, a new price or date): the postings stay.
        if let Some((date, slot)) = before
            && self.docs[slot as usize].as_ref().is_some_and(|d| *d.tokens == *tokens && d.ends == ends)
        {
            self.hot[slot as usize] = hot;
            self.by_date_stale = order_was_stale || date != hot.date;
            return;
        }
        self.remove(e.event_id);
        terms.sort_unstable();
        terms.dedup_by(|later, first| {
            let same = later.0 == first.0;
            if same {
                first.1 |= later.1;
            }
            same
        });
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.hot.push(Hot::default());
                self.docs.push(None);
                u32::try_from(self.docs.len() - 1).expect("fewer than 4 billion events")
            }
        };
        for &(t, fields) in &terms {
            let posting = &mut self.postings[t as usize];
            // Sorted by slot; a bulk load appends.
            let at = posting.partition_point(|&(s, _)| s < slot);
            posting.insert(at, (slot, fields));
        }
        self.hot[slot as usize] = hot;
        self.docs[slot as usize] =
            Some(Doc { tokens: tokens.into_boxed_slice(), ends, terms: terms.into_boxed_slice() });
        self.by_id.insert(e.event_id, slot);
        self.live += 1;
        self.by_date_stale = order_was_stale || before != Some((self.hot[slot as usize].date, slot));
    }

    fn remove(&mut self, id: Uuid) {
        let Some(slot) = self.by_id.remove(&id) else { return };
        let doc = self.docs[slot as usize].take().expect("an indexed event has a slot");
        for &(t, _) in doc.terms.iter() {
            let posting = &mut self.postings[t as usize];
            if let Ok(at) = posting.binary_search_by_key(&slot, |&(s, _)| s) {
                posting.remove(at);
            }
        }
        self.hot[slot as usize] = Hot::default();
        self.free.push(slot);
        self.live -= 1;
        self.by_date_stale = true;
    }

    /// Rebuilds the date order after changes (a sort of nearly sorted data).
    fn finish(&mut self) {
        if !self.by_date_stale {
            return;
        }
        self.by_date.clear();
        self.by_date.extend(
            self.hot.iter().enumerate().filter(|(_, h)| h.flags & LIVE != 0).map(|(slot, h)| (h.date, slot as u32)),
        );
        self.by_date.sort_unstable();
        self.by_date_stale = false;
    }

    fn resolve(&self, group: &[Operand]) -> Vec<Resolved> {
        group
            .iter()
            .map(|op| Resolved {
                negated: op.negated,
                terms: op.tokens.iter().map(|t| self.terms.get(t.as_str()).copied()).collect(),
            })
            .collect()
    }

    /// The events a group matches, as (slot, score) sorted by slot. Plain words
    /// intersect their postings (sorted by slot, carrying the fields: no event is
    /// read); phrases and exclusions are then checked on what is left.
    fn group_matches(&self, group: &[Resolved]) -> Vec<(u32, i64)> {
        let mut words: Vec<&[(u32, u8)]> = Vec::new();
        let mut checks: Vec<&Resolved> = Vec::new();
        for op in group {
            match (&op.terms, op.negated) {
                // A required word that no event has.
                (None, false) => return Vec::new(),
                (None, true) => {}
                (Some(terms), false) if terms.len() == 1 => words.push(&self.postings[terms[0] as usize]),
                (Some(_), _) => checks.push(op),
            }
        }
        words.sort_by_key(|list| list.len());
        let mut found: Vec<(u32, i64)> = match words.split_first() {
            Some((shortest, rest)) => {
                let mut found: Vec<(u32, i64)> = shortest.iter().map(|&(slot, f)| (slot, weight(f))).collect();
                for list in rest {
                    let mut at = 0;
                    found.retain_mut(|(slot, score)| {
                        at += list[at..].partition_point(|&(s, _)| s < *slot);
                        match list.get(at) {
                            Some(&(s, f)) if s == *slot => {
                                *score += weight(f);
                                true
                            }
                            _ => false,
                        }
                    });
                }
                found
            }
            // Phrases: the candidates are the events with the phrase's rarest word.
            None => match checks
                .iter()
                .filter(|op| !op.negated)
                .filter_map(|op| op.terms.as_deref())
                .flatten()
                .min_by_key(|&&t| self.postings[t as usize].len())
            {
                Some(&t) => self.postings[t as usize].iter().map(|&(slot, _)| (slot, 0)).collect(),
                // Exclusions only: every event.
                None => {
                    (0..self.hot.len() as u32).filter(|&s| self.docs[s as usize].is_some()).map(|s| (s, 0)).collect()
                }
            },
        };
        if !checks.is_empty() {
            found.retain_mut(|(slot, score)| {
                let Some(doc) = &self.docs[*slot as usize] else { return false };
                checks.iter().all(|op| {
                    let fields = op.terms.as_deref().map_or(0, |t| doc.fields_matching(t));
                    *score += weight(fields);
                    (fields != 0) != op.negated
                })
            });
        }
        found
    }

    /// The events the query matches, as (slot, score) sorted by slot; the score
    /// sums the groups (`or`) an event matches.
    fn matches(&self, groups: &[Vec<Resolved>]) -> Vec<(u32, i64)> {
        let mut all: Vec<(u32, i64)> = Vec::new();
        for group in groups {
            all.extend(self.group_matches(group));
        }
        if groups.len() > 1 {
            all.sort_unstable_by_key(|&(slot, _)| slot);
            all.dedup_by(|later, first| {
                let same = later.0 == first.0;
                if same {
                    first.1 += later.1;
                }
                same
            });
        }
        all
    }

    fn wanted(&self, f: &Filters) -> Option<Wanted> {
        let category = match f.category.as_deref() {
            // A category no event has matches nothing.
            Some(c) => Some(*self.categories.get(c)?),
            None => None,
        };
        Some(Wanted {
            category,
            from: f.from.map_or(i64::MIN, |t| t.timestamp_micros()),
            to: f.to.map_or(i64::MAX, |t| t.timestamp_micros()),
            max_price: f.max_price,
            min_price: f.min_price,
            available: f.available,
        })
    }

    fn search(&self, words: Option<&str>, filters: &Filters, order: Order, offset: usize, limit: usize) -> Hits {
        let Some(wanted) = self.wanted(filters) else { return Hits { ids: Vec::new(), total: 0 } };
        let groups: Option<Vec<Vec<Resolved>>> = words.map(|q| parse(q).iter().map(|g| self.resolve(g)).collect());
        let keep = offset.saturating_add(limit);
        let mut best: BinaryHeap<(SortKey, u32)> = BinaryHeap::with_capacity(keep.min(1_024) + 1);
        let mut total = 0u64;
        let mut consider = |slot: u32, score: i64| {
            let hot = &self.hot[slot as usize];
            if hot.flags & LIVE == 0 || !hot.passes(&wanted) {
                return;
            }
            total += 1;
            if keep == 0 {
                return;
            }
            let key = hot.key(order, score);
            if best.len() < keep {
                best.push((key, slot));
            } else if best.peek().is_some_and(|(worst, _)| key < *worst) {
                best.pop();
                best.push((key, slot));
            }
        };
        match &groups {
            // In slot order: the packed records are read front to back.
            Some(groups) => self.matches(groups).into_iter().for_each(|(slot, score)| consider(slot, score)),
            // Every event is a candidate: a date range reads only its dates.
            None if !self.by_date_stale && (filters.from.is_some() || filters.to.is_some()) => {
                let start = self.by_date.partition_point(|&(d, _)| d < wanted.from);
                let end = self.by_date.partition_point(|&(d, _)| d < wanted.to);
                self.by_date[start..end.max(start)].iter().for_each(|&(_, slot)| consider(slot, 0));
            }
            None => (0..self.hot.len() as u32).for_each(|slot| consider(slot, 0)),
        }
        let ids = best
            .into_sorted_vec()
            .into_iter()
            .skip(offset)
            .map(|(_, slot)| {
                let (hi, lo) = self.hot[slot as usize].id;
                Uuid::from_u64_pair(hi, lo)
            })
            .collect();
        Hits { ids, total }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(
        n: u128,
        title: &str,
        description: &str,
        category: Option<&str>,
        date: &str,
        price: Option<i64>,
    ) -> IndexedEvent {
        IndexedEvent {
            event_id: Uuid::from_u128(n),
            title: title.into(),
            description: description.into(),
            category: category.map(Into::into),
            venue_name: "Budokan".into(),
            event_date: date.parse().unwrap(),
            min_price: price,
            max_price: price.map(|p| p * 2),
            total_seats: 10,
            taken_count: 0,
        }
    }

    fn index(events: impl IntoIterator<Item = IndexedEvent>) -> Index {
        let mut index = Index::default();
        for e in events {
            index.upsert(e);
        }
        index.finish();
        index
    }

    fn ids(index: &Index, q: Option<&str>, f: &Filters, order: Order) -> Vec<u128> {
        index.search(q, f, order, 0, 100).ids.into_iter().map(|id| id.as_u128()).collect()
    }

    fn sample() -> Index {
        index([
            event(1, "Rock Festival", "Loud guitars all night.", Some("music"), "2031-07-01T12:00:00Z", Some(9000)),
            event(
                2,
                "Jazz Evening",
                "Smooth jazz, a little rock-n-roll.",
                Some("music"),
                "2031-03-01T19:00:00Z",
                Some(4000),
            ),
            event(3, "Chess Open", "Rapid and blitz.", Some("sport"), "2031-05-01T09:00:00Z", Some(1000)),
            event(4, "Free Talk", "No tickets to sell.", None, "2031-01-01T09:00:00Z", None),
        ])
    }

    #[test]
    fn tokens_are_lower_cased_runs_of_letters_and_digits() {
        assert_eq!(tokens("Rock-n-Roll 2031, TŌKYŌ!").collect::<Vec<_>>(), ["rock", "n", "roll", "2031", "tōkyō"]);
        assert_eq!(tokens("'; --").count(), 0);
    }

    #[test]
    fn the_web_search_syntax_parses_like_websearch_to_tsquery() {
        let op = |negated, t: &[&str]| Operand { negated, tokens: t.iter().map(|s| s.to_string()).collect() };
        assert_eq!(parse("Rock  tokyo"), vec![vec![op(false, &["rock"]), op(false, &["tokyo"])]]);
        assert_eq!(
            parse("rock or jazz -free"),
            vec![vec![op(false, &["rock"])], vec![op(false, &["jazz"]), op(true, &["free"])]]
        );
        assert_eq!(
            parse("\"smooth jazz\" rock-n-roll"),
            vec![vec![op(false, &["smooth", "jazz"]), op(false, &["rock", "n", "roll"])]]
        );
        assert_eq!(parse("or rock or or"), vec![vec![op(false, &["rock"])]]);
        assert_eq!(parse("-\"no tickets"), vec![vec![op(true, &["no", "tickets"])]]);
        assert!(parse("'; -- \"\" - or").is_empty());
    }

    #[test]
    fn words_match_whole_tokens_in_every_field_and_all_must_match() {
        let index = sample();
        let f = Filters::default();
        assert_eq!(ids(&index, Some("rock"), &f, Order::Relevance), [1, 2], "title beats description");
        assert_eq!(ids(&index, Some("ROCK guitars"), &f, Order::Relevance), [1]);
        assert_eq!(ids(&index, Some("budokan music"), &f, Order::Date), [2, 1], "venue and category are searched");
        assert!(ids(&index, Some("roc"), &f, Order::Date).is_empty(), "no prefix matches");
        assert!(ids(&index, Some("rock unknownword"), &f, Order::Date).is_empty());
        assert!(ids(&index, Some("'; DROP TABLE events;--"), &f, Order::Date).is_empty());
        assert!(ids(&index, Some("--"), &f, Order::Date).is_empty(), "no words match nothing");
    }

    #[test]
    fn phrases_or_and_exclusions() {
        let index = sample();
        let f = Filters::default();
        assert_eq!(ids(&index, Some("\"smooth jazz\""), &f, Order::Date), [2]);
        assert!(ids(&index, Some("\"jazz smooth\""), &f, Order::Date).is_empty(), "order matters in a phrase");
        assert_eq!(ids(&index, Some("rock-n-roll"), &f, Order::Date), [2]);
        assert!(ids(&index, Some("\"festival budokan\""), &f, Order::Date).is_empty(), "phrases stay in one field");
        assert_eq!(ids(&index, Some("chess or jazz"), &f, Order::Date), [2, 3]);
        assert_eq!(ids(&index, Some("rock -jazz"), &f, Order::Date), [1]);
        assert_eq!(ids(&index, Some("-rock"), &f, Order::Date), [4, 3], "exclusions alone scan every event");
        assert_eq!(ids(&index, Some("-nothing or chess"), &f, Order::Date).len(), 4);
    }

    #[test]
    fn filters_and_sorts() {
        let index = sample();
        let music = Filters { category: Some("music".into()), ..Filters::default() };
        assert_eq!(ids(&index, None, &music, Order::PriceDesc), [1, 2]);
        let cheap = Filters { max_price: Some(5000), from: "2031-04-01T00:00:00Z".parse().ok(), ..Filters::default() };
        assert_eq!(ids(&index, None, &cheap, Order::Date), [3]);
        let overlap = Filters { min_price: Some(8000), max_price: Some(9000), ..Filters::default() };
        assert_eq!(ids(&index, None, &overlap, Order::Date), [2, 1], "4000–8000 and 9000–18000 both overlap 8000–9000");
        let before = Filters { to: "2031-03-01T19:00:00Z".parse().ok(), ..Filters::default() };
        assert_eq!(ids(&index, None, &before, Order::Date), [4], "to is exclusive");
        let all = Filters::default();
        assert_eq!(ids(&index, None, &all, Order::Date), [4, 2, 3, 1]);
        assert_eq!(ids(&index, None, &all, Order::DateDesc), [1, 3, 2, 4]);
        assert_eq!(ids(&index, None, &all, Order::Price), [3, 2, 1, 4], "no price sorts last");
        assert_eq!(ids(&index, None, &all, Order::PriceDesc), [1, 2, 3, 4]);
    }

    #[test]
    fn availability_and_paging_with_an_exact_total() {
        let mut index = sample();
        let mut sold_out = event(5, "Sold Out Show", "", None, "2031-02-01T00:00:00Z", Some(100));
        sold_out.taken_count = 10;
        index.upsert(sold_out);
        let available = Filters { available: true, ..Filters::default() };
        assert!(!ids(&index, None, &available, Order::Date).contains(&5));
        let page = index.search(None, &Filters::default(), Order::Date, 2, 2);
        assert_eq!(page.total, 5);
        assert_eq!(page.ids.iter().map(|id| id.as_u128()).collect::<Vec<_>>(), [2, 3]);
        let past_the_end = index.search(None, &Filters::default(), Order::Date, 10, 2);
        assert_eq!((past_the_end.ids.len(), past_the_end.total), (0, 5));
        let count_only = index.search(Some("music"), &Filters::default(), Order::Relevance, 0, 0);
        assert_eq!((count_only.ids.len(), count_only.total), (0, 2));
    }

    #[test]
    fn an_update_replaces_the_old_words_and_a_removal_forgets_the_event() {
        let mut index = sample();
        index.upsert(event(1, "Renamed Gala", "Strings.", Some("music"), "2031-07-01T12:00:00Z", Some(9000)));
        let f = Filters::default();
        assert_eq!(ids(&index, Some("rock"), &f, Order::Date), [2], "the old title no longer matches");
        assert_eq!(ids(&index, Some("gala"), &f, Order::Date), [1]);
        assert_eq!(index.live, 4);
        index.remove(Uuid::from_u128(1));
        index.remove(Uuid::from_u128(1));
        assert!(ids(&index, Some("gala"), &f, Order::Date).is_empty());
        assert_eq!(index.live, 3);
        // The freed slot is reused and the postings stay exact.
        index.upsert(event(9, "Gala Rock", "", None, "2030-01-01T00:00:00Z", None));
        assert_eq!(ids(&index, Some("gala"), &f, Order::Date), [9]);
        assert_eq!(ids(&index, Some("rock"), &f, Order::Relevance), [9, 2]);
        assert_eq!(index.docs.len(), 4);
    }

    #[test]
    fn the_date_order_follows_changes() {
        let mut index = sample();
        let mut chess = event(3, "Chess Open", "Rapid and blitz.", Some("sport"), "2031-05-01T09:00:00Z", Some(1000));
        chess.taken_count = 5;
        index.upsert(chess.clone());
        assert!(!index.by_date_stale, "an availability change keeps the date order");
        chess.event_date = "2030-01-01T00:00:00Z".parse().unwrap();
        index.upsert(chess);
        assert!(index.by_date_stale);
        let early = Filters { to: "2031-01-02T00:00:00Z".parse().ok(), ..Filters::default() };
        assert_eq!(ids(&index, None, &early, Order::Date), [3, 4], "a stale order falls back to a full scan");
        index.finish();
        assert_eq!(ids(&index, None, &early, Order::Date), [3, 4]);
        let unknown = Filters { category: Some("opera".into()), ..Filters::default() };
        assert!(ids(&index, None, &unknown, Order::Date).is_empty());
    }

    /// Random inserts, renames, availability updates and removals: the postings stay
    /// sorted and every two-word query finds what a plain scan of the events finds.
    #[test]
    fn churn_keeps_the_postings_exact() {
        const WORDS: [&str; 6] = ["jazz", "rock", "tokyo", "osaka", "live", "night"];
        let mut rng = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        let mut index = Index::default();
        let mut model: std::collections::BTreeMap<u128, IndexedEvent> = Default::default();
        for step in 0..3_000u32 {
            let id = u128::from(next(60) as u32);
            match next(4) {
                0 => {
                    index.remove(Uuid::from_u128(id));
                    model.remove(&id);
                }
                1 if model.contains_key(&id) => {
                    let mut e = model[&id].clone();
                    e.taken_count = (e.taken_count + 1) % 11;
                    index.upsert(e.clone());
                    model.insert(id, e);
                }
                _ => {
                    let title = format!("{} {}", WORDS[next(6) as usize], WORDS[next(6) as usize]);
                    let date = format!("2031-01-{:02}T00:00:00Z", 1 + next(28));
                    let e = event(id, &title, WORDS[next(6) as usize], None, &date, Some(i64::from(step)));
                    index.upsert(e.clone());
                    model.insert(id, e);
                }
            }
        }
        index.finish();
        assert!(index.postings.iter().all(|p| p.windows(2).all(|w| w[0].0 < w[1].0)), "postings sorted by slot");
        assert_eq!(index.live, model.len());
        for a in WORDS {
            for b in WORDS {
                let q = format!("{a} {b}");
                let has = |e: &IndexedEvent, w: &str| tokens(&e.title).chain(tokens(&e.description)).any(|t| t == w);
                let mut want: Vec<(DateTime<Utc>, u128)> =
                    model.iter().filter(|(_, e)| has(e, a) && has(e, b)).map(|(id, e)| (e.event_date, *id)).collect();
                want.sort();
                let want: Vec<u128> = want.into_iter().map(|(_, id)| id).collect();
                assert_eq!(ids(&index, Some(&q), &Filters::default(), Order::Date), want, "{q}");
            }
        }
    }

    #[test]
    fn relevance_sums_the_fields_and_breaks_ties_by_date() {
        let index = index([
            event(1, "Tokyo Jazz", "", None, "2031-05-01T00:00:00Z", None),
            event(2, "Jazz Night", "In Tokyo.", None, "2031-01-01T00:00:00Z", None),
            event(3, "Tokyo Jazz", "Jazz in Tokyo.", None, "2031-06-01T00:00:00Z", None),
            event(4, "Tokyo Jazz", "", None, "2031-04-01T00:00:00Z", None),
        ]);
        assert_eq!(ids(&index, Some("tokyo jazz"), &Filters::default(), Order::Relevance), [3, 4, 1, 2]);
    }
}
