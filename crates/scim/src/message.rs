//! Protocol messages (RFC 7644): [`ListResponse`], [`SearchRequest`] and the bulk messages
//! [`BulkRequest`] / [`BulkResponse`].
//!
//! Invariants: serialisation follows the RFC (including the capitalised `Resources` and `Operations`
//! members and bulk `status` as a string); deserialisation is lenient about what servers actually
//! send (missing `Resources` is an empty page, member names in either case, status as a string or
//! a number, HTTP methods in any case).

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::schemas;

fn list_response_schemas() -> Vec<String> {
    vec![schemas::LIST_RESPONSE.to_owned()]
}

/// A page of query results (RFC 7644 §3.4.2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", bound(deserialize = "T: Deserialize<'de>"))]
pub struct ListResponse<T> {
    /// `[LIST_RESPONSE]`.
    #[serde(default = "list_response_schemas")]
    pub schemas: Vec<String>,
    /// Total number of results of the query (not of this page); 0 when the server omits it.
    #[serde(default, alias = "TotalResults")]
    pub total_results: u64,
    /// 1-based index of the first result of this page.
    #[serde(default, skip_serializing_if = "Option::is_none", alias = "StartIndex")]
    pub start_index: Option<u64>,
    /// Number of results in this page.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "ItemsPerPage"
    )]
    pub items_per_page: Option<u64>,
    /// The results; an absent member is an empty page.
    #[serde(
        rename = "Resources",
        alias = "resources",
        default = "Vec::new",
        deserialize_with = "null_as_empty"
    )]
    pub resources: Vec<T>,
}

fn null_as_empty<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

impl<T> ListResponse<T> {
    /// A complete (single-page) list.
    pub fn new(resources: Vec<T>) -> Self {
        ListResponse {
            schemas: list_response_schemas(),
            total_results: resources.len() as u64,
            start_index: Some(1),
            items_per_page: Some(resources.len() as u64),
            resources,
        }
    }

    /// The 1-based index of the page after this one, or `None` when this is the last page.
    pub fn next_start_index(&self) -> Option<u64> {
        let start = self.start_index.unwrap_or(1).max(1);
        let next = start + self.resources.len() as u64;
        (!self.resources.is_empty() && next <= self.total_results).then_some(next)
    }
}

/// Sort direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SortOrder {
    /// Ascending.
    Ascending,
    /// Descending.
    Descending,
}

fn search_request_schemas() -> Vec<String> {
    vec![schemas::SEARCH_REQUEST.to_owned()]
}

/// A query sent with POST `/.search` (RFC 7644 §3.4.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchRequest {
    /// `[SEARCH_REQUEST]`.
    #[serde(default = "search_request_schemas")]
    pub schemas: Vec<String>,
    /// Attributes to return.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<Vec<String>>,
    /// Attributes not to return.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub excluded_attributes: Option<Vec<String>>,
    /// The filter, as text (parse with [`crate::filter::parse_filter`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// Attribute to sort by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sort_by: Option<String>,
    /// Sort direction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sort_order: Option<SortOrder>,
    /// 1-based index of the first result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_index: Option<u64>,
    /// Page size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
}

impl Default for SearchRequest {
    fn default() -> Self {
        SearchRequest {
            schemas: search_request_schemas(),
            attributes: None,
            excluded_attributes: None,
            filter: None,
            sort_by: None,
            sort_order: None,
            start_index: None,
            count: None,
        }
    }
}

impl SearchRequest {
    /// A search with a filter.
    pub fn with_filter(filter: &crate::filter::Filter) -> Self {
        SearchRequest {
            filter: Some(filter.to_string()),
            ..SearchRequest::default()
        }
    }
}

/// The HTTP method of a bulk operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BulkMethod {
    /// Create.
    Post,
    /// Replace.
    Put,
    /// Modify.
    Patch,
    /// Delete.
    Delete,
}

impl BulkMethod {
    /// The uppercase method name.
    pub const fn as_str(self) -> &'static str {
        match self {
            BulkMethod::Post => "POST",
            BulkMethod::Put => "PUT",
            BulkMethod::Patch => "PATCH",
            BulkMethod::Delete => "DELETE",
        }
    }
}

impl fmt::Display for BulkMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for BulkMethod {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for BulkMethod {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        [
            BulkMethod::Post,
            BulkMethod::Put,
            BulkMethod::Patch,
            BulkMethod::Delete,
        ]
        .into_iter()
        .find(|m| m.as_str().eq_ignore_ascii_case(&s))
        .ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown bulk method `{s}`, expected POST, PUT, PATCH or DELETE"
            ))
        })
    }
}

fn bulk_request_schemas() -> Vec<String> {
    vec![schemas::BULK_REQUEST.to_owned()]
}

fn bulk_response_schemas() -> Vec<String> {
    vec![schemas::BULK_RESPONSE.to_owned()]
}

/// A bulk request (RFC 7644 §3.7).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkRequest {
    /// `[BULK_REQUEST]`.
    #[serde(default = "bulk_request_schemas")]
    pub schemas: Vec<String>,
    /// Number of errors after which the server stops processing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_on_errors: Option<u32>,
    /// The operations, in order.
    #[serde(rename = "Operations", alias = "operations", default)]
    pub operations: Vec<BulkOperation>,
}

impl BulkRequest {
    /// A request with the given operations.
    pub fn new(operations: Vec<BulkOperation>) -> Self {
        BulkRequest {
            schemas: bulk_request_schemas(),
            fail_on_errors: None,
            operations,
        }
    }
}

/// One operation of a bulk request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkOperation {
    /// HTTP method.
    pub method: BulkMethod,
    /// Client-chosen id for POST, referenced elsewhere as `bulkId:<id>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bulk_id: Option<String>,
    /// ETag for a precondition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Resource path relative to the base URL (`/Users`, `/Groups/123`).
    pub path: String,
    /// Body: a resource for POST/PUT, a PATCH request for PATCH.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

/// Replaces every string `bulkId:<id>` in `data` by the id the server assigned to `<id>`; returns
/// the references that are not (yet) in `assigned`.
pub fn resolve_bulk_ids(data: &mut Value, assigned: &HashMap<String, String>) -> Vec<String> {
    let mut unresolved = Vec::new();
    resolve_into(data, assigned, &mut unresolved);
    unresolved
}

fn resolve_into(v: &mut Value, assigned: &HashMap<String, String>, out: &mut Vec<String>) {
    match v {
        Value::String(s) => {
            if let Some(id) = s.strip_prefix("bulkId:") {
                match assigned.get(id) {
                    Some(real) => *s = real.clone(),
                    None => out.push(id.to_owned()),
                }
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|i| resolve_into(i, assigned, out)),
        Value::Object(obj) => obj
            .values_mut()
            .for_each(|i| resolve_into(i, assigned, out)),
        _ => {}
    }
}

/// A bulk response (RFC 7644 §3.7).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BulkResponse {
    /// `[BULK_RESPONSE]`.
    #[serde(default = "bulk_response_schemas")]
    pub schemas: Vec<String>,
    /// Per-operation results, in request order.
    #[serde(rename = "Operations", alias = "operations", default)]
    pub operations: Vec<BulkOperationResponse>,
}

impl BulkResponse {
    /// A response with the given results.
    pub fn new(operations: Vec<BulkOperationResponse>) -> Self {
        BulkResponse {
            schemas: bulk_response_schemas(),
            operations,
        }
    }
}

/// The result of one bulk operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkOperationResponse {
    /// HTTP method of the operation.
    pub method: BulkMethod,
    /// The request's bulkId.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bulk_id: Option<String>,
    /// Resulting ETag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// URI of the resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// HTTP status (a string on the wire; a number is accepted).
    #[serde(with = "status_string")]
    pub status: u16,
    /// Body, usually a SCIM error for failures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<Value>,
}

impl BulkOperationResponse {
    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The SCIM error carried by a failed operation.
    pub fn error(&self) -> Option<crate::error::ScimError> {
        if self.is_success() {
            return None;
        }
        let body = self.response.as_ref().map(Value::to_string);
        let parsed = body.and_then(|b| crate::error::ScimError::parse_lenient(b.as_bytes()));
        Some(
            parsed
                .unwrap_or_else(|| crate::error::ScimError::new(self.status, None, None))
                .with_http_status(self.status),
        )
    }
}

mod status_string {
    use serde::{Deserialize, Deserializer, Serializer};
    use serde_json::Value;

    pub fn serialize<S: Serializer>(status: &u16, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&status.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
        let v = Value::deserialize(d)?;
        let parsed = match &v {
            Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        };
        parsed.ok_or_else(|| {
            serde::de::Error::custom(format!("expected an http status code, found {v}"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::User;
    use serde_json::json;

    #[test]
    fn list_response_is_lenient() {
        let page: ListResponse<Value> = serde_json::from_value(json!({
            "schemas": [schemas::LIST_RESPONSE], "totalResults": 0
        }))
        .unwrap();
        assert!(page.resources.is_empty());
        let page: ListResponse<User> = serde_json::from_value(json!({
            "totalResults": 3, "itemsPerPage": 2, "startIndex": 1,
            "resources": [{"userName": "a"}, {"userName": "b"}]
        }))
        .unwrap();
        assert_eq!(page.resources[1].user_name, "b");
        assert_eq!(page.next_start_index(), Some(3));
        let page: ListResponse<Value> =
            serde_json::from_value(json!({"totalResults": 1, "Resources": null})).unwrap();
        assert_eq!(page.next_start_index(), None);
        let v = serde_json::to_value(ListResponse::new(vec![json!({"id": "1"})])).unwrap();
        assert_eq!(
            v,
            json!({"schemas": [schemas::LIST_RESPONSE], "totalResults": 1, "startIndex": 1,
                   "itemsPerPage": 1, "Resources": [{"id": "1"}]})
        );
    }

    #[test]
    fn search_request_serialises() {
        let f = crate::filter::Filter::eq("userName", "bjensen");
        let mut r = SearchRequest::with_filter(&f);
        r.count = Some(10);
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            json!({"schemas": [schemas::SEARCH_REQUEST], "filter": "userName eq \"bjensen\"", "count": 10})
        );
        let back: SearchRequest = serde_json::from_value(json!({
            "filter": "a pr", "sortOrder": "descending", "attributes": ["userName"]
        }))
        .unwrap();
        assert_eq!(back.sort_order, Some(SortOrder::Descending));
    }

    #[test]
    fn bulk_messages_follow_rfc() {
        // RFC 7644 §3.7.1, abridged.
        let req: BulkRequest = serde_json::from_value(json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
            "failOnErrors": 1,
            "Operations": [
                {"method": "POST", "path": "/Users", "bulkId": "qwerty",
                 "data": {"schemas": [schemas::USER], "userName": "Alice"}},
                {"method": "post", "path": "/Groups", "bulkId": "ytrewq",
                 "data": {"displayName": "Tour Guides", "members": [{"type": "User", "value": "bulkId:qwerty"}]}},
                {"method": "DELETE", "path": "/Users/b7c14771", "version": "W/\"0ee8add0a938e1a\""}
            ]
        }))
        .unwrap();
        assert_eq!(req.fail_on_errors, Some(1));
        assert_eq!(req.operations[1].method, BulkMethod::Post);
        let mut data = req.operations[1].data.clone().unwrap();
        let assigned = HashMap::from([("qwerty".to_owned(), "92b725cd".to_owned())]);
        assert!(resolve_bulk_ids(&mut data, &assigned).is_empty());
        assert_eq!(data["members"][0]["value"], "92b725cd");
        let v = serde_json::to_value(&req).unwrap();
        assert_eq!(v["Operations"][1]["method"], "POST");
        assert!(serde_json::from_value::<BulkRequest>(
            json!({"Operations": [{"method": "GET", "path": "/"}]})
        )
        .is_err());

        let resp: BulkResponse = serde_json::from_value(json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkResponse"],
            "Operations": [
                {"location": "https://example.com/v2/Users/92b725cd", "method": "POST",
                 "bulkId": "qwerty", "version": "W/\"4weymrEsh5O6cAEK\"", "status": "201"},
                {"method": "POST", "bulkId": "ytrewq", "status": 400,
                 "response": {"schemas": [schemas::ERROR], "scimType": "invalidSyntax",
                              "detail": "Request is unparsable", "status": "400"}}
            ]
        }))
        .unwrap();
        assert!(resp.operations[0].is_success());
        assert_eq!(resp.operations[0].error(), None);
        let e = resp.operations[1].error().unwrap();
        assert_eq!(
            (e.status, e.scim_type.as_deref()),
            (400, Some("invalidSyntax"))
        );
        let v = serde_json::to_value(&resp).unwrap();
        assert_eq!(v["Operations"][1]["status"], "400");
    }
}
