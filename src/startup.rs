//! The running service: `Application::build` wires configuration, database,
//! journal, actors and routes; `run_until_stopped` serves until a shutdown
//! signal and then drains in order — stop accepting, let in-flight requests
//! finish, drain every event actor, flush the journal, stop the embedded database.

use crate::auth::rate_limit::RateLimiter;
use crate::auth::tokens::TokenKeys;
use crate::cache::{Cache, RedisLink};
use crate::config::Settings;
use crate::embedded_pg::EmbeddedPostgres;
use crate::error::{ApiError, ApiResult};
use crate::journal::{JournalConfig, PgJournal};
use crate::loader::PgLoader;
use crate::notify::Notifier;
use crate::payments::PaymentProvider;
use crate::payments::stripe::StripeProvider;
use crate::payments::test_provider::TestProvider;
use crate::qr::QrSigner;
use crate::relay::OutboxRelay;
use crate::search::SearchIndex;
use crate::{auth, db, events, holds, purchases, system, tickets};
use anyhow::Context;
use axum::extract::{MatchedPath, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use boxoffice_actors::{ActorConfig, Limits, Registry, SystemClock};
use dashmap::DashMap;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use secrecy::{ExposeSecret, SecretString};
use sqlx::PgPool;
use std::future::Future;
use std::ops::Deref;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tower_http::limit::RequestBodyLimitLayer;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use uuid::Uuid;

/// The journal gives up on a connection sooner than request paths do: its breaker
/// then fails writes fast until the database answers (see `journal`).
const JOURNAL_ACQUIRE_TIMEOUT: Duration = Duration::from_millis(500);

/// How long ended holds stay loaded, for late payments and idempotent retries.
pub const ENDED_HOLD_RETENTION: Duration = Duration::from_secs(3600);

/// Shared by every request: cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

pub struct Shared {
    pub db: PgPool,
    pub registry: Registry,
    pub tokens: TokenKeys,
    pub auth_limiter: RateLimiter,
    pub payments: Arc<dyn PaymentProvider>,
    pub qr: QrSigner,
    pub settings: Settings,
    pub metrics: Option<PrometheusHandle>,
    /// Best-effort Redis cache; a miss or no-op whenever Redis is absent or down.
    pub cache: Cache,
    /// Event currency by id, so the hold path does not ask the database each time.
    currencies: DashMap<Uuid, Arc<tokio::sync::OnceCell<String>>>,
    /// Event and buyer of the holds created here, so paying for one does not ask the database.
    pub hold_owners: crate::holds::HoldOwners,
    /// Published events in memory for `GET /events/search`.
    pub search: Arc<SearchIndex>,
}

impl Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AppState {
    /// The currency of an event that exists (404 otherwise). Single-flight: when
    /// thousands of requests hit a cold event at once, one of them asks the database.
    pub async fn event_currency(&self, event: Uuid) -> ApiResult<String> {
        let cell = self.currencies.entry(event).or_default().clone();
        let result = cell
            .get_or_try_init(|| async {
                let currency: Option<String> = sqlx::query_scalar("SELECT currency FROM events WHERE event_id = $1")
                    .bind(event)
                    .fetch_optional(&self.db)
                    .await?;
                currency.ok_or_else(|| ApiError::not_found("event"))
            })
            .await
            .cloned();
        if result.is_err() {
            // Unknown ids are not remembered.
            self.currencies.remove_if(&event, |_, c| Arc::ptr_eq(c, &cell));
        }
        result
    }

    /// Forgets cached facts about an event after it changed (its currency here,
    /// event details in Redis) and brings the search index up to date, so the
    /// change shows in the next search.
    pub async fn invalidate_event(&self, event: Uuid) {
        self.currencies.remove(&event);
        self.cache.invalidate_prefix("event").await;
        if let Err(e) = self.search.sync().await {
            // The background sync catches up once the database answers.
            tracing::warn!(error = %e, "search index not refreshed after an event change");
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "boxoffice", description = "Ticket sales built for flash sales. Errors are RFC 9457 problem documents with a stable `code`."),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
    }
}

/// The Prometheus recorder is process-global; several apps in one test process share it.
fn metrics_handle() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let seconds = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(metrics_exporter_prometheus::Matcher::Suffix("_seconds".into()), &seconds)
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        metrics_exporter_prometheus::Matcher::Full("boxoffice_journal_batch_size".into()),
                        &[1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2000.0],
                    )
                });
            match builder.and_then(|b| b.install_recorder()) {
                Ok(handle) => Some(handle),
                Err(e) => {
                    tracing::warn!(error = %e, "metrics recorder not installed");
                    None
                }
            }
        })
        .clone()
}

pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    state: AppState,
    journal_writers: Vec<tokio::task::JoinHandle<()>>,
    embedded: Option<EmbeddedPostgres>,
    background: Vec<tokio::task::JoinHandle<()>>,
    /// Stops the outbox relay, and its task.
    relay: (oneshot::Sender<()>, tokio::task::JoinHandle<()>),
}

impl Application {
    /// Connects (starting the embedded database if no `DATABASE_URL`), migrates,
    /// starts the journal and binds the listener.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let (url, embedded) = match &settings.database_url {
            Some(url) => (url.clone(), None),
            None => {
                tracing::info!(data_dir = %settings.data_dir.display(), "no DATABASE_URL: starting the embedded PostgreSQL");
                let pg = EmbeddedPostgres::start(&settings.data_dir.join("postgres"))
                    .await
                    .context("starting the embedded PostgreSQL")?;
                (SecretString::from(pg.url()), Some(pg))
            }
        };
        let pool = db::connect(url.expose_secret(), settings.database_max_connections)
            .await
            .context("connecting to PostgreSQL")?;
        db::migrator().run(&pool).await.context("running migrations")?;

        let jwt_secret = match &settings.jwt_secret {
            Some(s) => s.clone(),
            None => persistent_secret(&settings, "jwt.secret").context("preparing the JWT secret")?,
        };
        let qr_key = match &settings.qr_signing_key {
            Some(s) => s.clone(),
            None => persistent_secret(&settings, "qr.secret").context("preparing the QR signing key")?,
        };
        let qr = QrSigner::new((settings.qr_key_id.clone(), qr_key), settings.qr_retired_keys.clone());
        let payments: Arc<dyn PaymentProvider> = match &settings.stripe_secret_key {
            Some(key) => Arc::new(
                StripeProvider::new(key, settings.stripe_webhook_secret.clone(), settings.stripe_api_base.as_deref())
                    .map_err(|e| anyhow::anyhow!("configuring Stripe: {e}"))?,
            ),
            None => Arc::new(TestProvider::new()),
        };
        let tokens = TokenKeys::new(
            &jwt_secret,
            &settings.jwt_issuer,
            &settings.jwt_audience,
            settings.access_ttl,
            settings.refresh_ttl,
        );
        if settings.stripe_secret_key.is_none() {
            tracing::warn!(
                "no STRIPE_SECRET_KEY: using the built-in test payment provider (pm_card_visa approves, pm_card_chargeDeclined declines)"
            );
        }
        if settings.redis_url.is_none() {
            tracing::info!("no REDIS_URL: running without Redis (outbox kept in PostgreSQL)");
        }

        // The journal has its own connections, so request-path reads can never
        // starve the writes every acknowledgement waits for.
        let journal_pool =
            db::connect_with_timeout(url.expose_secret(), settings.journal_writers as u32 + 1, JOURNAL_ACQUIRE_TIMEOUT)
                .await
                .context("connecting the journal to PostgreSQL")?;
        let (journal, journal_writers) = PgJournal::start(
            journal_pool,
            JournalConfig {
                max_batch: settings.journal_max_batch,
                max_wait: settings.journal_max_wait,
                writers: settings.journal_writers,
            },
        );
        let registry = Registry::new(
            Arc::new(PgLoader::new(pool.clone(), ENDED_HOLD_RETENTION)),
            Arc::new(journal),
            Arc::new(SystemClock),
            ActorConfig { ended_retention: ENDED_HOLD_RETENTION, ..ActorConfig::default() },
            Limits {
                max_in_flight: settings.event_max_in_flight,
                call_timeout: settings.event_call_timeout,
                retry_after: Duration::from_millis(200),
            },
        );
        let redis = match &settings.redis_url {
            Some(url) => Some(RedisLink::open(url).context("REDIS_URL is not a valid Redis URL")?),
            None => None,
        };
        let notifier = Notifier::from_settings(
            settings.smtp_url.as_ref(),
            settings.smtp_from.as_deref(),
            settings.public_url.as_deref(),
        )?;
        if settings.smtp_url.is_none() {
            tracing::info!(
                "no SMTP_URL: notification emails are written to the log (masked recipient and subject only)"
            );
        }
        let (relay_stop, relay_stopped) = oneshot::channel::<()>();
        let relay_task = tokio::spawn(OutboxRelay::new(pool.clone(), redis.as_ref(), notifier).run(async move {
            let _ = relay_stopped.await;
        }));
        let search = Arc::new(SearchIndex::new(pool.clone()));
        let started = Instant::now();
        search.sync().await.context("loading the search index")?;
        tracing::info!(events = search.len(), took_ms = started.elapsed().as_millis() as u64, "search index loaded");
        let listener = TcpListener::bind(settings.bind).await.with_context(|| format!("binding {}", settings.bind))?;
        let state = AppState(Arc::new(Shared {
            db: pool,
            registry,
            tokens,
            auth_limiter: RateLimiter::new(settings.auth_rate_limit_per_minute, Duration::from_secs(60)),
            payments,
            qr,
            metrics: metrics_handle(),
            cache: Cache::new(redis.as_ref()),
            settings,
            currencies: DashMap::new(),
            hold_owners: crate::holds::HoldOwners::default(),
            search: search.clone(),
        }));
        let router = router(state.clone());
        let background =
            vec![tokio::spawn(system::report_availability(state.clone())), tokio::spawn(search.keep_in_sync())];
        Ok(Self { listener, router, state, journal_writers, embedded, background, relay: (relay_stop, relay_task) })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` completes, then drains everything in order.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let Self { listener, router, state, journal_writers, embedded, background, relay } = self;
        tracing::info!(addr = %listener.local_addr()?, "boxoffice listening");
        serve(listener, router, state.settings.request_timeout, shutdown).await;
        tracing::info!("shutting down: draining event actors");
        for task in background {
            task.abort();
        }
        state.registry.shutdown().await;
        // Dropping the last journal handle (held by the registry) lets the writers
        // finish the queue and exit.
        let pool = state.db.clone();
        drop(state);
        for writer in journal_writers {
            let _ = tokio::time::timeout(Duration::from_secs(10), writer).await;
        }
        // A relay pass in progress finishes; unmarked rows go out at the next start.
        let (relay_stop, mut relay_task) = relay;
        let _ = relay_stop.send(());
        if tokio::time::timeout(Duration::from_secs(15), &mut relay_task).await.is_err() {
            relay_task.abort();
        }
        pool.close().await;
        if let Some(pg) = embedded {
            pg.stop().await.context("stopping the embedded PostgreSQL")?;
        }
        tracing::info!("shutdown complete");
        Ok(())
    }
}

/// Serves HTTP/1.1 like `axum::serve` (client address as `ConnectInfo`, graceful
/// shutdown), plus a deadline on each request's headers: a client that never
/// finishes them (slowloris) is disconnected after `header_timeout` instead of
/// holding its connection — and a graceful shutdown — open for ever.
async fn serve(
    listener: TcpListener,
    router: axum::Router,
    header_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use tower::Service;
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(header_timeout);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait a moment, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(axum::extract::ConnectInfo(peer));
            router.clone().call(request)
        });
        let connection =
            graceful.watch(builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned());
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(Duration::from_secs(30), graceful.shutdown()).await.is_err() {
        tracing::warn!("connections still open after 30 s of shutdown; closing them");
    }
}

/// A secret generated once and kept (0600) in the data directory, so tokens and
/// ticket codes stay valid across restarts without configuration.
fn persistent_secret(settings: &Settings, file: &str) -> anyhow::Result<SecretString> {
    use std::io::Write;
    let path = settings.data_dir.join(file);
    if let Ok(existing) = std::fs::read_to_string(&path)
        && existing.trim().len() >= 32
    {
        return Ok(SecretString::from(existing.trim().to_owned()));
    }
    std::fs::create_dir_all(&settings.data_dir)?;
    let secret = auth::tokens::new_refresh_token() + &auth::tokens::new_refresh_token();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(&path)?.write_all(secret.as_bytes())?;
    tracing::info!(path = %path.display(), "generated a secret (configure it to choose one)");
    Ok(SecretString::from(secret))
}

/// Every route, with the OpenAPI document built from the same definitions.
pub fn router(state: AppState) -> axum::Router {
    let (api, openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(auth::routes::router())
        .merge(events::router())
        .merge(holds::router())
        .merge(purchases::router())
        .merge(tickets::router())
        .merge(system::router())
        .split_for_parts();
    let openapi = Arc::new(openapi);
    api.merge(system::docs_router(openapi))
        .layer(middleware::from_fn(record_request))
        .layer(middleware::from_fn_with_state(state.settings.request_timeout, request_timeout))
        .layer(RequestBodyLimitLayer::new(state.settings.max_body_bytes))
        .layer(middleware::map_response(bare_errors_as_problems))
        .fallback(system::not_found)
        .with_state(state)
}

/// Error answers that did not come from our handlers — the body limit's 413, the
/// router's 405, axum's own rejections of raw `Bytes` bodies — become problem
/// documents like every other error.
async fn bare_errors_as_problems(response: Response) -> Response {
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse;
    let status = response.status();
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    if !(status.is_client_error() || status.is_server_error()) || is_problem {
        return response;
    }
    let allow = response.headers().get(header::ALLOW).cloned();
    let mut problem = match status {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(status, "payload_too_large", "the request body is too large"),
        StatusCode::METHOD_NOT_ALLOWED => {
            ApiError::new(status, "method_not_allowed", "this route does not take that method")
        }
        other => ApiError::new(other, "bad_request", other.canonical_reason().unwrap_or("bad request")),
    }
    .into_response();
    if let Some(allow) = allow {
        problem.headers_mut().insert(header::ALLOW, allow);
    }
    problem
}

/// Per-route latency and status counts.
async fn record_request(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route =
        request.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::histogram!("boxoffice_http_request_duration_seconds", "route" => route.clone(), "method" => method.clone())
        .record(started.elapsed().as_secs_f64());
    metrics::counter!("boxoffice_http_requests_total", "route" => route, "method" => method, "status" => status)
        .increment(1);
    response
}

/// Cuts a request off after REQUEST_TIMEOUT_MS with a problem document (503 `timeout`,
/// Retry-After), like every other error.
async fn request_timeout(
    axum::extract::State(limit): axum::extract::State<Duration>,
    request: Request,
    next: Next,
) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            let mut e = ApiError::unavailable(
                "the request took too long; retry (with the same Idempotency-Key) to learn the outcome",
                Duration::from_secs(1),
            );
            e.code = "timeout";
            axum::response::IntoResponse::into_response(e)
        }
    }
}
