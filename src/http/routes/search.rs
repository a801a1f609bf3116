//! Event search: `GET /events/search`, filtered, ranked, counted and paged in
//! memory (`store::search`); only the page's rows come from the database.

use crate::error::{ApiError, ApiResult, ProblemCode};
use crate::http::access::{EVENT_COLUMNS, EventRow};
use crate::http::extract::Query;
use crate::http::problems::{BadQuery, Unavailable};
use crate::http::schema::EventOut;
use crate::state::AppState;
use crate::store::search::{Filters, Order};
use axum::extract::State;
use chrono::{DateTime, Datelike, FixedOffset, Utc};
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
    /// Words to find in title, venue, category or description (at most 200 characters
    /// once trimmed).
    #[param(max_length = 200, pattern = r"^[^\x00]*$")]
    pub q: Option<String>,
    #[param(pattern = r"^[^\x00]*$")]
    pub category: Option<String>,
    /// Events on or after this time (years 0000 to 9999, as RFC 3339 writes them).
    pub from: Option<DateTime<FixedOffset>>,
    /// Events before this time (years 0000 to 9999).
    pub to: Option<DateTime<FixedOffset>>,
    /// Events with some ticket at or under this price.
    pub max_price: Option<i64>,
    /// Events with some ticket at or over this price.
    pub min_price: Option<i64>,
    /// Only events with seats left.
    pub available: Option<bool>,
    /// `relevance` (default with `q`; without `q` it is `date`), `date` (default), `-date`,
    /// `price`, `-price`.
    #[param(inline)]
    pub sort: Option<Sort>,
    /// From 1 (default) to 10,000; pages past the last result are empty.
    #[param(minimum = 1, maximum = 10_000)]
    pub page: Option<u32>,
    /// 1–100, default 20.
    #[param(minimum = 1, maximum = 100)]
    pub per_page: Option<u32>,
}

/// The order of search results.
#[derive(Clone, Copy, Deserialize, ToSchema)]
pub enum Sort {
    #[serde(rename = "relevance")]
    Relevance,
    #[serde(rename = "date")]
    Date,
    #[serde(rename = "-date")]
    DateDesc,
    #[serde(rename = "price")]
    Price,
    #[serde(rename = "-price")]
    PriceDesc,
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
/// Highest page number.
const MAX_PAGE: u32 = 10_000;

/// Search published events: filtered, ranked, counted and paged in memory
/// (`store::search`); only the page's rows come from the database.
#[utoipa::path(get, path = "/events/search", tag = "events", params(SearchParams),
    responses((status = 200, body = SearchResult), BadQuery, Unavailable))]
async fn search_events(
    State(state): State<AppState>,
    Query(p): Query<SearchParams>,
) -> ApiResult<axum::Json<SearchResult>> {
    let per_page = p.per_page.unwrap_or(20);
    let page = p.page.unwrap_or(1);
    if !(1..=MAX_PER_PAGE).contains(&per_page) || !(1..=MAX_PAGE).contains(&page) {
        return Err(ApiError::bad_request(
            ProblemCode::InvalidQuery,
            format!("page is 1 to {MAX_PAGE} and per_page 1 to {MAX_PER_PAGE}"),
        ));
    }
    // RFC 3339 writes years 0000 to 9999; chrono reads more than that.
    if p.from.into_iter().chain(p.to).any(|t| !(0..=9999).contains(&t.naive_local().year())) {
        return Err(ApiError::bad_request(ProblemCode::InvalidQuery, "from and to are in years 0000 to 9999"));
    }
    let q = p.q.as_deref().map(str::trim).filter(|q| !q.is_empty());
    if q.is_some_and(|q| q.chars().count() > 200) {
        return Err(ApiError::bad_request(ProblemCode::InvalidQuery, "q is at most 200 characters"));
    }
    let order = match (p.sort, q) {
        (Some(Sort::Relevance) | None, Some(_)) => Order::Relevance,
        // Without words there is nothing to rank by: the default order.
        (Some(Sort::Relevance | Sort::Date) | None, None) => Order::Date,
        (Some(Sort::DateDesc), _) => Order::DateDesc,
        (Some(Sort::Price), _) => Order::Price,
        (Some(Sort::PriceDesc), _) => Order::PriceDesc,
        (Some(Sort::Date), Some(_)) => Order::Date,
    };
    let offset = (page - 1).saturating_mul(per_page);
    let filters = Filters {
        category: p.category.as_deref().map(str::trim).filter(|c| !c.is_empty()).map(str::to_owned),
        from: p.from.map(|t| t.with_timezone(&Utc)),
        to: p.to.map(|t| t.with_timezone(&Utc)),
        max_price: p.max_price,
        min_price: p.min_price,
        available: p.available == Some(true),
    };
    let hits = state.search.search(q, &filters, order, offset as usize, per_page as usize);
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
