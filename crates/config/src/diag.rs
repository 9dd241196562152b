//! Diagnostics: what is wrong, where (file:line:column), and a hint.

use std::fmt;

/// One configuration problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: String,
    /// 1-based; 0 when the problem concerns the whole file.
    pub line: u64,
    /// 1-based; 0 when unknown.
    pub column: u64,
    pub message: String,
    pub hint: Option<String>,
}

impl Diagnostic {
    pub fn file_level(file: &str, message: impl Into<String>) -> Self {
        Diagnostic {
            file: file.to_owned(),
            line: 0,
            column: 0,
            message: message.into(),
            hint: None,
        }
    }

    pub fn at(file: &str, loc: serde_saphyr::Location, message: impl Into<String>) -> Self {
        Diagnostic {
            file: file.to_owned(),
            line: loc.line(),
            column: loc.column(),
            message: message.into(),
            hint: None,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub(crate) fn from_yaml(file: &str, e: &serde_saphyr::Error) -> Self {
        let message = e.without_snippet().to_string();
        // The message may end with a location suffix of its own; keep the first line only.
        let mut message = message
            .lines()
            .next()
            .unwrap_or("invalid YAML")
            .trim()
            .to_owned();
        if let Some(i) = message.rfind(" at line ") {
            message.truncate(i);
        }
        match e.location() {
            Some(loc) => Diagnostic::at(file, loc, message),
            None => Diagnostic::file_level(file, message),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(
                f,
                "{}:{}:{}: error: {}",
                self.file, self.line, self.column, self.message
            )?;
        } else {
            write!(f, "{}: error: {}", self.file, self.message)?;
        }
        if let Some(h) = &self.hint {
            write!(f, "\n  hint: {h}")?;
        }
        Ok(())
    }
}

/// Every problem found in one config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.0 {
            writeln!(f, "{d}")?;
        }
        write!(f, "{} error(s) in configuration", self.0.len())
    }
}

impl std::error::Error for Diagnostics {}
