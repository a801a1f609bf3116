//! The availability reporter: running events' taken seats, copied to the
//! database every few seconds for search listings.

use crate::state::AppState;
use std::time::Duration;

/// How often running events report their availability for search listings.
const REPORT_EVERY: Duration = Duration::from_secs(2);

/// Writes each running event's taken seats (held + sold) to `events.taken_count`
/// for search listings. One write per event every few seconds — never per sale,
/// and never read to decide one.
pub async fn report(state: AppState) {
    let mut tick = tokio::time::interval(REPORT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let mut ids = Vec::new();
        let mut taken = Vec::new();
        for handle in state.registry.running_handles() {
            if let Ok(a) = handle.availability().await {
                ids.push(handle.event().0);
                taken.push(i32::try_from(a.total.held + a.total.sold).unwrap_or(i32::MAX));
            }
        }
        if ids.is_empty() {
            continue;
        }
        let result = sqlx::query(
            "UPDATE events SET taken_count = u.taken FROM UNNEST($1::uuid[], $2::int4[]) AS u(id, taken)
             WHERE events.event_id = u.id AND events.taken_count <> u.taken",
        )
        .bind(&ids)
        .bind(&taken)
        .execute(&state.db)
        .await;
        if let Err(e) = result {
            tracing::debug!(error = %e, "availability report skipped");
        }
    }
}
