//! Paged reads of a target's `/Users` and `/Groups` — by index (RFC 7644 §3.4.2.4: `startIndex`,
//! 1-based, and `count`) or by cursor where the target offers it (RFC 9865: `cursor`, `count`, and
//! the `nextCursor` of each page; stable under concurrent changes, unlike indexes) — through the delivery crate's [`ScimClient`] (auth, TLS, no redirects, 4 MiB body cap),
//! paced by the target's `rate_limit` (a governor token bucket, every attempt pays, as in
//! `scimflow_delivery::exec`) and retried on transient failures (honouring `Retry-After`).
//!
//! One page is held at a time: [`Pager::next_page`] returns the page's resources, the caller
//! processes and drops them before asking for the next.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::Method;
use serde_json::Value;

use scimflow_config::TargetConfig;
use scimflow_delivery::client::{CallError, ScimClient};

/// Reads pages of one endpoint.
pub struct Pager<'a> {
    client: &'a ScimClient,
    limiter: Option<&'a DefaultDirectRateLimiter>,
    endpoint: &'static str,
    attributes: Option<String>,
    count: usize,
    /// 1-based index of the next resource to read.
    next: usize,
    /// Cursor mode: the cursor of the next page (`Some("")` for the first).
    cursor: Option<String>,
    total: Option<usize>,
    done: bool,
    max_attempts: u32,
    /// Requests sent (attempts included).
    pub requests: u64,
}

/// Whether the target says it supports cursor pagination (`/ServiceProviderConfig` →
/// `pagination.cursor: true`, RFC 9865 §3). Any failure to tell means no.
pub async fn offers_cursors(
    client: &ScimClient,
    limiter: Option<&DefaultDirectRateLimiter>,
) -> bool {
    if let Some(l) = limiter {
        l.until_ready().await;
    }
    match client
        .send(Method::GET, "/ServiceProviderConfig", &[], None, None)
        .await
    {
        Ok(reply) => reply
            .body
            .as_ref()
            .and_then(|b| b.get("pagination"))
            .and_then(|p| p.get("cursor"))
            .and_then(Value::as_bool)
            .unwrap_or(false),
        Err(e) => {
            tracing::debug!(error = %e, "no /ServiceProviderConfig; paging by index");
            false
        }
    }
}

/// The target's rate limiter, shaped like the executor's.
pub fn limiter(target: &TargetConfig) -> Option<DefaultDirectRateLimiter> {
    target.rate_limit.map(|r| {
        let per_token = Duration::from_secs_f64(1.0 / r.per_second);
        let quota = Quota::with_period(per_token)
            .expect("positive rate")
            .allow_burst(NonZeroU32::new(r.burst).unwrap_or(NonZeroU32::MIN));
        RateLimiter::direct(quota)
    })
}

impl<'a> Pager<'a> {
    /// Pages of `endpoint` (`/Users` or `/Groups`), `count` resources each, asking only for
    /// `attributes` when given (`id` is always returned, RFC 7643 §7).
    pub fn new(
        client: &'a ScimClient,
        limiter: Option<&'a DefaultDirectRateLimiter>,
        endpoint: &'static str,
        attributes: &[String],
        count: usize,
        max_attempts: u32,
        cursor: bool,
    ) -> Pager<'a> {
        Pager {
            client,
            limiter,
            endpoint,
            attributes: (!attributes.is_empty()).then(|| attributes.join(",")),
            count: count.max(1),
            next: 1,
            cursor: cursor.then(String::new),
            total: None,
            done: false,
            max_attempts: max_attempts.max(1),
            requests: 0,
        }
    }

    /// `totalResults` as the target last reported it.
    pub fn total(&self) -> Option<usize> {
        self.total
    }

    /// The next page's resources; `None` once every resource was read.
    pub async fn next_page(&mut self) -> Result<Option<Vec<Value>>, CallError> {
        if self.done {
            return Ok(None);
        }
        let start = self.next.to_string();
        let count = self.count.to_string();
        let attributes = self.attributes.clone();
        let cursor = self.cursor.clone();
        let mut query: Vec<(&str, &str)> = match &cursor {
            Some(c) => vec![("cursor", c), ("count", &count)],
            None => vec![("startIndex", &start), ("count", &count)],
        };
        if let Some(a) = &attributes {
            query.push(("attributes", a));
        }
        let mut body = match self.get(&query).await {
            // A target that refuses `attributes=` (400) is read whole: compare what it returns.
            Err(e) if e.status == Some(400) && attributes.is_some() && self.next == 1 => {
                tracing::info!(
                    endpoint = self.endpoint,
                    error = %e,
                    "the target refused `attributes=`; reading whole resources"
                );
                self.attributes = None;
                query.retain(|(k, _)| *k != "attributes");
                self.get(&query).await?
            }
            r => r?,
        };
        let total = body
            .get("totalResults")
            .and_then(Value::as_u64)
            .map(|t| t as usize);
        let resources = match body.get_mut("Resources").map(Value::take) {
            Some(Value::Array(r)) => r,
            _ => Vec::new(),
        };
        self.total = total;
        self.next += resources.len();
        if cursor.is_some() {
            // Cursor mode: done when the page has no `nextCursor` (or is empty).
            match body.get("nextCursor").and_then(Value::as_str) {
                Some(c) if !c.is_empty() && !resources.is_empty() => {
                    self.cursor = Some(c.to_owned())
                }
                _ => self.done = true,
            }
        } else if resources.is_empty() || total.is_none_or(|t| self.next > t) {
            // Index mode: done when the page is empty or everything the target counts was read.
            self.done = true;
        }
        if resources.is_empty() {
            return Ok(None);
        }
        Ok(Some(resources))
    }

    async fn get(&mut self, query: &[(&str, &str)]) -> Result<Value, CallError> {
        let mut attempt = 0;
        let mut backoff = Duration::from_millis(200);
        loop {
            attempt += 1;
            if let Some(l) = self.limiter {
                l.until_ready().await;
            }
            self.requests += 1;
            match self
                .client
                .send(Method::GET, self.endpoint, query, None, None)
                .await
            {
                Ok(reply) => {
                    return reply.body.ok_or_else(|| CallError {
                        class: scimflow_core::ErrorClass::Permanent,
                        status: Some(reply.status),
                        scim_type: None,
                        detail: format!(
                            "GET {}: the list response has no JSON body",
                            self.endpoint
                        ),
                        retry_after: None,
                    })
                }
                Err(e) if e.class.is_transient() && attempt < self.max_attempts => {
                    let wait = e.retry_after.map_or(backoff, |ra| ra.max(backoff));
                    tracing::debug!(endpoint = self.endpoint, attempt, ?wait, error = %e, "retrying a reconcile scan page");
                    tokio::time::sleep(wait).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
                Err(e) => {
                    return Err(CallError {
                        detail: format!("GET {}: {}", self.endpoint, e.detail),
                        ..e
                    })
                }
            }
        }
    }
}
