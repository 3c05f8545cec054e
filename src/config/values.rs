//! Value types that parse and check themselves while the file is read (rates, byte sizes,
//! durations, URLs, store URLs), so a bad value is reported at its key and line.

use serde::{Deserialize, Deserializer};
use std::fmt;
use std::time::Duration;

/// A rate written `N/s`, `N/m` or `N/h`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub per: Duration,
}

impl fmt::Debug for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.per.as_secs() {
            1 => "s",
            60 => "m",
            _ => "h",
        };
        write!(f, "{}/{unit}", self.count)
    }
}

impl std::str::FromStr for Rate {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("invalid rate {s:?}; write N/s, N/m or N/h (e.g. 3/h)");
        let (n, unit) = s.trim().split_once('/').ok_or_else(bad)?;
        let count: u32 = n.trim().parse().map_err(|_| bad())?;
        let per = match unit.trim() {
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            _ => return Err(bad()),
        };
        if count == 0 {
            return Err(format!("invalid rate {s:?}: the count must be at least 1"));
        }
        Ok(Rate { count, per })
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A size written `512KiB`, `1MiB` or a plain byte count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub usize);

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let t = s.trim();
        let (num, mult) = if let Some(n) = t.strip_suffix("MiB") {
            (n, 1024 * 1024)
        } else if let Some(n) = t.strip_suffix("KiB") {
            (n, 1024)
        } else {
            (t, 1)
        };
        num.trim()
            .parse::<usize>()
            .ok()
            .and_then(|n| n.checked_mul(mult))
            .filter(|n| *n > 0)
            .map(ByteSize)
            .ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "invalid size {s:?}; write e.g. 1MiB, 512KiB or a byte count"
                ))
            })
    }
}

/// A duration written the human way: `500ms`, `10s`, `15m`, `24h`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl fmt::Debug for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s)
            .map(HumanDuration)
            .map_err(|e| {
                serde::de::Error::custom(format!(
                    "invalid duration {s:?} ({e}); write e.g. 500ms, 10s, 15m"
                ))
            })
    }
}

/// An absolute `http` or `https` URL.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpUrl(pub reqwest::Url);

impl fmt::Debug for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Userinfo could hold a secret.
        let mut shown = self.0.clone();
        let _ = shown.set_password(None);
        write!(f, "{shown}")
    }
}

impl std::str::FromStr for HttpUrl {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let url = reqwest::Url::parse(s).map_err(|e| format!("invalid URL {s:?}: {e}"))?;
        match url.scheme() {
            "http" | "https" => Ok(HttpUrl(url)),
            other => Err(format!("URL {s:?} has scheme {other:?}; use http or https")),
        }
    }
}

impl<'de> Deserialize<'de> for HttpUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Where the store lives: a SQLite file (one gateway) or a PostgreSQL database (several).
/// The PostgreSQL URL may hold a password: `Debug` prints it as `***` (see
/// [`StoreUrl::redacted`]); the URL itself is never logged.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// `sqlite://PATH`.
    Sqlite(String),
    /// `postgres://…` or `postgresql://…`, with libpq-style options such as `sslmode` in the
    /// query string.
    Postgres(String),
}

impl Default for StoreUrl {
    fn default() -> Self {
        StoreUrl::Sqlite("sqlite://argocd-cdevents.db".into())
    }
}

impl StoreUrl {
    /// The URL with any password (in the user info or a `password` option) shown as `***`.
    pub fn redacted(&self) -> String {
        match self {
            StoreUrl::Sqlite(u) => u.clone(),
            StoreUrl::Postgres(u) => {
                let Ok(mut url) = url::Url::parse(u) else {
                    return "postgres://(unparsable URL)".into();
                };
                if url.password().is_some() {
                    let _ = url.set_password(Some("***"));
                }
                if url.query_pairs().any(|(k, _)| k == "password") {
                    let pairs: Vec<(String, String)> = url
                        .query_pairs()
                        .map(|(k, v)| {
                            let v = if k == "password" {
                                "***".into()
                            } else {
                                v.into_owned()
                            };
                            (k.into_owned(), v)
                        })
                        .collect();
                    url.query_pairs_mut().clear().extend_pairs(pairs);
                }
                url.to_string()
            }
        }
    }
}

impl fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl std::str::FromStr for StoreUrl {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.starts_with("sqlite:") {
            if s.trim_start_matches("sqlite:")
                .trim_start_matches("//")
                .is_empty()
            {
                return Err(format!(
                    "store URL {s:?} names no file; write sqlite://PATH"
                ));
            }
            Ok(StoreUrl::Sqlite(s.to_string()))
        } else if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            // Checked here so that `check` and the start refuse a malformed URL; the messages
            // of both parsers name the problem, never the URL (which may hold a password).
            url::Url::parse(s).map_err(|e| format!("the PostgreSQL store URL is invalid: {e}"))?;
            s.parse::<sqlx::postgres::PgConnectOptions>()
                .map_err(|e| format!("the PostgreSQL store URL is invalid: {e}"))?;
            Ok(StoreUrl::Postgres(s.to_string()))
        } else {
            Err(format!(
                "store URL {:?} is neither sqlite://PATH nor postgres://…",
                s.split_once("://").map_or(s, |(scheme, _)| scheme)
            ))
        }
    }
}

impl<'de> Deserialize<'de> for StoreUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}
