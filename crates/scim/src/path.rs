//! PATCH `path` expressions (RFC 7644 §3.5.2):
//!
//! ```text
//! PATH = attrPath / valuePath [subAttr]
//! ```
//!
//! e.g. `userName`, `name.givenName`, `urn:...:enterprise:2.0:User:department`,
//! `emails[type eq "work"]`, `emails[type eq "work"].value`, `members[value eq "2819c223"]`.
//!
//! Invariants: parsing never panics, errors carry the byte position (same format as filter errors),
//! and `parse_path(&p.to_string()) == Ok(p)`. A bare schema URN
//! (`urn:...:enterprise:2.0:User`) is not a path; PATCH handles it before parsing (see
//! [`crate::schemas::is_schema_urn`]).

use std::fmt;
use std::str::FromStr;

use crate::filter::{AttrPath, Filter, FilterError, Parser};

/// A path that does not parse; the same shape as a filter error.
pub type PathError = FilterError;

/// A parsed PATCH path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchPath {
    /// The attribute addressed (with URN and, when there is no filter, sub-attribute).
    pub attr: AttrPath,
    /// The value filter selecting elements of a multi-valued attribute.
    pub filter: Option<Filter>,
    /// The sub-attribute of the selected elements (`emails[type eq "work"].value`).
    pub sub_attr: Option<String>,
}

impl PatchPath {
    /// A path to an attribute (no filter).
    pub fn attr(attr: AttrPath) -> Self {
        PatchPath {
            attr,
            filter: None,
            sub_attr: None,
        }
    }

    /// A path selecting elements of `attr` with `filter`, optionally a sub-attribute of them.
    pub fn filtered(attr: AttrPath, filter: Filter, sub_attr: Option<String>) -> Self {
        PatchPath {
            attr,
            filter: Some(filter),
            sub_attr,
        }
    }
}

/// Parses a PATCH path. Surrounding whitespace is ignored.
pub fn parse_path(input: &str) -> Result<PatchPath, PathError> {
    let mut p = Parser::new(input);
    p.skip_ws();
    let attr_pos = p.pos();
    let attr = p.attr_path()?;
    if p.peek() != Some(b'[') {
        p.expect_end("`[` or the end of the path")?;
        return Ok(PatchPath::attr(attr));
    }
    if attr.sub_attr.is_some() {
        return Err(p.error_at(attr_pos, "an attribute without sub-attribute before `[`"));
    }
    p.bump();
    let filter = p.or_expr(true)?;
    p.skip_ws();
    p.expect_byte(b']', "`]`, `and` or `or`")?;
    let sub_attr = if p.peek() == Some(b'.') {
        p.bump();
        Some(p.attr_name()?)
    } else {
        None
    };
    p.expect_end("`.` and a sub-attribute, or the end of the path")?;
    Ok(PatchPath {
        attr,
        filter: Some(filter),
        sub_attr,
    })
}

impl fmt::Display for PatchPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.attr)?;
        if let Some(filter) = &self.filter {
            write!(f, "[{filter}]")?;
        }
        if let Some(sub) = &self.sub_attr {
            write!(f, ".{sub}")?;
        }
        Ok(())
    }
}

impl FromStr for PatchPath {
    type Err = PathError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_path(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::{CompValue, CompareOp};
    use crate::schemas;

    fn type_eq(t: &str) -> Filter {
        Filter::Compare {
            path: AttrPath::new("type"),
            op: CompareOp::Eq,
            value: CompValue::String(t.into()),
        }
    }

    #[test]
    fn parses_rfc_paths() {
        assert_eq!(
            parse_path("userName").unwrap(),
            PatchPath::attr(AttrPath::new("userName"))
        );
        assert_eq!(
            parse_path(" name.familyName ").unwrap(),
            PatchPath::attr(AttrPath::new("name").with_sub("familyName"))
        );
        assert_eq!(
            parse_path("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department")
                .unwrap(),
            PatchPath::attr(AttrPath::new("department").with_urn(schemas::ENTERPRISE_USER))
        );
        assert_eq!(
            parse_path(r#"emails[type eq "work"]"#).unwrap(),
            PatchPath::filtered(AttrPath::new("emails"), type_eq("work"), None)
        );
        assert_eq!(
            parse_path(r#"emails[type eq "work"].value"#).unwrap(),
            PatchPath::filtered(
                AttrPath::new("emails"),
                type_eq("work"),
                Some("value".into())
            )
        );
        let p = parse_path(r#"members[value eq "2819c223-7f76-453a-919d-413861904646"]"#).unwrap();
        assert_eq!(p.attr, AttrPath::new("members"));
        let p =
            parse_path(r#"addresses[type eq "work" and primary eq true].streetAddress"#).unwrap();
        assert_eq!(
            p.to_string(),
            r#"addresses[type eq "work" and primary eq true].streetAddress"#
        );
        assert_eq!(parse_path(&p.to_string()).unwrap(), p);
    }

    #[test]
    fn errors_have_positions() {
        let cases: &[(&str, usize)] = &[
            ("", 0),
            ("emails[", 7),
            (r#"emails[type eq "work""#, 21),
            (r#"emails[type eq "work"]value"#, 22),
            (r#"emails[type eq "work"]."#, 23),
            (r#"emails.value[type eq "work"]"#, 0),
            ("user name", 5),
            ("a.b.c", 3),
            (r#"emails[type eq "work"] x"#, 23),
        ];
        for (input, pos) in cases {
            let e = parse_path(input).unwrap_err();
            assert_eq!(e.position, *pos, "{input}: {e}");
        }
        assert_eq!(
            parse_path("emails[type zz \"w\"]").unwrap_err().to_string(),
            "expected a comparison operator at position 12, found `zz`"
        );
    }
}
