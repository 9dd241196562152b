//! scimflow-scim: the SCIM 2.0 protocol (RFC 7643 / RFC 7644) as pure data and logic — no HTTP, no
//! I/O.
//!
//! | module | what |
//! |---|---|
//! | [`schemas`] | schema and message URNs |
//! | [`resource`] | typed `User` / `Group` / `EnterpriseUser`, and case-insensitive, URN-aware access to JSON resources |
//! | [`filter`] | the filter grammar: parse, canonical print, evaluate against JSON |
//! | [`path`] | PATCH paths (`emails[type eq "work"].value`) |
//! | [`patch`] | PATCH messages, `apply_patch` with RFC semantics, minimal `diff` |
//! | [`error`] | SCIM error bodies and `scimType` keywords |
//! | [`message`] | list, search and bulk messages |
//! | [`discovery`] | ServiceProviderConfig, Schema, ResourceType and the built-in core schemas |
//!
//! Crate-wide invariants:
//! - Attribute names are case-insensitive (RFC 7643 §2.1) everywhere a name is looked up; values keep
//!   the spelling they were written with.
//! - Parsing and applying never panic on any input (property tests and `fuzz/` targets).
//! - Serialisation follows the RFCs exactly; deserialisation accepts what real servers send.
//! - Errors carry what a SCIM server needs to answer: a `scimType` keyword and, for parse errors,
//!   a byte position.

pub mod discovery;
pub mod error;
pub mod filter;
pub mod message;
pub mod patch;
pub mod path;
pub mod resource;
pub mod schemas;

pub use error::{ScimError, ScimType};
pub use filter::{parse_filter, AttrPath, CompValue, CompareOp, Filter, FilterError};
pub use patch::{apply_patch, diff, PatchError, PatchOpKind, PatchOperation, PatchRequest};
pub use path::{parse_path, PatchPath, PathError};
pub use resource::{EnterpriseUser, Group, GroupMember, Meta, MultiValued, Name, User};
