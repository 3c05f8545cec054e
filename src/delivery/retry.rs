//! Retry is a classification, not a loop: a pure function says whether a delivery attempt
//! succeeded, should be retried (and when), or is permanently refused (dead letter).

use std::time::Duration;

/// What came back from one POST to a sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// The sink answered with this status; `retry_after` is its `Retry-After` header, if any.
    Status {
        code: u16,
        retry_after: Option<String>,
    },
    /// No answer: connection refused or reset, DNS, TLS, or timeout.
    Transport { timeout: bool, message: String },
    /// The row could not even be turned into a request (never retried).
    Unsendable(String),
}

/// What to do after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    /// Try again; `after` is the server's wish (Retry-After), else the caller backs off.
    Retry {
        after: Option<Duration>,
        reason: String,
    },
    /// Never going to work as is: park it in the dead-letter state.
    Dead {
        reason: String,
    },
}

/// Longest Retry-After we honour; a larger value is clamped to it.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Classify an attempt. `now` (unix seconds) is used to read a Retry-After HTTP-date.
pub fn classify(attempt: &Attempt, now: std::time::SystemTime) -> Verdict {
    match attempt {
        Attempt::Unsendable(message) => Verdict::Dead {
            reason: message.clone(),
        },
        Attempt::Transport { timeout, message } => Verdict::Retry {
            after: None,
            reason: if *timeout {
                format!("timeout: {message}")
            } else {
                format!("transport: {message}")
            },
        },
        Attempt::Status { code, retry_after } => match code {
            200..=299 => Verdict::Delivered,
            408 | 429 | 500..=599 => Verdict::Retry {
                after: retry_after
                    .as_deref()
                    .and_then(|v| parse_retry_after(v, now))
                    .map(|d| d.min(MAX_RETRY_AFTER)),
                reason: format!("HTTP {code}"),
            },
            _ => Verdict::Dead {
                reason: format!("HTTP {code}"),
            },
        },
    }
}

/// `Retry-After` is either delay-seconds or an HTTP-date.
pub fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Exponential backoff for the `attempt`-th failure (1-based), capped at `max`, with
/// "equal jitter": a uniformly random delay in [d/2, d]. `unit` in [0, 1) is the randomness.
pub fn backoff(attempt: u32, initial: Duration, max: Duration, unit: f64) -> Duration {
    let exp = attempt.saturating_sub(1).min(32);
    let full = initial.saturating_mul(1u32 << exp.min(31)).min(max);
    let half = full / 2;
    half + half.mul_f64(unit.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn status(code: u16, retry_after: Option<&str>) -> Attempt {
        Attempt::Status {
            code,
            retry_after: retry_after.map(Into::into),
        }
    }

    #[test]
    fn statuses_are_classified() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let table: &[(Attempt, &str)] = &[
            (status(200, None), "delivered"),
            (status(202, None), "delivered"),
            (status(204, None), "delivered"),
            (status(408, None), "retry"),
            (status(429, Some("7")), "retry 7s"),
            (
                status(503, Some("Tue, 14 Nov 2023 22:13:30 GMT")),
                "retry 10s",
            ),
            (
                status(503, Some("Tue, 14 Nov 2023 22:13:00 GMT")),
                "retry 0s",
            ),
            (status(429, Some("999999")), "retry 3600s"),
            (status(429, Some("soon")), "retry"),
            (status(500, None), "retry"),
            (status(502, None), "retry"),
            (status(400, None), "dead"),
            (status(401, None), "dead"),
            (status(404, None), "dead"),
            (status(413, None), "dead"),
            (status(301, None), "dead"),
            (
                Attempt::Transport {
                    timeout: true,
                    message: "x".into(),
                },
                "retry",
            ),
            (
                Attempt::Transport {
                    timeout: false,
                    message: "refused".into(),
                },
                "retry",
            ),
        ];
        for (attempt, want) in table {
            let got = match classify(attempt, now) {
                Verdict::Delivered => "delivered".to_string(),
                Verdict::Retry { after: None, .. } => "retry".to_string(),
                Verdict::Retry { after: Some(d), .. } => format!("retry {}s", d.as_secs()),
                Verdict::Dead { .. } => "dead".to_string(),
            };
            assert_eq!(&got, want, "{attempt:?}");
        }
    }

    #[test]
    fn backoff_doubles_caps_and_jitters_within_bounds() {
        let i = Duration::from_millis(500);
        let m = Duration::from_secs(60);
        assert_eq!(backoff(1, i, m, 0.0), Duration::from_millis(250));
        assert_eq!(backoff(1, i, m, 1.0), Duration::from_millis(500));
        assert_eq!(backoff(2, i, m, 1.0), Duration::from_secs(1));
        assert_eq!(backoff(4, i, m, 1.0), Duration::from_secs(4));
        assert_eq!(backoff(20, i, m, 1.0), m);
        assert_eq!(backoff(200, i, m, 0.0), m / 2);
    }
}
