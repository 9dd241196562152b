//! Service discovery (RFC 7643 §5–§7): [`ServiceProviderConfig`], [`Schema`] and [`ResourceType`],
//! plus the core schema definitions of RFC 7643 §8.7 as constructors ([`Schema::core_user`],
//! [`Schema::core_group`], [`Schema::enterprise_user`]) so code can ask "is attribute X case-exact?"
//! without a server round trip ([`is_case_exact`]).
//!
//! Invariants: deserialisation is lenient (every flag and list defaults to the RFC default or
//! "unsupported" when absent, unknown attributes are ignored); the built-in schemas follow RFC 7643
//! §8.7.1 for name, type, multiValued, required, caseExact, mutability, returned and uniqueness.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::filter::AttrPath;
use crate::resource::Meta;
use crate::schemas;

/// `{"supported": bool}` feature flags.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Supported {
    /// Whether the feature is supported.
    #[serde(default, deserialize_with = "lenient_flag")]
    pub supported: bool,
}

fn lenient_flag<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(crate::resource::lenient_bool(d)?.unwrap_or(false))
}

/// Bulk support and its limits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkConfig {
    /// Whether bulk is supported.
    #[serde(default, deserialize_with = "lenient_flag")]
    pub supported: bool,
    /// Maximum operations per bulk request.
    #[serde(default)]
    pub max_operations: u64,
    /// Maximum bulk payload size in bytes.
    #[serde(default)]
    pub max_payload_size: u64,
}

/// Filter support and its limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FilterConfig {
    /// Whether filtering is supported.
    #[serde(default, deserialize_with = "lenient_flag")]
    pub supported: bool,
    /// Maximum resources returned by a query.
    #[serde(default)]
    pub max_results: u64,
}

/// An authentication scheme the service provider supports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthenticationScheme {
    /// `oauth`, `oauth2`, `oauthbearertoken`, `httpbasic`, `httpdigest`.
    #[serde(rename = "type", default)]
    pub kind: String,
    /// Common name.
    #[serde(default)]
    pub name: String,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Specification URI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec_uri: Option<String>,
    /// Documentation URI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub documentation_uri: Option<String>,
    /// Whether this is the preferred scheme.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<bool>,
}

/// The `/ServiceProviderConfig` resource (RFC 7643 §5).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceProviderConfig {
    /// Schema URNs.
    #[serde(default)]
    pub schemas: Vec<String>,
    /// Human-readable help.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub documentation_uri: Option<String>,
    /// PATCH support.
    #[serde(default)]
    pub patch: Supported,
    /// Bulk support.
    #[serde(default)]
    pub bulk: BulkConfig,
    /// Filter support.
    #[serde(default)]
    pub filter: FilterConfig,
    /// Password change support.
    #[serde(default)]
    pub change_password: Supported,
    /// Sorting support.
    #[serde(default)]
    pub sort: Supported,
    /// ETag support.
    #[serde(default)]
    pub etag: Supported,
    /// Authentication schemes.
    #[serde(default)]
    pub authentication_schemes: Vec<AuthenticationScheme>,
    /// Metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Meta>,
}

/// An attribute's data type (RFC 7643 §2.3).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AttributeType {
    /// A string.
    #[default]
    String,
    /// A boolean.
    Boolean,
    /// A decimal number.
    Decimal,
    /// An integer.
    Integer,
    /// An xsd:dateTime.
    DateTime,
    /// Base64 binary.
    Binary,
    /// A URI reference.
    Reference,
    /// A complex attribute with sub-attributes.
    Complex,
}

/// When an attribute may be modified (RFC 7643 §7).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Mutability {
    /// Never modified by clients.
    ReadOnly,
    /// Modified freely.
    #[default]
    ReadWrite,
    /// Set once on creation.
    Immutable,
    /// Set but never returned.
    WriteOnly,
}

/// When an attribute is returned (RFC 7643 §7).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Returned {
    /// Always returned.
    Always,
    /// Never returned.
    Never,
    /// Returned by default.
    #[default]
    Default,
    /// Returned only when requested.
    Request,
}

/// How an attribute's values must be unique (RFC 7643 §7).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Uniqueness {
    /// No uniqueness.
    #[default]
    None,
    /// Unique within the server.
    Server,
    /// Globally unique.
    Global,
}

/// One attribute definition of a schema (RFC 7643 §7).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SchemaAttribute {
    /// Attribute name.
    pub name: String,
    /// Data type.
    #[serde(rename = "type", default)]
    pub kind: AttributeType,
    /// Whether multi-valued.
    #[serde(default)]
    pub multi_valued: bool,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Whether required.
    #[serde(default)]
    pub required: bool,
    /// Suggested values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub canonical_values: Vec<String>,
    /// Whether string comparison is case-sensitive.
    #[serde(default)]
    pub case_exact: bool,
    /// Mutability.
    #[serde(default)]
    pub mutability: Mutability,
    /// When returned.
    #[serde(default)]
    pub returned: Returned,
    /// Uniqueness.
    #[serde(default)]
    pub uniqueness: Uniqueness,
    /// Resource types a reference may point to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reference_types: Vec<String>,
    /// Sub-attributes of a complex attribute.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sub_attributes: Vec<SchemaAttribute>,
}

impl SchemaAttribute {
    /// An attribute with RFC defaults: single-valued, optional, not case-exact, readWrite,
    /// returned by default, not unique.
    pub fn new(name: &str, kind: AttributeType) -> Self {
        SchemaAttribute {
            name: name.to_owned(),
            kind,
            ..SchemaAttribute::default()
        }
    }

    fn multi(mut self) -> Self {
        self.multi_valued = true;
        self
    }
    fn required(mut self) -> Self {
        self.required = true;
        self
    }
    fn exact(mut self) -> Self {
        self.case_exact = true;
        self
    }
    fn mutability(mut self, m: Mutability) -> Self {
        self.mutability = m;
        self
    }
    fn returned(mut self, r: Returned) -> Self {
        self.returned = r;
        self
    }
    fn unique(mut self, u: Uniqueness) -> Self {
        self.uniqueness = u;
        self
    }
    fn canonical(mut self, values: &[&str]) -> Self {
        self.canonical_values = values.iter().map(|s| (*s).to_owned()).collect();
        self
    }
    fn refs(mut self, types: &[&str]) -> Self {
        self.reference_types = types.iter().map(|s| (*s).to_owned()).collect();
        self
    }
    fn subs(mut self, subs: Vec<SchemaAttribute>) -> Self {
        self.sub_attributes = subs;
        self
    }

    /// The sub-attribute `name`, case-insensitively.
    pub fn sub_attribute(&self, name: &str) -> Option<&SchemaAttribute> {
        self.sub_attributes
            .iter()
            .find(|a| a.name.eq_ignore_ascii_case(name))
    }
}

fn s(name: &str) -> SchemaAttribute {
    SchemaAttribute::new(name, AttributeType::String)
}

/// The standard sub-attributes of a multi-valued attribute: value, display, type, primary.
fn multi_valued(name: &str, value: SchemaAttribute, types: &[&str]) -> SchemaAttribute {
    SchemaAttribute::new(name, AttributeType::Complex)
        .multi()
        .subs(vec![
            value,
            s("display"),
            s("type").canonical(types),
            SchemaAttribute::new("primary", AttributeType::Boolean),
        ])
}

/// A schema definition (RFC 7643 §7).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Schema {
    /// Schema URNs of this resource (`urn:...:Schema`).
    #[serde(default)]
    pub schemas: Vec<String>,
    /// The schema URN.
    pub id: String,
    /// Human-readable name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Attribute definitions.
    #[serde(default)]
    pub attributes: Vec<SchemaAttribute>,
    /// Metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Meta>,
}

impl Schema {
    fn new(id: &str, name: &str, description: &str, attributes: Vec<SchemaAttribute>) -> Self {
        Schema {
            schemas: vec![schemas::SCHEMA.to_owned()],
            id: id.to_owned(),
            name: Some(name.to_owned()),
            description: Some(description.to_owned()),
            attributes,
            meta: None,
        }
    }

    /// The core User schema (RFC 7643 §4.1, §8.7.1).
    pub fn core_user() -> Schema {
        use AttributeType::{Binary, Boolean, Complex, Reference};
        let mv_types = ["work", "home", "other"];
        Schema::new(
            schemas::USER,
            "User",
            "User Account",
            vec![
                s("userName").required().unique(Uniqueness::Server),
                SchemaAttribute::new("name", Complex).subs(vec![
                    s("formatted"),
                    s("familyName"),
                    s("givenName"),
                    s("middleName"),
                    s("honorificPrefix"),
                    s("honorificSuffix"),
                ]),
                s("displayName"),
                s("nickName"),
                SchemaAttribute::new("profileUrl", Reference).refs(&["external"]),
                s("title"),
                s("userType"),
                s("preferredLanguage"),
                s("locale"),
                s("timezone"),
                SchemaAttribute::new("active", Boolean),
                s("password")
                    .mutability(Mutability::WriteOnly)
                    .returned(Returned::Never),
                multi_valued("emails", s("value"), &mv_types),
                multi_valued(
                    "phoneNumbers",
                    s("value"),
                    &["work", "home", "mobile", "fax", "pager", "other"],
                ),
                multi_valued(
                    "ims",
                    s("value"),
                    &["aim", "gtalk", "icq", "xmpp", "msn", "skype", "qq", "yahoo"],
                ),
                multi_valued(
                    "photos",
                    SchemaAttribute::new("value", Reference).refs(&["external"]),
                    &["photo", "thumbnail"],
                ),
                SchemaAttribute::new("addresses", Complex)
                    .multi()
                    .subs(vec![
                        s("formatted"),
                        s("streetAddress"),
                        s("locality"),
                        s("region"),
                        s("postalCode"),
                        s("country"),
                        s("type").canonical(&mv_types),
                        SchemaAttribute::new("primary", Boolean),
                    ]),
                SchemaAttribute::new("groups", Complex)
                    .multi()
                    .mutability(Mutability::ReadOnly)
                    .subs(vec![
                        s("value").mutability(Mutability::ReadOnly),
                        SchemaAttribute::new("$ref", Reference)
                            .refs(&["User", "Group"])
                            .mutability(Mutability::ReadOnly),
                        s("display").mutability(Mutability::ReadOnly),
                        s("type")
                            .canonical(&["direct", "indirect"])
                            .mutability(Mutability::ReadOnly),
                    ]),
                multi_valued("entitlements", s("value"), &[]),
                multi_valued("roles", s("value"), &[]),
                multi_valued(
                    "x509Certificates",
                    SchemaAttribute::new("value", Binary).exact(),
                    &[],
                ),
            ],
        )
    }

    /// The core Group schema (RFC 7643 §4.2, §8.7.1).
    pub fn core_group() -> Schema {
        use AttributeType::{Complex, Reference};
        Schema::new(
            schemas::GROUP,
            "Group",
            "Group",
            vec![
                s("displayName").required(),
                SchemaAttribute::new("members", Complex).multi().subs(vec![
                    s("value").mutability(Mutability::Immutable),
                    SchemaAttribute::new("$ref", Reference)
                        .refs(&["User", "Group"])
                        .mutability(Mutability::Immutable),
                    s("display").mutability(Mutability::ReadOnly),
                    s("type")
                        .canonical(&["User", "Group"])
                        .mutability(Mutability::Immutable),
                ]),
            ],
        )
    }

    /// The Enterprise User extension schema (RFC 7643 §4.3, §8.7.1).
    pub fn enterprise_user() -> Schema {
        use AttributeType::{Complex, Reference};
        Schema::new(
            schemas::ENTERPRISE_USER,
            "EnterpriseUser",
            "Enterprise User",
            vec![
                s("employeeNumber"),
                s("costCenter"),
                s("organization"),
                s("division"),
                s("department"),
                SchemaAttribute::new("manager", Complex).subs(vec![
                    s("value"),
                    SchemaAttribute::new("$ref", Reference).refs(&["User"]),
                    s("displayName").mutability(Mutability::ReadOnly),
                ]),
            ],
        )
    }

    /// The definition of `name`, case-insensitively.
    pub fn attribute(&self, name: &str) -> Option<&SchemaAttribute> {
        self.attributes
            .iter()
            .find(|a| a.name.eq_ignore_ascii_case(name))
    }

    /// The definition addressed by `path` (attribute, or sub-attribute), ignoring its URN.
    pub fn attribute_at(&self, path: &AttrPath) -> Option<&SchemaAttribute> {
        let attr = self.attribute(&path.attr)?;
        match &path.sub_attr {
            None => Some(attr),
            Some(sub) => attr.sub_attribute(sub),
        }
    }
}

struct CoreSchemas {
    user: Schema,
    group: Schema,
    enterprise: Schema,
}

fn core() -> &'static CoreSchemas {
    static CORE: OnceLock<CoreSchemas> = OnceLock::new();
    CORE.get_or_init(|| CoreSchemas {
        user: Schema::core_user(),
        group: Schema::core_group(),
        enterprise: Schema::enterprise_user(),
    })
}

/// The built-in definition of an attribute: `urn` selects the schema (none or a core URN: the User
/// schema, then the Group schema; the Enterprise User URN: that extension).
pub fn core_attribute(
    urn: Option<&str>,
    attr: &str,
    sub: Option<&str>,
) -> Option<&'static SchemaAttribute> {
    let core = core();
    let found = match urn {
        Some(u) if schemas::urn_eq(u, schemas::ENTERPRISE_USER) => core.enterprise.attribute(attr),
        Some(u) if schemas::urn_eq(u, schemas::GROUP) => core.group.attribute(attr),
        Some(u) if !schemas::is_core(u) => None,
        _ => core
            .user
            .attribute(attr)
            .or_else(|| core.group.attribute(attr)),
    }?;
    match sub {
        None => Some(found),
        Some(sub) => found.sub_attribute(sub),
    }
}

/// Whether string values of an attribute compare case-sensitively.
///
/// `id`, `externalId` and every `meta` sub-attribute are case-exact (RFC 7643 §3.1); other
/// attributes follow the built-in core schemas; unknown attributes are case-insensitive.
pub fn is_case_exact(urn: Option<&str>, attr: &str, sub: Option<&str>) -> bool {
    let core_level = urn.is_none_or(schemas::is_core);
    if core_level
        && ["id", "externalId", "meta"]
            .iter()
            .any(|n| n.eq_ignore_ascii_case(attr))
    {
        return true;
    }
    core_attribute(urn, attr, sub).is_some_and(|a| a.case_exact)
}

/// A schema extension of a resource type.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaExtension {
    /// The extension schema URN.
    pub schema: String,
    /// Whether resources must include it.
    #[serde(default)]
    pub required: bool,
}

/// A resource type (RFC 7643 §6).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceType {
    /// Schema URNs of this resource (`urn:...:ResourceType`).
    #[serde(default)]
    pub schemas: Vec<String>,
    /// Identifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Name (`User`).
    pub name: String,
    /// Endpoint relative to the base URL (`/Users`).
    pub endpoint: String,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Primary schema URN.
    pub schema: String,
    /// Extension schemas.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schema_extensions: Vec<SchemaExtension>,
    /// Metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Meta>,
}

impl ResourceType {
    /// The User resource type with the optional Enterprise User extension (RFC 7643 §8.6).
    pub fn user() -> Self {
        ResourceType {
            schemas: vec![schemas::RESOURCE_TYPE.to_owned()],
            id: Some("User".to_owned()),
            name: "User".to_owned(),
            endpoint: "/Users".to_owned(),
            description: Some("User Account".to_owned()),
            schema: schemas::USER.to_owned(),
            schema_extensions: vec![SchemaExtension {
                schema: schemas::ENTERPRISE_USER.to_owned(),
                required: false,
            }],
            meta: None,
        }
    }

    /// The Group resource type (RFC 7643 §8.6).
    pub fn group() -> Self {
        ResourceType {
            schemas: vec![schemas::RESOURCE_TYPE.to_owned()],
            id: Some("Group".to_owned()),
            name: "Group".to_owned(),
            endpoint: "/Groups".to_owned(),
            description: Some("Group".to_owned()),
            schema: schemas::GROUP.to_owned(),
            schema_extensions: Vec::new(),
            meta: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_rfc_service_provider_config() {
        // RFC 7643 §8.5, abridged.
        let v = json!({
          "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
          "documentationUri": "http://example.com/help/scim.html",
          "patch": {"supported": true},
          "bulk": {"supported": true, "maxOperations": 1000, "maxPayloadSize": 1048576},
          "filter": {"supported": true, "maxResults": 200},
          "changePassword": {"supported": true},
          "sort": {"supported": true},
          "etag": {"supported": true},
          "authenticationSchemes": [{
              "name": "OAuth Bearer Token",
              "description": "Authentication scheme using the OAuth Bearer Token Standard",
              "specUri": "http://www.rfc-editor.org/info/rfc6750",
              "documentationUri": "http://example.com/help/oauth.html",
              "type": "oauthbearertoken",
              "primary": true
          }],
          "meta": {"location": "https://example.com/v2/ServiceProviderConfig",
                   "resourceType": "ServiceProviderConfig",
                   "created": "2010-01-23T04:56:22Z", "lastModified": "2011-05-13T04:42:34Z",
                   "version": "W/\"3694e05e9dff594\""}
        });
        let c: ServiceProviderConfig = serde_json::from_value(v).unwrap();
        assert!(c.patch.supported && c.bulk.supported && c.etag.supported);
        assert_eq!(
            (c.bulk.max_operations, c.bulk.max_payload_size),
            (1000, 1_048_576)
        );
        assert_eq!(c.filter.max_results, 200);
        assert_eq!(c.authentication_schemes[0].kind, "oauthbearertoken");
        // Sloppy servers: missing sections and string flags.
        let c: ServiceProviderConfig =
            serde_json::from_value(json!({"patch": {"supported": "true"}, "bulk": {}})).unwrap();
        assert!(c.patch.supported && !c.bulk.supported && !c.filter.supported);
    }

    #[test]
    fn core_schemas_answer_case_exactness() {
        assert!(is_case_exact(None, "id", None));
        assert!(is_case_exact(None, "externalID", None));
        assert!(is_case_exact(None, "meta", Some("version")));
        assert!(!is_case_exact(None, "userName", None));
        assert!(!is_case_exact(None, "emails", Some("value")));
        assert!(is_case_exact(None, "x509Certificates", Some("value")));
        assert!(!is_case_exact(
            Some(schemas::ENTERPRISE_USER),
            "department",
            None
        ));
        assert!(!is_case_exact(Some(schemas::ENTERPRISE_USER), "id", None));
        assert!(!is_case_exact(Some("urn:x:y:Z"), "whatever", None));
        let user = Schema::core_user();
        let user_name = user.attribute("USERNAME").unwrap();
        assert!(user_name.required);
        assert_eq!(user_name.uniqueness, Uniqueness::Server);
        assert_eq!(
            user.attribute("password").unwrap().returned,
            Returned::Never
        );
        let emails = user.attribute_at(&AttrPath::new("emails")).unwrap();
        assert!(emails.multi_valued);
        assert_eq!(
            Schema::core_group()
                .attribute_at(&AttrPath::new("members").with_sub("value"))
                .unwrap()
                .mutability,
            Mutability::Immutable
        );
        assert!(Schema::enterprise_user().attribute("manager").is_some());
    }

    #[test]
    fn schema_serialises_in_rfc_shape() {
        let v = serde_json::to_value(Schema::core_group()).unwrap();
        assert_eq!(v["id"], schemas::GROUP);
        assert_eq!(v["attributes"][1]["name"], "members");
        assert_eq!(v["attributes"][1]["multiValued"], true);
        assert_eq!(
            v["attributes"][1]["subAttributes"][0]["mutability"],
            "immutable"
        );
        let back: Schema = serde_json::from_value(v).unwrap();
        assert_eq!(back, Schema::core_group());
        let rt = serde_json::to_value(ResourceType::user()).unwrap();
        assert_eq!(
            rt["schemaExtensions"][0]["schema"],
            schemas::ENTERPRISE_USER
        );
        assert_eq!(rt["endpoint"], "/Users");
    }
}
