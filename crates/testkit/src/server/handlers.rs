//! The axum routes of the test server: SCIM resource semantics only. Faults, authentication,
//! rate limiting and recording wrap these in `mod.rs`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Map, Value};

use super::filter;
use super::patch;
use super::store::Kind;
use super::{scim_json, PatchAnswer, ScimError, Shared};

type S = State<Arc<Shared>>;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/scim/v2/Users", get(list_users).post(create_user))
        .route(
            "/scim/v2/Users/{id}",
            get(get_user)
                .put(put_user)
                .patch(patch_user)
                .delete(delete_user),
        )
        .route("/scim/v2/Groups", get(list_groups).post(create_group))
        .route(
            "/scim/v2/Groups/{id}",
            get(get_group)
                .put(put_group)
                .patch(patch_group)
                .delete(delete_group),
        )
        .route(
            "/scim/v2/ServiceProviderConfig",
            get(service_provider_config),
        )
        .fallback(|| async { ScimError::new(404, None, "no such endpoint") })
        .with_state(shared)
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn parse_body(body: &Bytes) -> Result<Map<String, Value>, ScimError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ScimError::new(
            400,
            Some("invalidSyntax"),
            "body must be a JSON object",
        )),
        Err(e) => Err(ScimError::new(
            400,
            Some("invalidSyntax"),
            format!("body is not JSON: {e}"),
        )),
    }
}

fn resource_response(status: StatusCode, v: &Value, location: bool) -> Response {
    let mut resp = scim_json(status, v);
    if let Some(etag) = v.pointer("/meta/version").and_then(Value::as_str) {
        if let Ok(h) = HeaderValue::from_str(etag) {
            resp.headers_mut().insert(header::ETAG, h);
        }
    }
    if location {
        if let Some(loc) = v.pointer("/meta/location").and_then(Value::as_str) {
            if let Ok(h) = HeaderValue::from_str(loc) {
                resp.headers_mut().insert(header::LOCATION, h);
            }
        }
    }
    resp
}

impl Shared {
    fn conflict_error(&self, detail: String) -> ScimError {
        let status = self.opts.duplicate_status;
        let scim_type = (status == 409).then_some("uniqueness");
        ScimError::new(status, scim_type, detail)
    }

    /// Normalize a client-supplied body into a stored resource with `id` and `meta`.
    pub(crate) fn prepare(
        &self,
        kind: Kind,
        mut m: Map<String, Value>,
        id: &str,
        created: Option<Value>,
        version: u64,
    ) -> Result<Value, ScimError> {
        let name_attr = kind.name_attr();
        let has_name = filter::get_ci(&Value::Object(m.clone()), name_attr)
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty());
        if !has_name {
            return Err(ScimError::new(
                400,
                Some("invalidValue"),
                format!("{name_attr} is required"),
            ));
        }
        m.retain(|k, _| !k.eq_ignore_ascii_case("id") && !k.eq_ignore_ascii_case("meta"));
        if self.opts.drop_external_id {
            m.retain(|k, _| !k.eq_ignore_ascii_case("externalId"));
        }
        if !m.contains_key("schemas") {
            m.insert("schemas".into(), json!([kind.schema()]));
        }
        let ts = now();
        let mut out = Map::new();
        out.insert("id".into(), Value::String(id.to_string()));
        out.extend(m);
        out.insert(
            "meta".into(),
            json!({
                "resourceType": kind.resource_type(),
                "created": created.unwrap_or_else(|| Value::String(ts.clone())),
                "lastModified": ts,
                "location": format!("{}/{}/{id}", self.base_url, kind.endpoint()),
                "version": format!("W/\"{version}\""),
            }),
        );
        Ok(Value::Object(out))
    }

    fn list(
        &self,
        kind: Kind,
        q: Result<Query<HashMap<String, String>>, QueryRejection>,
    ) -> Result<Response, ScimError> {
        let Query(q) = q.map_err(|e| ScimError::new(400, Some("invalidValue"), e.body_text()))?;
        let get = |k: &str| {
            q.iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(k))
                .map(|(_, v)| v.as_str())
        };
        let filter = match get("filter") {
            Some(f) if !self.opts.ignore_filters => Some(filter::parse(f).map_err(|e| {
                ScimError::new(
                    400,
                    Some("invalidFilter"),
                    format!("invalid filter {f:?}: {e}"),
                )
            })?),
            _ => None,
        };
        let int = |k: &str| -> Result<Option<i64>, ScimError> {
            get(k)
                .map(|v| {
                    v.parse::<i64>().map_err(|_| {
                        ScimError::new(400, Some("invalidValue"), format!("{k} must be an integer"))
                    })
                })
                .transpose()
        };
        let cursor = get("cursor");
        if cursor.is_some() && !self.opts.cursor_pagination {
            return Err(ScimError::new(
                400,
                Some("invalidValue"),
                "cursor pagination is not supported",
            ));
        }
        // A cursor is opaque to clients: here `c` + the 0-based offset of the page.
        let start = match cursor {
            Some("") => 1,
            Some(c) => {
                c.strip_prefix('c')
                    .and_then(|n| n.parse::<usize>().ok())
                    .ok_or_else(|| {
                        ScimError::new(400, Some("invalidCursor"), format!("unknown cursor {c:?}"))
                    })?
                    + 1
            }
            None => int("startIndex")?.unwrap_or(1).max(1) as usize,
        };
        let max = self.opts.max_page_size;
        let count = int("count")?.map_or(max, |c| (c.max(0) as usize).min(max));
        let data = self.data.lock().expect("data lock");
        let coll = match kind {
            Kind::User => &data.users,
            Kind::Group => &data.groups,
        };
        let all = coll.select(filter.as_ref(), self.opts.case_sensitive_filters);
        let page: Vec<&Value> = all.iter().skip(start - 1).take(count).copied().collect();
        let mut body = json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
            "totalResults": all.len(),
            "itemsPerPage": page.len(),
            "Resources": page,
        });
        if cursor.is_some() {
            let next = start - 1 + page.len();
            if next < all.len() && !page.is_empty() {
                body["nextCursor"] = json!(format!("c{next}"));
            }
        } else {
            body["startIndex"] = json!(start);
        }
        Ok(scim_json(StatusCode::OK, &body))
    }

    fn create(&self, kind: Kind, body: Bytes) -> Result<Response, ScimError> {
        let m = parse_body(&body)?;
        let id = uuid::Uuid::new_v4().to_string();
        let mut data = self.data.lock().expect("data lock");
        data.version += 1;
        let v = self.prepare(kind, m, &id, None, data.version)?;
        let coll = data.coll(kind);
        // Some servers (scim2-server among them) accept a second group of the same name.
        let duplicates_allowed = kind == Kind::Group && self.opts.allow_duplicate_group_names;
        if let Some(detail) = coll.conflict(&v, None).filter(|_| !duplicates_allowed) {
            return Err(self.conflict_error(detail));
        }
        coll.put(v.clone());
        Ok(resource_response(
            StatusCode::CREATED,
            &v,
            self.opts.send_location,
        ))
    }

    fn get(&self, kind: Kind, id: &str) -> Result<Response, ScimError> {
        let data = self.data.lock().expect("data lock");
        let coll = match kind {
            Kind::User => &data.users,
            Kind::Group => &data.groups,
        };
        let v = coll.get(id).ok_or_else(|| not_found(kind, id))?;
        Ok(resource_response(StatusCode::OK, v, false))
    }

    fn put(&self, kind: Kind, id: &str, body: Bytes) -> Result<Response, ScimError> {
        let m = parse_body(&body)?;
        let mut data = self.data.lock().expect("data lock");
        let created = data
            .coll(kind)
            .get(id)
            .ok_or_else(|| not_found(kind, id))?
            .pointer("/meta/created")
            .cloned();
        data.version += 1;
        let v = self.prepare(kind, m, id, created, data.version)?;
        let coll = data.coll(kind);
        if let Some(detail) = coll.conflict(&v, Some(id)) {
            return Err(self.conflict_error(detail));
        }
        coll.put(v.clone());
        Ok(resource_response(StatusCode::OK, &v, false))
    }

    fn patch(&self, kind: Kind, id: &str, body: Bytes) -> Result<Response, ScimError> {
        let ops = Value::Object(parse_body(&body)?);
        let mut data = self.data.lock().expect("data lock");
        data.version += 1;
        let version = data.version;
        let coll = data.coll(kind);
        let mut v = coll.get(id).ok_or_else(|| not_found(kind, id))?.clone();
        patch::apply(&mut v, &ops)?;
        let created = v.pointer("/meta/created").cloned();
        let Value::Object(m) = v else {
            unreachable!("resources are objects")
        };
        let v = self.prepare(kind, m, id, created, version)?;
        if let Some(detail) = coll.conflict(&v, Some(id)) {
            return Err(self.conflict_error(detail));
        }
        coll.put(v.clone());
        Ok(match self.opts.patch_answer {
            PatchAnswer::Resource => resource_response(StatusCode::OK, &v, false),
            PatchAnswer::NoContent => StatusCode::NO_CONTENT.into_response(),
        })
    }

    fn delete(&self, kind: Kind, id: &str) -> Result<Response, ScimError> {
        let mut data = self.data.lock().expect("data lock");
        data.coll(kind)
            .remove(id)
            .ok_or_else(|| not_found(kind, id))?;
        Ok(StatusCode::NO_CONTENT.into_response())
    }
}

fn not_found(kind: Kind, id: &str) -> ScimError {
    ScimError::new(
        404,
        None,
        format!("{} {id} not found", kind.resource_type()),
    )
}

fn done(r: Result<Response, ScimError>) -> Response {
    r.unwrap_or_else(IntoResponse::into_response)
}

type Q = Result<Query<HashMap<String, String>>, QueryRejection>;

async fn list_users(State(s): S, q: Q) -> Response {
    done(s.list(Kind::User, q))
}
async fn list_groups(State(s): S, q: Q) -> Response {
    done(s.list(Kind::Group, q))
}
async fn create_user(State(s): S, body: Bytes) -> Response {
    done(s.create(Kind::User, body))
}
async fn create_group(State(s): S, body: Bytes) -> Response {
    done(s.create(Kind::Group, body))
}
async fn get_user(State(s): S, Path(id): Path<String>) -> Response {
    done(s.get(Kind::User, &id))
}
async fn get_group(State(s): S, Path(id): Path<String>) -> Response {
    done(s.get(Kind::Group, &id))
}
async fn put_user(State(s): S, Path(id): Path<String>, body: Bytes) -> Response {
    done(s.put(Kind::User, &id, body))
}
async fn put_group(State(s): S, Path(id): Path<String>, body: Bytes) -> Response {
    done(s.put(Kind::Group, &id, body))
}
async fn patch_user(State(s): S, Path(id): Path<String>, body: Bytes) -> Response {
    done(s.patch(Kind::User, &id, body))
}
async fn patch_group(State(s): S, Path(id): Path<String>, body: Bytes) -> Response {
    done(s.patch(Kind::Group, &id, body))
}
async fn delete_user(State(s): S, Path(id): Path<String>) -> Response {
    done(s.delete(Kind::User, &id))
}
async fn delete_group(State(s): S, Path(id): Path<String>) -> Response {
    done(s.delete(Kind::Group, &id))
}

async fn service_provider_config(State(s): S) -> Response {
    let patch_204 = s.opts.patch_answer == PatchAnswer::NoContent;
    scim_json(
        StatusCode::OK,
        &json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
            "documentationUri": "https://example.invalid/scimflow-testkit",
            "patch": {"supported": true},
            "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
            "filter": {"supported": true, "maxResults": s.opts.max_page_size},
            "changePassword": {"supported": false},
            "sort": {"supported": false},
            "pagination": {
                "cursor": s.opts.cursor_pagination,
                "index": true,
                "defaultPaginationMethod": "index",
                "defaultPageSize": s.opts.max_page_size,
                "maxPageSize": s.opts.max_page_size,
            },
            "etag": {"supported": false},
            "authenticationSchemes": [{
                "type": "oauthbearertoken",
                "name": "OAuth Bearer Token",
                "description": "Authentication with a bearer token",
                "primary": true
            }],
            "x-scimflow-testkit": {"patchAnswers204": patch_204},
        }),
    )
}
