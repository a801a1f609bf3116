//! `IdempotencyProxy`: Stripe's idempotency in front of localstripe, which has none.

use super::serve;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::sync::Arc;

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
pub(super) struct IdempotencyProxy {
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
    pub(super) async fn start(upstream: String) -> (Self, String) {
        let proxy = Self { upstream, client: reqwest::Client::new(), state: Default::default() };
        let addr = serve(Router::new().fallback(Self::handle).with_state(proxy.clone())).await;
        (proxy, format!("http://{addr}"))
    }

    pub(super) async fn forwarded(&self, method: Method, path: &str) -> Vec<Option<String>> {
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

/// The proxy compares parameters, not bytes: async-stripe serializes metadata
/// from a `HashMap`, in any order.
#[test]
fn the_proxy_compares_parameters_regardless_of_order() {
    assert_eq!(form_pairs(b"a=1&metadata[x]=2&metadata[y]=3"), form_pairs(b"metadata[y]=3&a=1&metadata[x]=2"));
    assert_ne!(form_pairs(b"a=1"), form_pairs(b"a=2"));
}
