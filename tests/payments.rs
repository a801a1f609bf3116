//! The Stripe provider against localstripe, a stateful fake of the Stripe API,
//! and against tiny canned servers for the answers localstripe cannot give.
//!
//! localstripe comes from `BOXOFFICE_TEST_STRIPE_URL` (set by scripts/test.sh);
//! without it the first test that needs it starts one (python3 or
//! scripts/test.sh's cached virtualenv, `BOXOFFICE_TEST_LOCALSTRIPE_PYTHON` to
//! choose), shared by the whole binary and gone when the binary exits. If none
//! can be found or started, those tests fail: they never skip.
//!
//! localstripe 1.15 quirks, found reading its source and checked here:
//! - **No idempotency.** It ignores `Idempotency-Key`: the same request twice
//!   makes two PaymentIntents. The idempotency tests therefore put
//!   [`IdempotencyProxy`] in front of it, which replays as Stripe does (the
//!   answer of the first request for a key; `idempotency_error` if the
//!   parameters differ), and check the provider sends the key and that only one
//!   request reached localstripe.
//! - **Strict parameters.** Any unknown parameter is `400 Unexpected ...`: it
//!   accepts neither `automatic_payment_methods` nor the
//!   `allowed_payment_method_types` Stripe's current API wants (the provider
//!   leaves it out when `api_base` is set), and knows only a few test tokens:
//!   `pm_card_visa` succeeds; `pm_card_chargeCustomerFail` (card
//!   4000000000000341) is declined with HTTP 402, but with error type
//!   `invalid_request_error` (Stripe says `card_error`) and code `card_declined`,
//!   without a `decline_code`; `pm_card_chargeDeclined`, `pm_card_mastercard`
//!   and other tokens are unknown (404, so `Invalid`); `pm_card_visa_chargeDeclined`
//!   *succeeds* for a PaymentIntent (localstripe only declines it when attached to
//!   a customer). Other declined cards can be made with `POST /v1/payment_methods`
//!   and the numbers 4000000000000341, 4000008260003178 or 4000008400001629.
//! - **Thin objects.** A PaymentIntent has no `amount_received`,
//!   `payment_method_types` or `confirmation_method`: async-stripe's typed
//!   `PaymentIntent` cannot deserialize it, which is one reason the provider
//!   reads answers as plain JSON.
//! - **Refunds are not checked.** It refunds more than was charged, and a refund
//!   without an amount refunds the whole charge even after partial refunds.
//! - **Webhooks.** `POST /_config/webhooks/{id}` (form: `url`, `secret`,
//!   optional `events[]`) registers an endpoint for the whole server, for all
//!   later events, and there is no way to remove one (re-registering the id
//!   with an event filter that matches nothing silences it). Events are sent
//!   one second after they happen, signed like Stripe's (`t=<event.created>,
//!   v1=<HMAC-SHA256>`), for `payment_intent.succeeded` and
//!   `payment_intent.payment_failed` among others, but never `charge.refunded`.
//!   Endpoints of concurrent tests receive each other's events: filter on ids.
//! - `localstripe --port N` binds every interface and pickles its whole store to
//!   /tmp/localstripe.pickle after every POST; the launcher here (like
//!   scripts/test.sh's) serves the same app on 127.0.0.1 and keeps it in memory.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdTcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use boxoffice::payments::stripe::{StripeProvider, WEBHOOK_TOLERANCE_SECS, sign_webhook_for_tests};
use boxoffice::payments::{
    ChargeRequest, ChargeStatus, PaymentError, PaymentProvider, RefundRequest, WebhookEvent, WebhookKind,
};
use secrecy::SecretString;
use tokio::sync::mpsc;
use uuid::Uuid;

/// Any `sk_` key: localstripe checks only the prefix.
const SECRET_KEY: &str = "sk_test_boxoffice";
const WEBHOOK_SECRET: &str = "whsec_boxoffice_test";
/// How long localstripe may take to start.
const LOCALSTRIPE_START_TIMEOUT: Duration = Duration::from_secs(30);
const LOCALSTRIPE_START_ATTEMPTS: u32 = 3;
/// localstripe waits 1 s before sending a webhook; leave room on a busy machine.
const WEBHOOK_DELIVERY_TIMEOUT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------------
// localstripe
// ---------------------------------------------------------------------------------------------

/// Serves localstripe's app on 127.0.0.1 with the store in memory, and exits
/// when its stdin closes, i.e. when the test binary that started it is gone,
/// removing its log (kept when it fails to start).
const LAUNCHER: &str = r#"
import argparse, logging, os, socket, sys, threading
from aiohttp import web
from localstripe import resources, server
resources.Store.dump_to_disk = lambda self: None
args = argparse.ArgumentParser()
args.add_argument("--port", type=int, required=True)
args.add_argument("--log", required=True)
args = args.parse_args()
port = args.port
def exit_with_parent():
    sys.stdin.read()
    try:
        os.unlink(args.log)
    except OSError:
        pass
    os._exit(0)
threading.Thread(target=exit_with_parent, daemon=True).start()
sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
sock.bind(("127.0.0.1", port))
log = logging.getLogger("aiohttp.access")
log.setLevel(logging.DEBUG)
log.addHandler(logging.StreamHandler())
web.run_app(server.app, sock=sock, access_log=log, print=None)
"#;

/// A localstripe started by this binary; kept for the life of the process.
struct Localstripe {
    url: String,
    /// Never read: kept so the process is not reaped early.
    _child: Child,
    /// Never written: the launcher exits when this pipe closes.
    _stdin: ChildStdin,
}

/// The base URL of a localstripe, started on first use if the environment has none.
fn localstripe_url() -> String {
    if let Ok(url) = std::env::var("BOXOFFICE_TEST_STRIPE_URL") {
        return url.trim_end_matches('/').to_owned();
    }
    static STARTED: OnceLock<Result<Localstripe, String>> = OnceLock::new();
    match STARTED.get_or_init(start_localstripe) {
        Ok(localstripe) => localstripe.url.clone(),
        Err(why) => panic!("localstripe is needed and could not be started: {why}"),
    }
}

fn localstripe_python() -> Result<PathBuf, String> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Ok(python) = std::env::var("BOXOFFICE_TEST_LOCALSTRIPE_PYTHON") {
        candidates.push(python.into());
    }
    candidates.push("python3".into());
    // Where scripts/test.sh installs localstripe when the system Python is externally managed.
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")));
    if let Some(cache) = cache {
        candidates.push(cache.join("boxoffice/localstripe-venv/bin/python"));
    }
    candidates
        .iter()
        .find(|python| {
            Command::new(python)
                .args(["-c", "import localstripe"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|status| status.success())
        })
        .cloned()
        .ok_or_else(|| {
            format!(
                "none of {candidates:?} can import localstripe: run scripts/test.sh, `pip install localstripe`, \
                 or set BOXOFFICE_TEST_STRIPE_URL"
            )
        })
}

fn start_localstripe() -> Result<Localstripe, String> {
    let python = localstripe_python()?;
    let log_path = std::env::temp_dir().join(format!("boxoffice-localstripe-{}.log", std::process::id()));
    let mut last_error = String::new();
    for _ in 0..LOCALSTRIPE_START_ATTEMPTS {
        // The port may be taken again before localstripe binds it: then retry.
        let port = free_port();
        let log = std::fs::File::create(&log_path).map_err(|err| format!("{}: {err}", log_path.display()))?;
        let mut child = Command::new(&python)
            .args(["-c", LAUNCHER, "--port", &port.to_string(), "--log"])
            .arg(&log_path)
            .stdin(Stdio::piped())
            .stdout(log.try_clone().map_err(|err| err.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|err| format!("cannot run {}: {err}", python.display()))?;
        let stdin = child.stdin.take().expect("stdin is piped");
        let deadline = Instant::now() + LOCALSTRIPE_START_TIMEOUT;
        loop {
            if TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok() {
                return Ok(Localstripe { url: format!("http://127.0.0.1:{port}"), _child: child, _stdin: stdin });
            }
            if let Ok(Some(status)) = child.try_wait() {
                last_error = format!("localstripe exited with {status}; see {}", log_path.display());
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                last_error = format!("localstripe did not listen within {LOCALSTRIPE_START_TIMEOUT:?}");
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Err(last_error)
}

fn free_port() -> u16 {
    StdTcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap().local_addr().unwrap().port()
}

/// A port nothing listens on (bound, then released).
fn closed_port_url() -> String {
    format!("http://127.0.0.1:{}", free_port())
}

// ---------------------------------------------------------------------------------------------
// Arrange helpers
// ---------------------------------------------------------------------------------------------

fn provider(api_base: &str) -> StripeProvider {
    StripeProvider::new(&SecretString::from(SECRET_KEY), Some(SecretString::from(WEBHOOK_SECRET)), Some(api_base))
        .expect("valid configuration")
}

/// A charge for a fresh hold, keyed on the hold id as the purchase flow does.
fn charge_request(payment_method: &str) -> ChargeRequest {
    let hold_id = Uuid::new_v4();
    ChargeRequest {
        idempotency_key: hold_id.to_string(),
        amount: 5000,
        currency: "JPY".into(),
        payment_method: payment_method.into(),
        hold_id,
        event_id: Uuid::new_v4(),
        buyer_id: Uuid::new_v4(),
    }
}

fn refund_request(reference: &str, amount: Option<i64>) -> RefundRequest {
    RefundRequest { idempotency_key: format!("refund-{}", Uuid::new_v4()), reference: reference.into(), amount }
}

async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

/// A form body as a sorted list of pairs: Stripe compares parameters, not bytes
/// (the metadata map may serialize in any order).
fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = String::from_utf8_lossy(body)
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k.to_owned(), v.to_owned())
        })
        .collect();
    pairs.sort();
    pairs
}

/// Stands in front of localstripe and gives it Stripe's idempotency: the first
/// answer for an `Idempotency-Key` is replayed to later requests with the same
/// parameters; other parameters get Stripe's `idempotency_error`. Records what
/// reached localstripe.
#[derive(Clone)]
struct IdempotencyProxy {
    upstream: String,
    client: reqwest::Client,
    /// A tokio mutex held across the forward: requests go one at a time, so a
    /// concurrent retry waits for the first answer (Stripe would send a 409).
    state: Arc<tokio::sync::Mutex<ProxyState>>,
}

#[derive(Default)]
struct ProxyState {
    /// Idempotency key → the first request's parameters and answer.
    answers: HashMap<String, FirstAnswer>,
    /// `(method, path, Idempotency-Key)` of each request that reached localstripe.
    forwarded: Vec<(Method, String, Option<String>)>,
}

struct FirstAnswer {
    params: Vec<(String, String)>,
    status: StatusCode,
    body: Bytes,
}

impl IdempotencyProxy {
    async fn start(upstream: String) -> (Self, String) {
        let proxy = Self { upstream, client: reqwest::Client::new(), state: Default::default() };
        let addr = serve(Router::new().fallback(Self::handle).with_state(proxy.clone())).await;
        (proxy, format!("http://{addr}"))
    }

    async fn forwarded(&self, method: Method, path: &str) -> Vec<Option<String>> {
        let state = self.state.lock().await;
        state.forwarded.iter().filter(|(m, p, _)| *m == method && p == path).map(|(_, _, key)| key.clone()).collect()
    }

    async fn handle(State(proxy): State<Self>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
        let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let params = form_pairs(&body);
        let mut state = proxy.state.lock().await;
        if let Some(key) = &key
            && let Some(first) = state.answers.get(key)
        {
            if first.params != params {
                let error = serde_json::json!({"error": {"type": "idempotency_error", "message":
                    "Keys for idempotent requests can only be used with the same parameters they were first used with."}});
                return (StatusCode::BAD_REQUEST, axum::Json(error)).into_response();
            }
            let replayed = [("content-type", "application/json"), ("idempotent-replayed", "true")];
            return (first.status, replayed, first.body.clone()).into_response();
        }
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let mut request = proxy.client.request(method.clone(), format!("{}{path}", proxy.upstream)).body(body.clone());
        for name in ["authorization", "content-type", "stripe-version", "idempotency-key"] {
            if let Some(value) = headers.get(name) {
                request = request.header(name, value.as_bytes());
            }
        }
        let response = request.send().await.expect("localstripe answers");
        let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
        let answer = response.bytes().await.unwrap();
        state.forwarded.push((method, uri.path().to_owned(), key.clone()));
        if let Some(key) = key
            && !status.is_server_error()
        {
            state.answers.insert(key, FirstAnswer { params, status, body: answer.clone() });
        }
        (status, [("content-type", "application/json")], answer).into_response()
    }
}

/// A server answering every request with `status` and `body` (Stripe's shapes
/// for what localstripe never says).
async fn canned_stripe(status: u16, body: &'static str) -> String {
    let status = StatusCode::from_u16(status).unwrap();
    let router = Router::new().fallback(move || async move { (status, body) });
    format!("http://{}", serve(router).await)
}

fn declined_code(result: Result<boxoffice::payments::Charge, PaymentError>) -> String {
    match result {
        Err(PaymentError::Declined { code, .. }) => code,
        other => panic!("expected a decline, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Charges
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_visa_charge_succeeds_with_a_payment_intent_reference() {
    let stripe = provider(&localstripe_url());
    assert_eq!(stripe.name(), "stripe");

    let charge = stripe.charge(charge_request("pm_card_visa")).await.unwrap();

    assert_eq!(charge.status, ChargeStatus::Succeeded);
    assert!(charge.reference.starts_with("pi_"), "{}", charge.reference);
    assert_eq!(charge.amount, 5000);
}

#[tokio::test]
async fn the_payment_intent_carries_the_ids_and_the_currency_in_lower_case() {
    let base = localstripe_url();
    let req = charge_request("pm_card_visa");
    let charge = provider(&base).charge(req.clone()).await.unwrap();

    let intent: serde_json::Value = reqwest::Client::new()
        .get(format!("{base}/v1/payment_intents/{}", charge.reference))
        .bearer_auth(SECRET_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(intent["currency"], "jpy");
    assert_eq!(intent["amount"], 5000);
    assert_eq!(intent["status"], "succeeded");
    assert_eq!(intent["metadata"]["hold_id"], req.hold_id.to_string());
    assert_eq!(intent["metadata"]["event_id"], req.event_id.to_string());
    assert_eq!(intent["metadata"]["buyer_id"], req.buyer_id.to_string());
}

#[tokio::test]
async fn retrying_a_charge_with_the_same_key_charges_once() {
    let (proxy, base) = IdempotencyProxy::start(localstripe_url()).await;
    let stripe = provider(&base);
    let req = charge_request("pm_card_visa");

    let first = stripe.charge(req.clone()).await.unwrap();
    let retry = stripe.charge(req.clone()).await.unwrap();

    assert_eq!(retry.reference, first.reference);
    assert_eq!(retry.status, ChargeStatus::Succeeded);
    // One PaymentIntent was created, under the hold id.
    assert_eq!(proxy.forwarded(Method::POST, "/v1/payment_intents").await, vec![Some(req.idempotency_key.clone())]);
}

#[tokio::test]
async fn reusing_a_charge_key_with_other_parameters_is_invalid() {
    let (proxy, base) = IdempotencyProxy::start(localstripe_url()).await;
    let stripe = provider(&base);
    let req = charge_request("pm_card_visa");
    stripe.charge(req.clone()).await.unwrap();

    let other_amount = stripe.charge(ChargeRequest { amount: 7000, ..req }).await;

    assert!(
        matches!(&other_amount, Err(PaymentError::Invalid(m)) if m.contains("idempotency key reused")),
        "{other_amount:?}"
    );
    assert_eq!(proxy.forwarded(Method::POST, "/v1/payment_intents").await.len(), 1);
}

#[tokio::test]
async fn a_declining_card_is_declined() {
    let stripe = provider(&localstripe_url());

    let declined = stripe.charge(charge_request("pm_card_chargeCustomerFail")).await;

    assert!(
        matches!(&declined, Err(PaymentError::Declined { code, message })
            if code == "card_declined" && message == "Your card was declined."),
        "{declined:?}"
    );
}

#[tokio::test]
async fn a_payment_method_made_from_a_declining_card_number_is_declined() {
    let base = localstripe_url();
    // What a browser would do with Stripe.js: card data goes to Stripe, never to us.
    let payment_method: serde_json::Value = reqwest::Client::new()
        .post(format!("{base}/v1/payment_methods"))
        .bearer_auth(SECRET_KEY)
        .form(&[
            ("type", "card"),
            ("card[number]", "4000000000000341"),
            ("card[exp_month]", "12"),
            ("card[exp_year]", "2030"),
            ("card[cvc]", "123"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let pm = payment_method["id"].as_str().unwrap();

    let declined = provider(&base).charge(charge_request(pm)).await;

    assert_eq!(declined_code(declined), "card_declined");
}

#[tokio::test]
async fn an_unknown_payment_method_is_invalid() {
    let stripe = provider(&localstripe_url());

    let unknown = stripe.charge(charge_request("pm_does_not_exist")).await;

    assert!(matches!(unknown, Err(PaymentError::Invalid(_))), "{unknown:?}");
}

#[tokio::test]
async fn an_invalid_amount_is_invalid() {
    let stripe = provider(&localstripe_url());

    let zero = stripe.charge(ChargeRequest { amount: 0, ..charge_request("pm_card_visa") }).await;

    assert!(matches!(zero, Err(PaymentError::Invalid(_))), "{zero:?}");
}

// ---------------------------------------------------------------------------------------------
// Refunds
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_charge_can_be_refunded_in_part_or_in_full() {
    let stripe = provider(&localstripe_url());
    let partly = stripe.charge(charge_request("pm_card_visa")).await.unwrap();
    let fully = stripe.charge(charge_request("pm_card_visa")).await.unwrap();

    let part = stripe.refund(refund_request(&partly.reference, Some(1500))).await.unwrap();
    let full = stripe.refund(refund_request(&fully.reference, None)).await.unwrap();

    assert!(part.reference.starts_with("re_"), "{}", part.reference);
    assert_eq!(part.amount, 1500);
    assert!(full.reference.starts_with("re_"), "{}", full.reference);
    assert_eq!(full.amount, 5000);
    assert_ne!(part.reference, full.reference);
}

#[tokio::test]
async fn retrying_a_refund_with_the_same_key_refunds_once() {
    let (proxy, base) = IdempotencyProxy::start(localstripe_url()).await;
    let stripe = provider(&base);
    let charge = stripe.charge(charge_request("pm_card_visa")).await.unwrap();
    let req = refund_request(&charge.reference, Some(2000));

    let first = stripe.refund(req.clone()).await.unwrap();
    let retry = stripe.refund(req.clone()).await.unwrap();

    assert_eq!((retry.reference.as_str(), retry.amount), (first.reference.as_str(), 2000));
    assert_eq!(proxy.forwarded(Method::POST, "/v1/refunds").await, vec![Some(req.idempotency_key)]);
}

#[tokio::test]
async fn refunding_an_unknown_payment_is_invalid() {
    let stripe = provider(&localstripe_url());

    let refund = stripe.refund(refund_request("pi_does_not_exist", None)).await;

    assert!(matches!(refund, Err(PaymentError::Invalid(_))), "{refund:?}");
}

// ---------------------------------------------------------------------------------------------
// Stripe unavailable, and answers localstripe never gives
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn an_unreachable_stripe_is_unavailable_at_once() {
    let stripe = provider(&closed_port_url());
    let started = Instant::now();

    let charge = stripe.charge(charge_request("pm_card_visa")).await;
    let refund = stripe.refund(refund_request("pi_123", None)).await;

    assert!(matches!(charge, Err(PaymentError::Unavailable(_))), "{charge:?}");
    assert!(matches!(refund, Err(PaymentError::Unavailable(_))), "{refund:?}");
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
}

#[tokio::test]
async fn a_silent_stripe_times_out_as_unavailable() {
    // Accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            open.push(socket);
        }
    });
    let stripe = provider(&base).with_timeout(Duration::from_millis(300));
    let started = Instant::now();

    let charge = stripe.charge(charge_request("pm_card_visa")).await;

    assert!(matches!(charge, Err(PaymentError::Unavailable(_))), "{charge:?}");
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
}

#[tokio::test]
async fn stripes_error_answers_map_to_payment_errors() {
    const CARD_ERROR: &str = r#"{"error": {"type": "card_error", "code": "card_declined",
        "decline_code": "insufficient_funds", "message": "Your card has insufficient funds."}}"#;
    const RATE_LIMITED: &str = r#"{"error": {"type": "invalid_request_error", "code": "rate_limit",
        "message": "Too many requests"}}"#;
    const API_ERROR: &str = r#"{"error": {"type": "api_error", "message": "Something went wrong"}}"#;
    const BAD_KEY: &str = r#"{"error": {"type": "invalid_request_error",
        "message": "Invalid API Key provided: sk_test_****doff"}}"#;
    const IN_USE: &str = r#"{"error": {"type": "idempotency_error", "code": "idempotency_key_in_use",
        "message": "There is currently another in-progress request using this Idempotent Key"}}"#;

    let declined = provider(&canned_stripe(402, CARD_ERROR).await).charge(charge_request("pm_card_visa")).await;
    assert_eq!(declined_code(declined), "insufficient_funds");

    for (status, body) in
        [(429, RATE_LIMITED), (500, API_ERROR), (401, BAD_KEY), (409, IN_USE), (502, "<html>bad gateway</html>")]
    {
        let result = provider(&canned_stripe(status, body).await).charge(charge_request("pm_card_visa")).await;
        assert!(matches!(&result, Err(PaymentError::Unavailable(m)) if !m.contains("sk_")), "{status}: {result:?}");
    }
}

#[tokio::test]
async fn a_payment_intent_waiting_for_3d_secure_is_pending() {
    // Trimmed from a real Stripe answer to a confirmation that needs 3-D Secure.
    const REQUIRES_ACTION: &str = r#"{"id": "pi_3Pending", "object": "payment_intent", "amount": 5000,
        "amount_received": 0, "currency": "jpy", "status": "requires_action",
        "next_action": {"type": "use_stripe_sdk"}, "payment_method_types": ["card"], "livemode": false}"#;

    let charge =
        provider(&canned_stripe(200, REQUIRES_ACTION).await).charge(charge_request("pm_card_visa")).await.unwrap();

    assert_eq!(charge.status, ChargeStatus::Pending);
    assert_eq!((charge.reference.as_str(), charge.amount), ("pi_3Pending", 5000));
}

// ---------------------------------------------------------------------------------------------
// Webhooks
// ---------------------------------------------------------------------------------------------

fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

fn event_payload(kind: &str, object: serde_json::Value) -> String {
    serde_json::json!({
        "id": "evt_1Test", "object": "event", "api_version": "2026-09-30.endive", "created": unix_now(),
        "livemode": false, "type": kind, "data": {"object": object},
    })
    .to_string()
}

fn signed(payload: &str) -> String {
    sign_webhook_for_tests(WEBHOOK_SECRET, payload, unix_now())
}

#[test]
fn a_validly_signed_webhook_parses_each_kind() {
    let stripe = provider("http://127.0.0.1:9");
    let hold = Uuid::new_v4();

    let succeeded = event_payload(
        "payment_intent.succeeded",
        serde_json::json!({"id": "pi_1", "object": "payment_intent", "amount": 5000, "amount_received": 5000,
            "status": "succeeded", "metadata": {"hold_id": hold.to_string()}}),
    );
    assert_eq!(
        stripe.parse_webhook(succeeded.as_bytes(), Some(&signed(&succeeded))).unwrap(),
        WebhookEvent {
            id: "evt_1Test".into(),
            kind: WebhookKind::PaymentSucceeded { reference: "pi_1".into(), amount: 5000, hold_id: Some(hold) },
        }
    );

    let failed = event_payload(
        "payment_intent.payment_failed",
        serde_json::json!({"id": "pi_2", "object": "payment_intent", "amount": 5000, "status": "requires_payment_method",
            "metadata": {"hold_id": hold.to_string()},
            "last_payment_error": {"type": "card_error", "code": "card_declined", "decline_code": "insufficient_funds",
                "message": "Your card has insufficient funds."}}),
    );
    assert_eq!(
        stripe.parse_webhook(failed.as_bytes(), Some(&signed(&failed))).unwrap().kind,
        WebhookKind::PaymentFailed {
            reference: "pi_2".into(),
            reason: "Your card has insufficient funds.".into(),
            hold_id: Some(hold),
        }
    );

    let refunded = event_payload(
        "charge.refunded",
        serde_json::json!({"id": "ch_3", "object": "charge", "amount": 5000, "amount_refunded": 5000,
            "payment_intent": "pi_3", "refunded": true}),
    );
    assert_eq!(
        stripe.parse_webhook(refunded.as_bytes(), Some(&signed(&refunded))).unwrap().kind,
        WebhookKind::Refunded { reference: "pi_3".into(), amount_refunded: 5000 }
    );

    let other = event_payload("balance.available", serde_json::json!({"object": "balance"}));
    assert_eq!(
        stripe.parse_webhook(other.as_bytes(), Some(&signed(&other))).unwrap().kind,
        WebhookKind::Other("balance.available".into())
    );
}

#[test]
fn a_webhook_that_does_not_verify_is_refused() {
    let stripe = provider("http://127.0.0.1:9");
    let payload = event_payload("payment_intent.succeeded", serde_json::json!({"id": "pi_1", "amount": 5000}));
    let now = unix_now();
    let valid = sign_webhook_for_tests(WEBHOOK_SECRET, &payload, now);
    assert!(stripe.parse_webhook(payload.as_bytes(), Some(&valid)).is_ok());

    let tampered = payload.replace("5000", "1");
    let wrong_secret = sign_webhook_for_tests("whsec_someone_else", &payload, now);
    let stale = sign_webhook_for_tests(WEBHOOK_SECRET, &payload, now - WEBHOOK_TOLERANCE_SECS - 60);
    let cases: [(&str, &[u8], Option<&str>); 6] = [
        ("tampered payload", tampered.as_bytes(), Some(&valid)),
        ("wrong secret", payload.as_bytes(), Some(&wrong_secret)),
        ("stale timestamp", payload.as_bytes(), Some(&stale)),
        ("missing header", payload.as_bytes(), None),
        ("garbage header", payload.as_bytes(), Some("t=now,v1=signature")),
        ("empty header", payload.as_bytes(), Some("")),
    ];
    for (case, payload, header) in cases {
        let result = stripe.parse_webhook(payload, header);
        assert!(matches!(result, Err(PaymentError::BadSignature(_))), "{case}: {result:?}");
    }

    let no_secret = StripeProvider::new(&SecretString::from(SECRET_KEY), None, Some("http://127.0.0.1:9")).unwrap();
    let result = no_secret.parse_webhook(payload.as_bytes(), Some(&valid));
    assert!(matches!(result, Err(PaymentError::BadSignature(_))), "no secret: {result:?}");
}

/// An endpoint registered with localstripe, receiving its deliveries.
struct WebhookEndpoint {
    id: String,
    deliveries: mpsc::UnboundedReceiver<(Option<String>, Bytes)>,
}

impl WebhookEndpoint {
    async fn register(base: &str, events: &[&str]) -> Self {
        let (tx, deliveries) = mpsc::unbounded_channel();
        let router = Router::new().route(
            "/webhook",
            post(move |headers: HeaderMap, body: Bytes| async move {
                let signature = headers.get("stripe-signature").and_then(|v| v.to_str().ok()).map(str::to_owned);
                let _ = tx.send((signature, body));
                StatusCode::OK
            }),
        );
        let addr = serve(router).await;
        let id = format!("boxoffice-test-{}", Uuid::new_v4());
        let mut form = vec![("url", format!("http://{addr}/webhook")), ("secret", WEBHOOK_SECRET.to_owned())];
        form.extend(events.iter().map(|event| ("events[]", (*event).to_owned())));
        let response =
            reqwest::Client::new().post(format!("{base}/_config/webhooks/{id}")).form(&form).send().await.unwrap();
        assert!(response.status().is_success(), "registering the webhook: {}", response.status());
        Self { id, deliveries }
    }

    /// Stops deliveries to this endpoint: localstripe cannot forget one, but an
    /// event filter matching nothing silences it.
    async fn unregister(&self, base: &str) {
        let form = [("url", "http://127.0.0.1:9/"), ("secret", "unused"), ("events[]", "none.none")];
        let _ = reqwest::Client::new().post(format!("{base}/_config/webhooks/{}", self.id)).form(&form).send().await;
    }

    /// The first delivery `stripe` verifies and `wanted` accepts; deliveries for
    /// other tests' payments are skipped.
    async fn wait_for(
        &mut self,
        stripe: &StripeProvider,
        wanted: impl Fn(&WebhookKind) -> bool,
    ) -> Result<WebhookEvent, String> {
        let deadline = tokio::time::Instant::now() + WEBHOOK_DELIVERY_TIMEOUT;
        loop {
            let Ok(Some((signature, body))) = tokio::time::timeout_at(deadline, self.deliveries.recv()).await else {
                return Err(format!("no matching webhook within {WEBHOOK_DELIVERY_TIMEOUT:?}"));
            };
            let event = stripe
                .parse_webhook(&body, signature.as_deref())
                .map_err(|err| format!("a delivery was refused: {err} ({signature:?})"))?;
            if wanted(&event.kind) {
                return Ok(event);
            }
        }
    }
}

#[tokio::test]
async fn localstripe_delivers_webhooks_that_verify() {
    let base = localstripe_url();
    let stripe = provider(&base);
    let mut endpoint =
        WebhookEndpoint::register(&base, &["payment_intent.succeeded", "payment_intent.payment_failed"]).await;

    let paid = charge_request("pm_card_visa");
    let charge = stripe.charge(paid.clone()).await.unwrap();
    let succeeded = endpoint
        .wait_for(
            &stripe,
            |kind| matches!(kind, WebhookKind::PaymentSucceeded { reference, .. } if *reference == charge.reference),
        )
        .await;

    let refused = charge_request("pm_card_chargeCustomerFail");
    let declined = stripe.charge(refused.clone()).await;
    let failed = endpoint
        .wait_for(
            &stripe,
            |kind| matches!(kind, WebhookKind::PaymentFailed { hold_id, .. } if *hold_id == Some(refused.hold_id)),
        )
        .await;
    endpoint.unregister(&base).await;

    let succeeded = succeeded.unwrap();
    assert!(succeeded.id.starts_with("evt_"), "{}", succeeded.id);
    assert_eq!(
        succeeded.kind,
        WebhookKind::PaymentSucceeded {
            reference: charge.reference.clone(),
            amount: 5000,
            hold_id: Some(paid.hold_id)
        }
    );
    assert_eq!(declined_code(declined), "card_declined");
    match failed.unwrap().kind {
        WebhookKind::PaymentFailed { reference, reason, .. } => {
            assert!(reference.starts_with("pi_"), "{reference}");
            assert_eq!(reason, "Your card was declined.");
        }
        other => panic!("expected a payment failure, got {other:?}"),
    }
}

#[tokio::test]
async fn a_provider_with_another_secret_refuses_localstripes_webhooks() {
    let base = localstripe_url();
    let mut endpoint = WebhookEndpoint::register(&base, &["payment_intent.succeeded"]).await;
    let charge = provider(&base).charge(charge_request("pm_card_visa")).await.unwrap();
    let other_secret = StripeProvider::new(
        &SecretString::from(SECRET_KEY),
        Some(SecretString::from("whsec_not_the_endpoints")),
        Some(&base),
    )
    .unwrap();

    // Read raw deliveries until ours arrives, then check it does not verify.
    let deadline = tokio::time::Instant::now() + WEBHOOK_DELIVERY_TIMEOUT;
    let delivery = loop {
        match tokio::time::timeout_at(deadline, endpoint.deliveries.recv()).await {
            Ok(Some((signature, body))) if String::from_utf8_lossy(&body).contains(&charge.reference) => {
                break Some((signature, body));
            }
            Ok(Some(_)) => continue,
            _ => break None,
        }
    };
    endpoint.unregister(&base).await;

    let (signature, body) = delivery.expect("localstripe delivered the event");
    let result = other_secret.parse_webhook(&body, signature.as_deref());
    assert!(matches!(result, Err(PaymentError::BadSignature(_))), "{result:?}");
    assert!(provider(&base).parse_webhook(&body, signature.as_deref()).is_ok());
}

/// The proxy compares parameters, not bytes: async-stripe serializes metadata
/// from a `HashMap`, in any order.
#[test]
fn the_proxy_compares_parameters_regardless_of_order() {
    assert_eq!(form_pairs(b"a=1&metadata[x]=2&metadata[y]=3"), form_pairs(b"metadata[y]=3&a=1&metadata[x]=2"));
    assert_ne!(form_pairs(b"a=1"), form_pairs(b"a=2"));
}
