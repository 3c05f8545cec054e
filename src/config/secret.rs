//! Reading a secret from where the config says it is: an environment variable or a file
//! (a mounted Kubernetes Secret). One reader for every secret of the gateway (client tokens
//! and HMAC keys, sink auth values), so that each says the same thing when it fails. It never
//! logs or returns a value in an error.

use std::path::Path;

/// Why a secret could not be read. The messages name the variable or the file, never the value.
#[derive(Debug, thiserror::Error)]
pub enum ReadSecretError {
    #[error("environment variable {0} is not set")]
    Unset(String),
    #[error("cannot read secret file {path}: {source}")]
    Unreadable {
        path: String,
        source: std::io::Error,
    },
    #[error("{0} is empty")]
    Empty(String),
    #[error("no secret configured")]
    NotConfigured,
}

/// The secret in environment variable `var` (through `env`), or else in `file`, with the
/// surrounding whitespace (a file's final newline) trimmed. An empty value is an error.
pub fn read(
    env: &dyn Fn(&str) -> Option<String>,
    var: Option<&str>,
    file: Option<&Path>,
) -> Result<String, ReadSecretError> {
    let value = match (var, file) {
        (Some(var), _) => env(var).ok_or_else(|| ReadSecretError::Unset(var.to_string()))?,
        (None, Some(path)) => {
            std::fs::read_to_string(path).map_err(|source| ReadSecretError::Unreadable {
                path: path.display().to_string(),
                source,
            })?
        }
        (None, None) => return Err(ReadSecretError::NotConfigured),
    };
    let value = value.trim();
    if value.is_empty() {
        return Err(ReadSecretError::Empty(origin(var, file)));
    }
    Ok(value.to_string())
}

/// Where [`read`] looks for a secret, in the words of its errors: `environment variable
/// NAME` or `secret file PATH`.
pub fn origin(var: Option<&str>, file: Option<&Path>) -> String {
    match (var, file) {
        (Some(var), _) => format!("environment variable {var}"),
        (None, Some(path)) => format!("secret file {}", path.display()),
        (None, None) => "no secret configured".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "SET" => Some("  s3cret-value\n".into()),
            "BLANK" => Some(" \n".into()),
            _ => None,
        }
    }

    #[test]
    fn an_env_var_is_read_trimmed_and_wins_over_a_file() {
        let missing = Path::new("/nonexistent/secret");
        assert_eq!(
            read(&env, Some("SET"), Some(missing)).ok().as_deref(),
            Some("s3cret-value")
        );
    }

    #[test]
    fn a_file_is_read_trimmed() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("token");
        std::fs::write(&path, "from-a-file\n").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            read(&env, None, Some(&path)).ok().as_deref(),
            Some("from-a-file")
        );
    }

    #[test]
    fn each_failure_names_where_the_secret_was_expected() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap_or_else(|e| panic!("{e}"));
        let missing = dir.path().join("missing");
        let cases: [(Option<&str>, Option<&Path>, String); 5] = [
            (
                Some("UNSET"),
                None,
                "environment variable UNSET is not set".into(),
            ),
            (
                Some("BLANK"),
                None,
                "environment variable BLANK is empty".into(),
            ),
            (
                None,
                Some(&empty),
                format!("secret file {} is empty", empty.display()),
            ),
            (
                None,
                Some(&missing),
                format!(
                    "cannot read secret file {}: No such file or directory (os error 2)",
                    missing.display()
                ),
            ),
            (None, None, "no secret configured".into()),
        ];
        for (var, file, want) in cases {
            match read(&env, var, file) {
                Err(e) => assert_eq!(e.to_string(), want),
                Ok(_) => panic!("{var:?} {file:?}: read a secret, wanted {want:?}"),
            }
        }
    }
}
