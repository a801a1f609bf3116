//! Event search: `GET /events/search`, filtered, ranked, counted and paged in
//! memory (`store::search`); only the page's rows come from the database.

use crate::error::{ApiError, ApiResult, ProblemCode};
use crate::http::access::{EVENT_COLUMNS, EventRow};
use crate::http::extract::Query;
use crate::http::schema::{EventOut, in_range};
use crate::state::AppState;
use crate::store::search::{Filters, Order};
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(search_events))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SearchParams {
    /// Words to find in title, venue, category or description.
    pub q: Option<String>,
    pub category: Option<String>,
    /// Events on or after this time.
    pub from: Option<DateTime<Utc>>,
    /// Events before this time.
    pub to: Option<DateTime<Utc>>,
    /// Events with some ticket at or under this price.
    pub max_price: Option<i64>,
    /// Events with some ticket at or over this price.
    pub min_price: Option<i64>,
    /// Only events with seats left.
    pub available: Option<bool>,
    /// `date` (default), `-date`, `price`, `-price`, `relevance`.
    pub sort: Option<String>,
    /// From 1.
    pub page: Option<u32>,
    /// 1–100, default 20.
    pub per_page: Option<u32>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct SearchResult {
    pub events: Vec<EventOut>,
    pub page: u32,
    pub per_page: u32,
    /// How many events match, in all.
    pub total: i64,
}

/// Most results one search returns per page.
const MAX_PER_PAGE: u32 = 100;
/// Deepest page reachable by offset.
const MAX_OFFSET: u32 = 10_000;

/// Search published events: filtered, ranked, counted and paged in memory
/// (`store::search`); only the page's rows come from the database.
#[utoipa::path(get, path = "/events/search", tag = "events", params(SearchParams),
    responses((status = 200, body = SearchResult), (status = 400)))]
async fn search_events(
    State(state): State<AppState>,
    Query(p): Query<SearchParams>,
) -> ApiResult<axum::Json<SearchResult>> {
    let per_page = p.per_page.unwrap_or(20);
    if !(1..=MAX_PER_PAGE).contains(&per_page) {
        return Err(ApiError::bad_request(ProblemCode::InvalidQuery, format!("per_page is 1 to {MAX_PER_PAGE}")));
    }
    let page = p.page.unwrap_or(1);
    if page == 0 || (page - 1).saturating_mul(per_page) > MAX_OFFSET {
        return Err(ApiError::bad_request(
            ProblemCode::InvalidQuery,
            format!("page is 1 or more, and at most {MAX_OFFSET} results deep"),
        ));
    }
    if p.from.into_iter().chain(p.to).any(|t| !in_range(t)) {
        return Err(ApiError::bad_request(ProblemCode::InvalidQuery, "from and to are in years 1 to 9999"));
    }
    let q = p.q.as_deref().map(str::trim).filter(|q| !q.is_empty());
    if q.is_some_and(|q| q.len() > 200) {
        return Err(ApiError::bad_request(ProblemCode::InvalidQuery, "q is at most 200 characters"));
    }
    let order = match p.sort.as_deref().unwrap_or(if q.is_some() { "relevance" } else { "date" }) {
        "date" => Order::Date,
        "-date" => Order::DateDesc,
        "price" => Order::Price,
        "-price" => Order::PriceDesc,
        "relevance" if q.is_some() => Order::Relevance,
        other => return Err(ApiError::bad_request(ProblemCode::InvalidQuery, format!("unknown sort {other:?}"))),
    };
    let filters = Filters {
        category: p.category.as_deref().map(str::trim).filter(|c| !c.is_empty()).map(str::to_owned),
        from: p.from,
        to: p.to,
        max_price: p.max_price,
        min_price: p.min_price,
        available: p.available == Some(true),
    };
    let hits = state.search.search(q, &filters, order, ((page - 1) * per_page) as usize, per_page as usize);
    let mut events = Vec::with_capacity(hits.ids.len());
    if !hits.ids.is_empty() {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events e JOIN users u ON u.user_id = e.organizer_id
             WHERE e.event_id = ANY($1) AND e.status = 'published'"
        );
        let mut rows: Vec<EventRow> =
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(&hits.ids).fetch_all(&state.db).await?;
        // In the index's order; an event unpublished since the index last synced drops out.
        let position: std::collections::HashMap<Uuid, usize> =
            hits.ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
        rows.sort_by_key(|r| position.get(&r.event_id).copied());
        events.extend(rows.into_iter().map(EventOut::from));
    }
    Ok(axum::Json(SearchResult { events, page, per_page, total: i64::try_from(hits.total).unwrap_or(i64::MAX) }))
}
