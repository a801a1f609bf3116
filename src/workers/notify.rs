//! Notifications: the emails that outbox rows call for, composed and sent by the
//! outbox relay — never inside the request that made the change (docs/domain.md, "Outbox topics"), so a
//! slow or dead mail server cannot slow a purchase down or fail it.
//!
//! | topic              | email to the buyer                                      |
//! |--------------------|---------------------------------------------------------|
//! | `ticket:issued`    | the tickets: ids, seats, prices, a signed link to each QR code |
//! | `ticket:cancelled` | which tickets were cancelled                            |
//! | `payment:refunded` | the amount refunded (only once the refund succeeded)    |
//!
//! Everything else sends nothing. In particular an `event:updated` row whose
//! status is `cancelled` should one day tell every ticket holder, but that
//! belongs with refunding a cancelled event's tickets, which does not exist yet.
//!
//! The buyer and the event are looked up (users, events, holds, tickets) when
//! the email is composed, as docs/domain.md asks ("Outbox topics"): nothing is copied into the outbox.
//!
//! Delivery goes through a [`Mailer`]: SMTP ([`SmtpMailer`], lettre) when
//! `SMTP_URL` is set, otherwise [`LogMailer`], which writes the recipient
//! (masked) and subject to the log at info level and nothing else — no body,
//! so no ticket links, and never a token or password. Each message carries a
//! `Message-ID` derived from its outbox row, so the rare duplicate that
//! at-least-once delivery produces can be recognised by mail systems.
//!
//! One file because composing, masking and sending are one pipeline over the
//! same outbox rows; a sixth of it is tests.

use crate::config::ConfigError;
use crate::store::outbox::{OutboxRow, Topic};
use chrono::{DateTime, Utc};
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use secrecy::{ExposeSecret, SecretString};
use sqlx::PgConnection;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// How long one SMTP conversation (connect, send, answer) may take.
const SMTP_TIMEOUT: Duration = Duration::from_secs(10);

/// Topics that produce an email; every other topic is passed over.
pub const NOTIFYING_TOPICS: [Topic; 3] = [Topic::TicketIssued, Topic::TicketCancelled, Topic::PaymentRefunded];

/// One plain-text email, composed from one outbox row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Email {
    /// The outbox row it comes from (its dedupe id).
    pub outbox_id: i64,
    pub to: String,
    pub to_name: String,
    pub subject: String,
    pub body: String,
}

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// The mail system cannot take messages now (down, unreachable, refusing our
    /// login, asking to try later): the relay stops and retries the same email.
    #[error("mail delivery unavailable: {0}")]
    Unavailable(String),
    /// This one message can never be delivered (bad address, recipient refused):
    /// it is logged, counted and passed over so it cannot block the ones after it.
    #[error("message rejected: {0}")]
    Rejected(String),
}

/// What a [`Mailer`] returns: boxed, so mailers can be trait objects.
pub type MailFuture<'a> = Pin<Box<dyn Future<Output = Result<(), MailError>> + Send + 'a>>;

/// Where emails go. A port, so tests can capture them.
pub trait Mailer: Send + Sync {
    /// Sends one email.
    fn send<'a>(&'a self, email: &'a Email) -> MailFuture<'a>;

    /// Whether the mail system would take a message now; the relay asks before
    /// retrying after an outage rather than re-running a batch for nothing.
    fn probe(&self) -> MailFuture<'_> {
        Box::pin(async { Ok(()) })
    }

    /// For logs: `smtp`, `log`, …
    fn name(&self) -> &'static str;

    /// Whether sending is local and instant (no server to wait for), so the relay
    /// need not cap the emails of a pass.
    fn is_instant(&self) -> bool {
        false
    }
}

/// Sends through an SMTP server (`smtp://user:pass@host:port`, with
/// `?tls=required` for STARTTLS, or `smtps://` for implicit TLS).
pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl SmtpMailer {
    /// Reads `SMTP_URL` and `SMTP_FROM` (like `boxoffice <tickets@example.com>`).
    /// Connects lazily: an unreachable server is not an error here. Must be
    /// called inside a Tokio runtime (the connection pool starts a task).
    pub fn new(url: &SecretString, from: &str) -> Result<Self, ConfigError> {
        // The URL holds the password: the error never repeats it.
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose_secret())
            .map_err(|_| ConfigError {
                name: "SMTP_URL",
                problem: "not a valid SMTP URL (smtp://user:password@host:port or smtps://user:password@host:port)"
                    .into(),
            })?
            .timeout(Some(SMTP_TIMEOUT))
            .build();
        let from = from
            .parse::<Mailbox>()
            .map_err(|e| ConfigError { name: "SMTP_FROM", problem: format!("{from:?} is not a mailbox: {e}") })?;
        Ok(Self { transport, from })
    }
}

impl Mailer for SmtpMailer {
    fn send<'a>(&'a self, email: &'a Email) -> MailFuture<'a> {
        Box::pin(async move {
            let to = email.to.parse().map_err(|e| MailError::Rejected(format!("recipient address: {e}")))?;
            let message = lettre::Message::builder()
                .from(self.from.clone())
                .to(Mailbox::new(Some(email.to_name.clone()), to))
                .subject(email.subject.clone())
                .message_id(Some(format!("<outbox-{}@{}>", email.outbox_id, self.from.email.domain())))
                .header(ContentType::TEXT_PLAIN)
                .body(email.body.clone())
                .map_err(|e| MailError::Rejected(e.to_string()))?;
            self.transport.send(message).await.map(drop).map_err(smtp_error)
        })
    }

    fn probe(&self) -> MailFuture<'_> {
        Box::pin(async move {
            match self.transport.test_connection().await {
                Ok(true) => Ok(()),
                Ok(false) => Err(MailError::Unavailable("the SMTP server did not answer".into())),
                Err(e) => Err(MailError::Unavailable(e.to_string())),
            }
        })
    }

    fn name(&self) -> &'static str {
        "smtp"
    }
}

/// Only refusals about this message's recipient are final; anything else (a
/// connection, TLS or login failure, a 4xx) says nothing about the message.
fn smtp_error(e: lettre::transport::smtp::Error) -> MailError {
    const RECIPIENT_REFUSED: [&str; 4] = ["550", "551", "552", "553"];
    let code = e.status().map(|c| c.to_string());
    if e.is_permanent() && code.as_deref().is_some_and(|c| RECIPIENT_REFUSED.contains(&c)) {
        MailError::Rejected(e.to_string())
    } else {
        MailError::Unavailable(e.to_string())
    }
}

/// Development stand-in for SMTP: logs who would get which subject.
pub struct LogMailer;

impl Mailer for LogMailer {
    fn send<'a>(&'a self, email: &'a Email) -> MailFuture<'a> {
        tracing::info!(
            to = %mask_email(&email.to),
            subject = %email.subject,
            outbox_id = email.outbox_id,
            "email not sent (no SMTP_URL configured)"
        );
        Box::pin(async { Ok(()) })
    }

    fn name(&self) -> &'static str {
        "log"
    }

    fn is_instant(&self) -> bool {
        true
    }
}

/// `alice@example.com` → `a***@example.com`: enough to tell recipients apart in
/// a development log without writing addresses out.
pub fn mask_email(address: &str) -> String {
    match address.split_once('@') {
        Some((user, domain)) => {
            let first: String = user.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        None => "***".into(),
    }
}

/// Signs the link to a ticket's QR image: (ticket, event date) → path and query
/// (`/tickets/{id}/qr?exp=…&sig=…`), which opens without an access token. A port,
/// so this worker needs no signing keys of its own: start-up hands in the server's.
pub type TicketLinks = Arc<dyn Fn(Uuid, DateTime<Utc>) -> String + Send + Sync>;

/// Turns outbox rows into emails and hands them to its [`Mailer`]. Cheap to clone.
#[derive(Clone)]
pub struct Notifier {
    mailer: Arc<dyn Mailer>,
    /// Put before `/tickets/{id}/qr` in emails (`https://tickets.example.com`); empty = bare paths.
    public_url: String,
    /// Signed links; without them (tests of other parts) the bare path, which needs a token.
    links: Option<TicketLinks>,
}

impl Notifier {
    pub fn new(mailer: Arc<dyn Mailer>) -> Self {
        Self { mailer, public_url: String::new(), links: None }
    }

    /// Emails link each ticket's QR image through `links` (signed, no token needed).
    pub fn with_ticket_links(mut self, links: TicketLinks) -> Self {
        self.links = Some(links);
        self
    }

    /// The notifier the settings ask for: SMTP when `smtp_url` is set (then
    /// `smtp_from` is required), the log otherwise. Must be called inside a
    /// Tokio runtime.
    pub fn from_settings(
        smtp_url: Option<&SecretString>,
        smtp_from: Option<&str>,
        public_url: Option<&str>,
    ) -> Result<Self, ConfigError> {
        let mailer: Arc<dyn Mailer> = match smtp_url {
            Some(url) => {
                let from = smtp_from.ok_or(ConfigError {
                    name: "SMTP_FROM",
                    problem: "required with SMTP_URL (like `boxoffice <tickets@example.com>`)".into(),
                })?;
                Arc::new(SmtpMailer::new(url, from)?)
            }
            None => Arc::new(LogMailer),
        };
        let notifier = Self::new(mailer);
        match public_url {
            Some(url) if !(url.starts_with("http://") || url.starts_with("https://")) => {
                Err(ConfigError { name: "PUBLIC_URL", problem: format!("{url:?} is not an http:// or https:// URL") })
            }
            Some(url) => Ok(notifier.with_public_url(url)),
            None => Ok(notifier),
        }
    }

    /// Links in emails start with `url` (no trailing slash needed).
    pub fn with_public_url(mut self, url: &str) -> Self {
        self.public_url = url.trim_end_matches('/').to_owned();
        self
    }

    /// `smtp` or `log` (or a test mailer's name).
    pub fn mailer_name(&self) -> &'static str {
        self.mailer.name()
    }

    /// Whether the mailer sends locally and at once (the log mailer).
    pub fn mailer_is_instant(&self) -> bool {
        self.mailer.is_instant()
    }

    /// Whether rows of `topic` can produce an email.
    pub fn wants(topic: &str) -> bool {
        Topic::parse(topic).is_some_and(|t| NOTIFYING_TOPICS.contains(&t))
    }

    /// The emails `rows` call for, each with the index of its row, in row order.
    /// A row whose buyer or event cannot be found (or whose payload is not what
    /// its topic promises) produces none and is logged.
    pub async fn compose(&self, db: &mut PgConnection, rows: &[OutboxRow]) -> Result<Vec<(usize, Email)>, sqlx::Error> {
        let holds: Vec<Uuid> = rows.iter().filter(|r| Self::wants(&r.topic)).map(|r| r.aggregate_id).collect();
        if holds.is_empty() {
            return Ok(Vec::new());
        }
        let payloads: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                if Self::wants(&r.topic) {
                    serde_json::from_str(&r.payload).unwrap_or_default()
                } else {
                    Default::default()
                }
            })
            .collect();
        // A purchase's row carries its tickets (the journal writes them); other rows,
        // and purchase rows that do not, need them from the database.
        let mut issued: Vec<Option<Vec<TicketLine>>> = rows
            .iter()
            .zip(&payloads)
            .map(|(r, p)| (Topic::parse(&r.topic) == Some(Topic::TicketIssued)).then(|| issued_lines(p)).flatten())
            .collect();
        let ticket_holds: Vec<Uuid> = rows
            .iter()
            .zip(&issued)
            .filter(|(r, lines)| Self::wants(&r.topic) && lines.is_none())
            .map(|(r, _)| r.aggregate_id)
            .collect();
        let contexts = load_contexts(db, &holds, &ticket_holds).await?;
        let mut emails = Vec::new();
        for (index, (row, payload)) in rows.iter().zip(&payloads).enumerate() {
            if !Self::wants(&row.topic) {
                continue;
            }
            let Some(ctx) = contexts.get(&row.aggregate_id) else {
                tracing::warn!(outbox_id = row.id, topic = %row.topic, "no buyer or event for this row; no email");
                continue;
            };
            let composed = match Topic::parse(&row.topic) {
                Some(Topic::TicketIssued) => {
                    let lines = issued[index].take();
                    Some(self.tickets_issued(ctx, lines.as_deref().unwrap_or(&ctx.tickets)))
                }
                Some(Topic::TicketCancelled) => self.tickets_cancelled(ctx, payload),
                Some(Topic::PaymentRefunded) => self.refunded(ctx, payload),
                _ => None,
            };
            if let Some((subject, body)) = composed {
                emails.push((
                    index,
                    Email { outbox_id: row.id, to: ctx.email.clone(), to_name: ctx.name.clone(), subject, body },
                ));
            }
        }
        Ok(emails)
    }

    /// Sends one email. A rejected one is logged and counted here.
    pub async fn deliver(&self, email: &Email) -> Result<(), MailError> {
        let result = self.mailer.send(email).await;
        let outcome = match &result {
            Ok(()) => "sent",
            Err(MailError::Rejected(reason)) => {
                tracing::warn!(outbox_id = email.outbox_id, to = %mask_email(&email.to), %reason, "email rejected; not retried");
                "rejected"
            }
            Err(MailError::Unavailable(_)) => "unavailable",
        };
        metrics::counter!("boxoffice_notifications_total", "outcome" => outcome).increment(1);
        result
    }

    /// Whether the mailer would take a message now.
    pub async fn probe(&self) -> Result<(), MailError> {
        self.mailer.probe().await
    }

    fn qr_link(&self, ticket: Uuid, event_date: DateTime<Utc>) -> String {
        match &self.links {
            Some(sign) => format!("{}{}", self.public_url, sign(ticket, event_date)),
            None => format!("{}/tickets/{ticket}/qr", self.public_url),
        }
    }

    fn tickets_issued(&self, ctx: &HoldContext, tickets: &[TicketLine]) -> (String, String) {
        let mut body = greeting(ctx);
        body.push_str("Thank you for your purchase. Your tickets are confirmed.\n\n");
        event_block(&mut body, ctx);
        body.push_str("\nTickets:\n");
        for t in tickets {
            self.ticket_lines(&mut body, ctx, t);
        }
        body.push_str("\nShow the QR code at the entrance; each ticket admits once.\n");
        (format!("Your tickets for {}", ctx.title), body)
    }

    fn tickets_cancelled(&self, ctx: &HoldContext, payload: &serde_json::Value) -> Option<(String, String)> {
        let ids: Vec<Uuid> = payload
            .get("tickets")?
            .as_array()?
            .iter()
            .filter_map(|v| v.as_str().and_then(|s| s.parse().ok()))
            .collect();
        let cancelled: Vec<&TicketLine> = ctx.tickets.iter().filter(|t| ids.contains(&t.id)).collect();
        if cancelled.is_empty() {
            return None;
        }
        let mut body = greeting(ctx);
        if let Some(reason) = &ctx.cancelled_because {
            let _ = writeln!(body, "The organizer has cancelled this event: {reason}\n");
        }
        body.push_str("These tickets have been cancelled and no longer admit anyone:\n\n");
        event_block(&mut body, ctx);
        body.push('\n');
        for t in cancelled {
            let _ = writeln!(body, "  - {} (ticket {})", seat_label(t), t.id);
        }
        body.push_str("\nIf a refund is due, you will get a separate email when it is issued.\n");
        Some((format!("Ticket cancelled: {}", ctx.title), body))
    }

    fn refunded(&self, ctx: &HoldContext, payload: &serde_json::Value) -> Option<(String, String)> {
        // A pending refund is retried and writes another row when it succeeds;
        // a failed one is for support, not an email that says nothing happened.
        if payload.get("status")?.as_str()? != "succeeded" {
            return None;
        }
        let amount = payload.get("amount")?.as_i64()?;
        let ticket: Option<Uuid> = payload.get("ticket_id").and_then(|v| v.as_str()).and_then(|s| s.parse().ok());
        let mut body = greeting(ctx);
        let _ = writeln!(body, "We have refunded {} to your original payment method.\n", money(amount, &ctx.currency));
        event_block(&mut body, ctx);
        if let Some(t) = ticket.and_then(|id| ctx.tickets.iter().find(|t| t.id == id)) {
            let _ = writeln!(body, "Ticket: {} (ticket {})", seat_label(t), t.id);
        }
        body.push_str("\nDepending on your bank, it can take a few days to appear.\n");
        Some((format!("Refund issued: {}", ctx.title), body))
    }

    fn ticket_lines(&self, body: &mut String, ctx: &HoldContext, t: &TicketLine) {
        let _ = writeln!(body, "  - {} — {}", seat_label(t), money(t.price, &ctx.currency));
        let _ = writeln!(body, "    Ticket {}", t.id);
        let _ = writeln!(body, "    QR code: {}", self.qr_link(t.id, ctx.starts_at));
    }
}

/// What an email about one hold needs to say.
struct HoldContext {
    hold: Uuid,
    email: String,
    name: String,
    title: String,
    starts_at: DateTime<Utc>,
    venue: String,
    currency: String,
    /// Why the organizer cancelled the event, if they did.
    cancelled_because: Option<String>,
    tickets: Vec<TicketLine>,
}

struct TicketLine {
    id: Uuid,
    section: String,
    seat: Option<String>,
    price: i64,
}

/// The tickets a purchase's outbox row carries (`tickets` of the change), in the
/// order the emails list them: by section, then seat.
fn issued_lines(payload: &serde_json::Value) -> Option<Vec<TicketLine>> {
    let records: Vec<boxoffice_actors::record::TicketRecord> =
        serde_json::from_value(payload.get("tickets")?.clone()).ok()?;
    let mut lines: Vec<TicketLine> = records
        .into_iter()
        .map(|t| TicketLine { id: t.id.0, section: t.section, seat: t.seat, price: t.price })
        .collect();
    lines.sort_by(|a, b| (&a.section, &a.seat, a.id).cmp(&(&b.section, &b.seat, b.id)));
    Some(lines)
}

/// Buyer and event of every hold in `holds`, and the tickets of those in
/// `ticket_holds`, in at most two queries.
async fn load_contexts(
    db: &mut PgConnection,
    holds: &[Uuid],
    ticket_holds: &[Uuid],
) -> Result<HashMap<Uuid, HoldContext>, sqlx::Error> {
    type HoldRow = (Uuid, String, String, String, DateTime<Utc>, String, String, Option<String>);
    let rows: Vec<HoldRow> = sqlx::query_as(
        "SELECT h.hold_id, u.email, u.name, e.title, e.event_date, e.venue_name, e.currency, c.reason
         FROM holds h JOIN users u ON u.user_id = h.buyer_id JOIN events e ON e.event_id = h.event_id
              LEFT JOIN event_cancellations c ON c.event_id = h.event_id
         WHERE h.hold_id = ANY($1)",
    )
    .bind(holds)
    .fetch_all(&mut *db)
    .await?;
    let mut contexts: HashMap<Uuid, HoldContext> = rows
        .into_iter()
        .map(|(hold, email, name, title, starts_at, venue, currency, cancelled_because)| {
            let tickets = Vec::new();
            (hold, HoldContext { hold, email, name, title, starts_at, venue, currency, cancelled_because, tickets })
        })
        .collect();
    if ticket_holds.is_empty() {
        return Ok(contexts);
    }
    let tickets: Vec<(Uuid, Uuid, String, Option<String>, i64)> = sqlx::query_as(
        "SELECT hold_id, ticket_id, section, seat_number, price FROM tickets WHERE hold_id = ANY($1)
         ORDER BY hold_id, section, seat_number, ticket_id",
    )
    .bind(ticket_holds)
    .fetch_all(&mut *db)
    .await?;
    for (hold, id, section, seat, price) in tickets {
        if let Some(ctx) = contexts.get_mut(&hold) {
            ctx.tickets.push(TicketLine { id, section, seat, price });
        }
    }
    Ok(contexts)
}

fn greeting(ctx: &HoldContext) -> String {
    format!("Hello {},\n\n", ctx.name)
}

fn event_block(body: &mut String, ctx: &HoldContext) {
    let _ = writeln!(body, "Event:  {}", ctx.title);
    let _ = writeln!(body, "Date:   {}", ctx.starts_at.format("%Y-%m-%d %H:%M UTC"));
    let _ = writeln!(body, "Venue:  {}", ctx.venue);
    let _ = writeln!(body, "Order:  {}", ctx.hold);
}

fn seat_label(t: &TicketLine) -> String {
    match &t.seat {
        Some(seat) => format!("Section {}, seat {seat}", t.section),
        None => format!("Section {} (general admission)", t.section),
    }
}

/// Minor units as the currency writes them: `5000 JPY`, `12.50 USD`, `1.250 KWD`.
pub fn money(amount: i64, currency: &str) -> String {
    // ISO 4217 exponents that are not 2 (the ones card processors use).
    const ZERO: [&str; 16] = [
        "BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF",
    ];
    const THREE: [&str; 5] = ["BHD", "JOD", "KWD", "OMR", "TND"];
    let digits = if ZERO.contains(&currency) {
        0
    } else if THREE.contains(&currency) {
        3
    } else {
        2
    };
    if digits == 0 {
        return format!("{amount} {currency}");
    }
    let scale = 10i64.pow(digits);
    let sign = if amount < 0 { "-" } else { "" };
    let abs = amount.unsigned_abs();
    let (whole, frac) = (abs / scale as u64, abs % scale as u64);
    format!("{sign}{whole}.{frac:0width$} {currency}", width = digits as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_masked_in_logs() {
        assert_eq!(mask_email("alice@example.com"), "a***@example.com");
        assert_eq!(mask_email("@example.com"), "***@example.com");
        assert_eq!(mask_email("not-an-address"), "***");
    }

    #[test]
    fn money_uses_the_currency_exponent() {
        assert_eq!(money(5000, "JPY"), "5000 JPY");
        assert_eq!(money(1250, "USD"), "12.50 USD");
        assert_eq!(money(5, "EUR"), "0.05 EUR");
        assert_eq!(money(-1250, "USD"), "-12.50 USD");
        assert_eq!(money(1250, "KWD"), "1.250 KWD");
    }

    fn context() -> HoldContext {
        HoldContext {
            hold: Uuid::nil(),
            email: "bob@example.com".into(),
            name: "Bob".into(),
            title: "Rock Night".into(),
            starts_at: DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
            venue: "Budokan".into(),
            currency: "JPY".into(),
            cancelled_because: None,
            tickets: vec![
                TicketLine { id: Uuid::from_u128(1), section: "A".into(), seat: Some("A-12".into()), price: 5000 },
                TicketLine { id: Uuid::from_u128(2), section: "GA".into(), seat: None, price: 3000 },
            ],
        }
    }

    #[test]
    fn an_issued_email_lists_every_ticket_with_its_qr_link() {
        let links: TicketLinks =
            Arc::new(|t, date: DateTime<Utc>| format!("/tickets/{t}/qr?exp={}&sig=s", date.timestamp()));
        let notifier =
            Notifier::new(Arc::new(LogMailer)).with_public_url("https://tickets.example.com/").with_ticket_links(links);
        // The lines come from the purchase's outbox payload, listed by section and seat.
        let payload = serde_json::json!({"type": "hold_purchased", "tickets": [
            {"id": Uuid::from_u128(2), "section": "GA", "seat": null, "price": 3000, "cancelled": false},
            {"id": Uuid::from_u128(1), "section": "A", "seat": "A-12", "price": 5000, "cancelled": false},
        ]});
        let lines = issued_lines(&payload).unwrap();
        assert_eq!(lines.iter().map(|t| t.id).collect::<Vec<_>>(), [Uuid::from_u128(1), Uuid::from_u128(2)]);
        assert!(issued_lines(&serde_json::json!({"type": "hold_purchased"})).is_none());
        let (subject, body) = notifier.tickets_issued(&context(), &lines);
        assert_eq!(subject, "Your tickets for Rock Night");
        assert!(body.starts_with("Hello Bob,"));
        assert!(body.contains("Section A, seat A-12 — 5000 JPY"), "{body}");
        assert!(body.contains("Section GA (general admission) — 3000 JPY"), "{body}");
        let signed = format!("https://tickets.example.com/tickets/{}/qr?exp=1800000000&sig=s\n", Uuid::from_u128(1));
        assert!(body.contains(&signed), "{body}");
        assert!(body.contains("Date:   2027-01-15 08:00 UTC"), "{body}");
    }

    #[test]
    fn a_cancel_email_names_only_the_cancelled_tickets() {
        let notifier = Notifier::new(Arc::new(LogMailer));
        let payload = serde_json::json!({"type": "tickets_cancelled", "tickets": [Uuid::from_u128(2)]});
        let (subject, body) = notifier.tickets_cancelled(&context(), &payload).unwrap();
        assert_eq!(subject, "Ticket cancelled: Rock Night");
        assert!(body.contains(&Uuid::from_u128(2).to_string()));
        assert!(!body.contains(&Uuid::from_u128(1).to_string()));
        assert!(notifier.tickets_cancelled(&context(), &serde_json::json!({"tickets": []})).is_none());
        assert!(!body.contains("organizer has cancelled"));
        let cancelled = HoldContext { cancelled_because: Some("Venue flooded".into()), ..context() };
        let (_, body) = notifier.tickets_cancelled(&cancelled, &payload).unwrap();
        assert!(body.contains("The organizer has cancelled this event: Venue flooded"), "{body}");
    }

    #[test]
    fn only_a_succeeded_refund_is_emailed() {
        let notifier = Notifier::new(Arc::new(LogMailer));
        let done = serde_json::json!({"status": "succeeded", "amount": 5000, "ticket_id": Uuid::from_u128(1)});
        let (subject, body) = notifier.refunded(&context(), &done).unwrap();
        assert_eq!(subject, "Refund issued: Rock Night");
        assert!(body.contains("refunded 5000 JPY"), "{body}");
        assert!(body.contains("Section A, seat A-12"), "{body}");
        let pending = serde_json::json!({"status": "pending", "amount": 5000});
        assert!(notifier.refunded(&context(), &pending).is_none());
    }

    // The SMTP connection pool spawns its reaper task: it needs a runtime.
    #[tokio::test]
    async fn settings_choose_the_mailer_and_explain_mistakes() {
        let log = Notifier::from_settings(None, None, None).unwrap();
        assert_eq!(log.mailer_name(), "log");
        let url = SecretString::from("smtp://user:secret@127.0.0.1:2525".to_owned());
        let smtp = Notifier::from_settings(Some(&url), Some("boxoffice <tickets@example.com>"), None).unwrap();
        assert_eq!(smtp.mailer_name(), "smtp");
        let tls = SecretString::from("smtps://user:secret@mail.example.com".to_owned());
        assert!(Notifier::from_settings(Some(&tls), Some("tickets@example.com"), None).is_ok());

        let missing_from = Notifier::from_settings(Some(&url), None, None).err().unwrap();
        assert_eq!(missing_from.name, "SMTP_FROM");
        let bad_from = Notifier::from_settings(Some(&url), Some("not a mailbox"), None).err().unwrap();
        assert_eq!(bad_from.name, "SMTP_FROM");
        let bad_url = SecretString::from("http://user:hunter2@x".to_owned());
        let e = Notifier::from_settings(Some(&bad_url), Some("a@b.c"), None).err().unwrap();
        assert_eq!(e.name, "SMTP_URL");
        assert!(!e.to_string().contains("hunter2"), "the password must not be echoed");
        let bad_public = Notifier::from_settings(None, None, Some("tickets.example.com")).err().unwrap();
        assert_eq!(bad_public.name, "PUBLIC_URL");
    }
}
