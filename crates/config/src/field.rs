//! [`FieldError`], the user-facing form of every configuration problem: the field's path and
//! what is wrong with it.

/// One problem with one field, e.g. `sources.github.secrets[0].env: variable GH_SECRET is not set`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Field errors on one line each joined by "; ", for error messages outside check-config.
pub fn describe(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

pub(crate) fn err(path: impl Into<String>, message: impl Into<String>) -> FieldError {
    FieldError {
        path: path.into(),
        message: message.into(),
    }
}

/// Every value, or every error of every failure.
pub(crate) fn all_or_errors<T>(
    results: impl IntoIterator<Item = Result<T, Vec<FieldError>>>,
) -> Result<Vec<T>, Vec<FieldError>> {
    let mut values = Vec::new();
    let mut errors = Vec::new();
    for result in results {
        match result {
            Ok(v) => values.push(v),
            Err(mut e) => errors.append(&mut e),
        }
    }
    if errors.is_empty() {
        Ok(values)
    } else {
        Err(errors)
    }
}
