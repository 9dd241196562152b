//! `${VAR}` and `${VAR:-default}` substitution from the environment, before YAML parsing.
//! `$$` is a literal `$`. A missing variable without a default is a diagnostic at its position.

use crate::Diagnostic;

pub(crate) fn interpolate(
    text: &str,
    file: &str,
    env: &dyn Fn(&str) -> Option<String>,
    diags: &mut Vec<Diagnostic>,
) -> String {
    let mut out = String::with_capacity(text.len());
    for (lineno, line) in text.split_inclusive('\n').enumerate() {
        // Comments are left alone.
        let mut rest = line;
        let mut col = 1u64;
        while let Some(i) = rest.find('$') {
            let (before, after) = rest.split_at(i);
            if before.trim_start().starts_with('#') && !before.contains(['"', '\'']) {
                break;
            }
            out.push_str(before);
            col += before.chars().count() as u64;
            if let Some(tail) = after.strip_prefix("$$") {
                out.push('$');
                rest = tail;
                col += 2;
                continue;
            }
            let Some(body_end) = after.strip_prefix("${").and_then(|b| b.find('}')) else {
                out.push('$');
                rest = &after[1..];
                col += 1;
                continue;
            };
            let body = &after[2..2 + body_end];
            let (name, default) = match body.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (body, None),
            };
            let valid =
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                diags.push(Diagnostic {
                    file: file.to_owned(),
                    line: lineno as u64 + 1,
                    column: col,
                    message: format!("`${{{body}}}` is not a valid variable reference"),
                    hint: Some("use ${NAME} or ${NAME:-default}; write $$ for a literal $".into()),
                });
            } else {
                match (env(name).filter(|v| !v.is_empty()), default) {
                    (Some(v), _) => out.push_str(&v),
                    (None, Some(d)) => out.push_str(d),
                    (None, None) => diags.push(Diagnostic {
                        file: file.to_owned(),
                        line: lineno as u64 + 1,
                        column: col,
                        message: format!("environment variable `{name}` is not set"),
                        hint: Some(format!("export {name}=… or write ${{{name}:-default}}")),
                    }),
                }
            }
            let consumed = 2 + body_end + 1;
            col += after[..consumed].chars().count() as u64;
            rest = &after[consumed..];
        }
        out.push_str(rest);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitutes_and_reports() {
        let env = |k: &str| (k == "A").then(|| "x".to_owned());
        let mut d = Vec::new();
        let s = interpolate(
            "a: ${A}\nb: ${B:-def}\nc: $$5 ${C}\n# ${IGNORED}\n",
            "f",
            &env,
            &mut d,
        );
        assert_eq!(s, "a: x\nb: def\nc: $5 \n# ${IGNORED}\n");
        assert_eq!(d.len(), 1);
        assert_eq!((d[0].line, d[0].column), (3, 8));
        assert!(d[0].message.contains("`C`"));
    }
}
