//! Several nodes on one database: each event runs on exactly one node, any node
//! takes any request (docs/domain.md, "Several nodes").
//!
//! - **Membership** (`nodes`): each node upserts its row at start and heartbeats
//!   every third of the lease TTL; a node whose heartbeat is older than the TTL,
//!   or that said it stopped, is not a member.
//! - **Ownership** (`event_leases`, `store::leases`): a node runs an event only
//!   while it holds the event's lease; the journal refuses the writes of a node
//!   that lost it (fencing).
//! - **Routing** ([`Cluster::call`]): an event running here is served here;
//!   otherwise the holder of its live lease serves it, or — nobody holding it — the
//!   member the event hashes to (rendezvous hashing over the members), which
//!   takes the lease. A call for another node goes to it over HTTP
//!   (`POST /internal/events/{id}`, authenticated by a key derived from
//!   `JWT_SECRET`, one hop); "not the owner" makes the sender look again.
//! - **Upkeep** ([`Cluster::upkeep`]): renews this node's leases, stops events
//!   whose lease was lost, gives up events that now hash to another member, and
//!   steps down entirely (stops every actor) when it cannot renew for half the
//!   TTL, before its leases can expire under it.

pub mod rpc;

use crate::store::leases::Leases;
use axum::body::Body;
use boxoffice_actors::{EventError, EventId, Registry};
use dashmap::DashMap;
use hmac::{Hmac, Mac};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rpc::{EventCall, EventReply};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// The header carrying the cluster key on internal calls.
pub const CLUSTER_KEY_HEADER: &str = "x-boxoffice-cluster-key";

/// Attempts of one call across re-routes (a move in progress, a dead owner).
const ROUTE_ATTEMPTS: usize = 3;
/// How long an event's owner, once looked up, is trusted without looking again.
const OWNER_CACHE_FOR: Duration = Duration::from_millis(500);
/// Largest answer read from a peer.
const MAX_REPLY_BYTES: usize = 16 * 1024 * 1024;

/// A node of the cluster.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Member {
    pub node_id: String,
    pub advertise_url: String,
}

/// Where a call goes.
enum Target {
    Here,
    There(Member),
}

pub struct Cluster {
    pub leases: Arc<Leases>,
    me: Member,
    /// For routing look-ups and `GET /cluster`.
    db: PgPool,
    /// Heartbeats and renewals only: a pool of their own, so a node busy serving
    /// requests still renews in time.
    upkeep_db: PgPool,
    /// The live members (this node included), as of the last heartbeat.
    members: RwLock<Vec<Member>>,
    /// Event → who served it last, and when that was learnt.
    owners: DashMap<Uuid, (Member, Instant)>,
    client: Client<HttpConnector, Body>,
    /// What peers must present on internal calls.
    key: String,
    call_timeout: Duration,
    /// When this node last renewed its leases and heartbeat.
    last_renewal: RwLock<Instant>,
}

impl Cluster {
    pub fn new(
        leases: Arc<Leases>,
        advertise_url: String,
        db: PgPool,
        upkeep_db: PgPool,
        secret: &SecretString,
        call_timeout: Duration,
    ) -> Self {
        let me = Member { node_id: leases.node_id().to_owned(), advertise_url };
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(64)
            .build(connector);
        Self {
            leases,
            members: RwLock::new(vec![me.clone()]),
            me,
            db,
            upkeep_db,
            owners: DashMap::new(),
            client,
            key: cluster_key(secret),
            call_timeout,
            last_renewal: RwLock::new(Instant::now()),
        }
    }

    pub fn node_id(&self) -> &str {
        &self.me.node_id
    }

    pub fn me(&self) -> &Member {
        &self.me
    }

    /// Whether `presented` is the cluster key.
    pub fn accepts_key(&self, presented: &str) -> bool {
        subtle::ConstantTimeEq::ct_eq(self.key.as_bytes(), presented.as_bytes()).into()
    }

    /// Joins (or rejoins) the membership.
    pub async fn register(&self) -> sqlx::Result<()> {
        sqlx::query(
            "INSERT INTO nodes (node_id, advertise_url) VALUES ($1, $2)
             ON CONFLICT (node_id) DO UPDATE
                SET advertise_url = EXCLUDED.advertise_url, started_at = now(), heartbeat_at = now(), stopped_at = NULL",
        )
        .bind(&self.me.node_id)
        .bind(&self.me.advertise_url)
        .execute(&self.upkeep_db)
        .await?;
        self.refresh_members().await
    }

    async fn refresh_members(&self) -> sqlx::Result<()> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT node_id, advertise_url FROM nodes
             WHERE stopped_at IS NULL AND heartbeat_at > now() - make_interval(secs => $1) ORDER BY node_id",
        )
        .bind(self.leases.ttl().as_secs_f64())
        .fetch_all(&self.upkeep_db)
        .await?;
        let mut members: Vec<Member> =
            rows.into_iter().map(|(node_id, advertise_url)| Member { node_id, advertise_url }).collect();
        if !members.contains(&self.me) {
            members.push(self.me.clone());
        }
        *self.members.write().unwrap_or_else(std::sync::PoisonError::into_inner) = members;
        Ok(())
    }

    /// The live members, this node included.
    pub fn members(&self) -> Vec<Member> {
        self.members.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// The member `event` belongs on when nobody holds it: highest rendezvous score.
    pub fn placement(&self, event: Uuid) -> Member {
        let members = self.members();
        members.into_iter().max_by_key(|m| rendezvous(&m.node_id, event)).unwrap_or_else(|| self.me.clone())
    }

    /// Runs `call` on `event`'s actor, wherever it lives.
    pub async fn call(&self, registry: &Registry, event: EventId, call: EventCall) -> Result<EventReply, EventError> {
        let mut last = EventError::NotOwner(None);
        for _ in 0..ROUTE_ATTEMPTS {
            // The paths off a running local actor (looking the owner up, forwarding)
            // are boxed: their futures are large, and the call on a running actor,
            // the flash sale's path, would otherwise carry and move their space.
            let target =
                if registry.running(event).is_some() { Target::Here } else { Box::pin(self.route(event.0)).await };
            let result = match &target {
                Target::Here => self.serve_here(registry, event, call.clone()).await,
                Target::There(member) => {
                    metrics::counter!("boxoffice_cluster_forwards_total").increment(1);
                    Box::pin(self.send(member, event, &call)).await
                }
            };
            match result {
                Err(EventError::NotOwner(owner)) => {
                    // Someone else holds it (or the one we asked does not): look again.
                    self.owners.remove(&event.0);
                    if let Some(node) = owner.as_deref().and_then(|n| self.member(n)) {
                        self.owners.insert(event.0, (node, Instant::now()));
                    }
                    last = EventError::NotOwner(owner);
                }
                Err(EventError::Stopped) if matches!(target, Target::There(_)) => {
                    self.owners.remove(&event.0);
                    last = EventError::Stopped;
                }
                other => return other,
            }
        }
        Err(last)
    }

    /// Runs `call` on this node's actor of `event` — unless this node can no longer
    /// trust its lease by its own clock (it was paused, or could not renew): then
    /// the actor stops first, since memory that another node may have moved on from
    /// must not answer (not even a refusal), and the call activates the event
    /// afresh, which takes the lease again or says who has it.
    pub async fn serve_here(
        &self,
        registry: &Registry,
        event: EventId,
        call: EventCall,
    ) -> Result<EventReply, EventError> {
        if registry.running(event).is_some() && !self.leases.is_valid(event.0) {
            tracing::warn!(%event, "lease no longer trusted here; stopping the event's actor before answering");
            metrics::counter!("boxoffice_lease_expired_locally_total").increment(1);
            Box::pin(registry.evict(event)).await;
            self.leases.forget(event.0);
        }
        rpc::execute(registry, event, call).await
    }

    fn member(&self, node_id: &str) -> Option<Member> {
        self.members().into_iter().find(|m| m.node_id == node_id)
    }

    /// Where a call for an event not running here goes.
    async fn route(&self, event: Uuid) -> Target {
        if let Some(entry) = self.owners.get(&event)
            && entry.1.elapsed() < OWNER_CACHE_FOR
        {
            let member = entry.0.clone();
            return if member == self.me { Target::Here } else { Target::There(member) };
        }
        let holder: Result<Option<(String, String)>, _> = sqlx::query_as(
            "SELECT l.node_id, n.advertise_url FROM event_leases l JOIN nodes n USING (node_id)
             WHERE l.event_id = $1 AND l.expires_at > now() AND n.stopped_at IS NULL
               AND n.heartbeat_at > now() - make_interval(secs => $2)",
        )
        .bind(event)
        .bind(self.leases.ttl().as_secs_f64())
        .fetch_optional(&self.db)
        .await;
        let owner = match holder {
            Ok(Some((node_id, advertise_url))) => Member { node_id, advertise_url },
            // Nobody (alive) holds it, or the database cannot say: where it hashes to.
            Ok(None) | Err(_) => self.placement(event),
        };
        self.owners.insert(event, (owner.clone(), Instant::now()));
        if owner == self.me { Target::Here } else { Target::There(owner) }
    }

    /// Sends `call` to `member` and reads its answer. A peer that cannot be
    /// reached is dropped from the members until the next heartbeat, and the call
    /// is routed again (`NotOwner`).
    async fn send(&self, member: &Member, event: EventId, call: &EventCall) -> Result<EventReply, EventError> {
        let body = serde_json::to_vec(call).map_err(|e| EventError::Unavailable(e.to_string()))?;
        let uri = format!("{}/internal/events/{}", member.advertise_url.trim_end_matches('/'), event.0);
        let request = axum::http::Request::post(uri)
            .header("content-type", "application/json")
            .header(CLUSTER_KEY_HEADER, &self.key)
            .body(Body::from(body))
            .map_err(|e| EventError::Unavailable(format!("bad peer address {}: {e}", member.advertise_url)))?;
        let answered = tokio::time::timeout(self.call_timeout, async {
            let response = self.client.request(request).await?;
            let status = response.status();
            let bytes = axum::body::to_bytes(Body::new(response.into_body()), MAX_REPLY_BYTES)
                .await
                .map_err(|e| anyhow::anyhow!("reading the answer: {e}"))?;
            anyhow::Ok((status, bytes))
        })
        .await;
        match answered {
            Ok(Ok((status, bytes))) if status.is_success() => {
                serde_json::from_slice::<Result<EventReply, EventError>>(&bytes).unwrap_or_else(|e| {
                    Err(EventError::Unavailable(format!("unreadable answer from {}: {e}", member.node_id)))
                })
            }
            Ok(Ok((status, _))) => Err(EventError::Unavailable(format!("node {} answered {status}", member.node_id))),
            Ok(Err(e)) => {
                tracing::warn!(node = %member.node_id, error = %e, "peer unreachable; routing around it");
                self.members.write().unwrap_or_else(std::sync::PoisonError::into_inner).retain(|m| m != member);
                Err(EventError::NotOwner(None))
            }
            Err(_) => Err(EventError::Timeout),
        }
    }

    /// One round of upkeep (every third of the TTL): heartbeat, membership,
    /// lease renewal; stops the actors of events lost, hands over events that
    /// belong elsewhere now, and steps down if the database has been out of reach
    /// for too long to trust the leases.
    pub async fn upkeep(&self, registry: &Registry) {
        let looked_at = std::time::Instant::now();
        let running: Vec<Uuid> = registry.running_handles().iter().map(|h| h.event().0).collect();
        let renewed = async {
            sqlx::query("UPDATE nodes SET heartbeat_at = now(), stopped_at = NULL WHERE node_id = $1")
                .bind(&self.me.node_id)
                .execute(&self.upkeep_db)
                .await?;
            self.refresh_members().await?;
            self.leases.renew(&self.upkeep_db, &running, looked_at).await
        }
        .await;
        match renewed {
            Ok(lost) => {
                *self.last_renewal.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Instant::now();
                for event in lost {
                    tracing::warn!(%event, "lease lost to another node; stopping the event here");
                    metrics::counter!("boxoffice_leases_lost_total").increment(1);
                    registry.evict(EventId(event)).await;
                }
                self.rebalance(registry, &running).await;
            }
            Err(e) => {
                let since = self.last_renewal.read().unwrap_or_else(std::sync::PoisonError::into_inner).elapsed();
                tracing::warn!(error = %e, ?since, "leases not renewed");
                // Renewals come every third of the TTL: past half of it, the next
                // one could be too late, so step down now, before the leases expire.
                if since >= self.leases.ttl() / 2 && !running.is_empty() {
                    tracing::error!("cannot renew leases: stopping every event here before the leases expire");
                    metrics::counter!("boxoffice_cluster_stepdowns_total").increment(1);
                    for (event, _) in self.leases.held() {
                        self.leases.forget(event);
                    }
                    registry.evict_all().await;
                }
            }
        }
        metrics::gauge!("boxoffice_leases_held").set(self.leases.held().len() as f64);
        metrics::gauge!("boxoffice_cluster_members").set(self.members().len() as f64);
    }

    /// Hands over (drains, stops, releases) running events that hash to another
    /// live member: they move when nodes join.
    async fn rebalance(&self, registry: &Registry, running: &[Uuid]) {
        if self.members().len() < 2 {
            return;
        }
        for &event in running {
            let home = self.placement(event);
            if home != self.me {
                tracing::info!(%event, to = %home.node_id, "event belongs on another node now; handing it over");
                metrics::counter!("boxoffice_lease_handovers_total").increment(1);
                registry.evict(EventId(event)).await;
                let _ = self.leases.release(&self.db, &[event]).await;
                self.owners.insert(event, (home, Instant::now()));
            }
        }
    }

    /// After the actors drained at shutdown: gives every lease up at once and
    /// leaves the membership, so other nodes take over without waiting.
    pub async fn leave(&self) {
        let held: Vec<Uuid> = self.leases.held().into_iter().map(|(e, _)| e).collect();
        if let Err(e) = self.leases.release(&self.db, &held).await {
            tracing::warn!(error = %e, "leases not released; they expire by themselves");
        }
        let _ = sqlx::query("UPDATE nodes SET stopped_at = now() WHERE node_id = $1")
            .bind(&self.me.node_id)
            .execute(&self.db)
            .await;
    }

    /// The state of the cluster for `GET /cluster`.
    pub async fn describe(&self) -> sqlx::Result<Vec<NodeOut>> {
        let rows: Vec<NodeOut> = sqlx::query_as(
            "SELECT n.node_id, n.advertise_url, n.started_at, n.heartbeat_at, n.stopped_at,
                    n.stopped_at IS NULL AND n.heartbeat_at > now() - make_interval(secs => $1) AS alive,
                    (SELECT count(*) FROM event_leases l WHERE l.node_id = n.node_id AND l.expires_at > now()) AS leases
             FROM nodes n ORDER BY n.node_id",
        )
        .bind(self.leases.ttl().as_secs_f64())
        .fetch_all(&self.db)
        .await?;
        Ok(rows)
    }
}

/// A node as `GET /cluster` shows it.
#[derive(Clone, Debug, serde::Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct NodeOut {
    pub node_id: String,
    pub advertise_url: String,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub heartbeat_at: chrono::DateTime<chrono::Utc>,
    pub stopped_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Heartbeat within the lease TTL and not stopped.
    pub alive: bool,
    /// Live event leases it holds.
    pub leases: i64,
}

/// The key nodes present to each other: derived from the shared `JWT_SECRET`,
/// never the secret itself.
fn cluster_key(secret: &SecretString) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes()).expect("any key length");
    mac.update(b"boxoffice cluster key v1");
    hex(&mac.finalize().into_bytes())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Rendezvous (highest random weight) score of `node` for `event`.
fn rendezvous(node: &str, event: Uuid) -> u64 {
    let digest = Sha256::new().chain_update(node.as_bytes()).chain_update(event.as_bytes()).finalize();
    u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendezvous_spreads_events_and_moves_few_when_a_node_joins() {
        let events: Vec<Uuid> = (0..3000u128).map(Uuid::from_u128).collect();
        fn home<'a>(nodes: &[&'a str], e: Uuid) -> &'a str {
            nodes.iter().max_by_key(|n| rendezvous(n, e)).unwrap()
        }
        let two = ["a", "b"];
        let three = ["a", "b", "c"];
        let on_a = events.iter().filter(|e| home(&two, **e) == "a").count();
        assert!((1300..1700).contains(&on_a), "uneven: {on_a} of 3000 on a");
        let moved = events.iter().filter(|e| home(&two, **e) != home(&three, **e)).count();
        // Only events that now hash to the new node move: about a third.
        assert!((800..1200).contains(&moved), "{moved} moved");
        assert!(events.iter().all(|e| home(&two, *e) == home(&three, *e) || home(&three, *e) == "c"));
    }

    #[test]
    fn the_cluster_key_is_derived_not_the_secret() {
        let secret = SecretString::from("a-secret-that-is-long-enough-0123456789");
        let key = cluster_key(&secret);
        assert_eq!(key.len(), 64);
        assert!(!key.contains("secret"));
        assert_eq!(key, cluster_key(&secret));
        assert_ne!(key, cluster_key(&SecretString::from("another-secret-that-is-long-enough-0123")));
    }
}
