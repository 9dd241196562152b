//! SCIM PATCH (RFC 7644 §3.5.2): the [`PatchRequest`] message, [`apply_patch`] with RFC semantics,
//! and [`diff`], which computes the minimal PATCH turning one resource into another.
//!
//! Invariants:
//! - [`PatchRequest`] serialises exactly as
//!   `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[...]}` and
//!   deserialises leniently (`op` in any case, as Azure AD sends `"Replace"`; `operations` in any
//!   case; missing `schemas`).
//! - [`apply_patch`] is atomic: on error the resource is unchanged. It never panics on any input
//!   (property-tested and fuzzed). Every error carries a SCIM `scimType` (`invalidPath`, `noTarget`,
//!   `invalidValue`, `mutability`) and the index of the failing operation.
//! - `apply_patch(old, &diff(old, new))` agrees with `new` on every attribute present in `new`
//!   (null meaning absent; multi-valued attributes compared as unordered), leaves attributes absent
//!   from `new` alone, never touches `id`, `meta` or `schemas`, and applying it twice gives the same
//!   result as applying it once (property-tested).

mod apply;
mod diff;

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::error::{ScimError, ScimType};
use crate::schemas;

pub use apply::{apply_operation, apply_patch};
pub use diff::diff;

/// The kind of a PATCH operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PatchOpKind {
    /// Add a value (append to multi-valued attributes).
    Add,
    /// Remove the target.
    Remove,
    /// Replace the target.
    Replace,
}

impl PatchOpKind {
    /// The lowercase keyword.
    pub const fn as_str(self) -> &'static str {
        match self {
            PatchOpKind::Add => "add",
            PatchOpKind::Remove => "remove",
            PatchOpKind::Replace => "replace",
        }
    }
}

impl fmt::Display for PatchOpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for PatchOpKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for PatchOpKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        [PatchOpKind::Add, PatchOpKind::Remove, PatchOpKind::Replace]
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "unknown patch op `{s}`, expected add, remove or replace"
                ))
            })
    }
}

/// One PATCH operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatchOperation {
    /// add, remove or replace.
    #[serde(alias = "Op", alias = "OP")]
    pub op: PatchOpKind,
    /// The target path; absent means the resource itself.
    #[serde(default, skip_serializing_if = "Option::is_none", alias = "Path")]
    pub path: Option<String>,
    /// The value; absent (or `null`) for remove.
    #[serde(default, skip_serializing_if = "Option::is_none", alias = "Value")]
    pub value: Option<Value>,
}

impl PatchOperation {
    /// `add` at `path` (or at the resource when `None`).
    pub fn add(path: Option<String>, value: Value) -> Self {
        PatchOperation {
            op: PatchOpKind::Add,
            path,
            value: Some(value),
        }
    }

    /// `replace` at `path` (or at the resource when `None`).
    pub fn replace(path: Option<String>, value: Value) -> Self {
        PatchOperation {
            op: PatchOpKind::Replace,
            path,
            value: Some(value),
        }
    }

    /// `remove` at `path`.
    pub fn remove(path: impl Into<String>) -> Self {
        PatchOperation {
            op: PatchOpKind::Remove,
            path: Some(path.into()),
            value: None,
        }
    }
}

fn patch_schemas() -> Vec<String> {
    vec![schemas::PATCH_OP.to_owned()]
}

/// A PATCH request body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatchRequest {
    /// `[PATCH_OP]`.
    #[serde(default = "patch_schemas")]
    pub schemas: Vec<String>,
    /// The operations, applied in order.
    #[serde(rename = "Operations", alias = "operations", alias = "OPERATIONS")]
    pub operations: Vec<PatchOperation>,
}

impl PatchRequest {
    /// A request with the PatchOp schema and the given operations.
    pub fn new(operations: Vec<PatchOperation>) -> Self {
        PatchRequest {
            schemas: patch_schemas(),
            operations,
        }
    }

    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.operations.is_empty()
    }
}

/// Why a PATCH could not be applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchError {
    /// The SCIM error keyword.
    pub scim_type: ScimType,
    /// What went wrong.
    pub message: String,
    /// Index of the failing operation in the request.
    pub operation: Option<usize>,
}

impl PatchError {
    pub(crate) fn new(scim_type: ScimType, message: impl Into<String>) -> Self {
        PatchError {
            scim_type,
            message: message.into(),
            operation: None,
        }
    }

    fn at(mut self, index: usize) -> Self {
        self.operation = Some(index);
        self
    }

    /// The error as a 400 SCIM error response.
    pub fn to_scim_error(&self) -> ScimError {
        ScimError::bad_request(self.scim_type, self.to_string())
    }
}

impl fmt::Display for PatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(i) = self.operation {
            write!(f, "patch operation {i}: ")?;
        }
        write!(f, "{} ({})", self.message, self.scim_type)
    }
}

impl std::error::Error for PatchError {}

impl From<PatchError> for ScimError {
    fn from(e: PatchError) -> Self {
        e.to_scim_error()
    }
}

#[cfg(test)]
mod tests;
