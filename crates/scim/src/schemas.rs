//! Schema and message URNs of SCIM 2.0 (RFC 7643 §8.7, RFC 7644 §3).
//!
//! Every constant is the full URN exactly as the RFCs spell it; compare URNs received from servers
//! with [`urn_eq`], since URNs are case-insensitive in their scheme and namespace parts and servers
//! are not consistent about case.

/// Core User resource schema (RFC 7643 §4.1).
pub const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
/// Core Group resource schema (RFC 7643 §4.2).
pub const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
/// Enterprise User extension schema (RFC 7643 §4.3).
pub const ENTERPRISE_USER: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
/// PATCH request message (RFC 7644 §3.5.2).
pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
/// List response message (RFC 7644 §3.4.2).
pub const LIST_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
/// Search request message (RFC 7644 §3.4.3).
pub const SEARCH_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";
/// Error response message (RFC 7644 §3.12).
pub const ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
/// Bulk request message (RFC 7644 §3.7).
pub const BULK_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";
/// Bulk response message (RFC 7644 §3.7).
pub const BULK_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:BulkResponse";
/// Service provider configuration schema (RFC 7643 §5).
pub const SERVICE_PROVIDER_CONFIG: &str =
    "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig";
/// Schema definition schema (RFC 7643 §7).
pub const SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Schema";
/// Resource type schema (RFC 7643 §6).
pub const RESOURCE_TYPE: &str = "urn:ietf:params:scim:schemas:core:2.0:ResourceType";

/// Prefix shared by the core schemas; attributes under a core schema URN live at the top level of a
/// resource, not under a URN key.
pub const CORE_PREFIX: &str = "urn:ietf:params:scim:schemas:core:2.0:";

/// Compares two URNs case-insensitively.
pub fn urn_eq(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// Whether `urn` names a core schema (whose attributes are top-level attributes of a resource).
pub fn is_core(urn: &str) -> bool {
    urn.len() >= CORE_PREFIX.len()
        && urn.is_char_boundary(CORE_PREFIX.len())
        && urn[..CORE_PREFIX.len()].eq_ignore_ascii_case(CORE_PREFIX)
}

/// Whether `s` looks like a schema URN rather than a URN-prefixed attribute path.
///
/// Schema URNs end in a resource-type name (`...:2.0:User`), which by convention starts with an
/// uppercase letter, whereas attribute names are camelCase (`...:2.0:User:department`).
pub fn is_schema_urn(s: &str) -> bool {
    if !(s.len() > 4 && s.is_char_boundary(4) && s[..4].eq_ignore_ascii_case("urn:")) {
        return false;
    }
    match s.rsplit_once(':') {
        Some((_, last)) => last.chars().next().is_some_and(|c| c.is_ascii_uppercase()),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_urns() {
        assert!(is_core(USER));
        assert!(is_core(&USER.to_ascii_lowercase()));
        assert!(!is_core(ENTERPRISE_USER));
        assert!(is_schema_urn(ENTERPRISE_USER));
        assert!(!is_schema_urn(&format!("{ENTERPRISE_USER}:department")));
        assert!(!is_schema_urn("userName"));
        assert!(urn_eq(USER, &USER.to_uppercase()));
    }
}
