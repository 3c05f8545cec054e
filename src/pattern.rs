//! `*`-glob matching of event types and sources, shared by delivery routes, client scopes
//! and policy filters. Pure string matching; nothing else.

/// `*`-glob match (`dev.cdevents.service.*`, `/ci/*`); `*` matches any run of characters.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, rest)) => {
            let Some(mut tail) = text.strip_prefix(head) else {
                return false;
            };
            loop {
                if glob_match(rest, tail) {
                    return true;
                }
                let mut chars = tail.chars();
                if chars.next().is_none() {
                    return false;
                }
                tail = chars.as_str();
            }
        }
    }
}

/// An event type without its trailing version: `dev.cdevents.artifact.packaged.0.3.0` ->
/// `dev.cdevents.artifact.packaged`. Types without a version are returned as they are.
pub fn unversioned(ty: &str) -> &str {
    // The version is the last three dot-separated parts when the first of them is a number.
    let mut cut = ty;
    for _ in 0..3 {
        match cut.rsplit_once('.') {
            Some((head, _)) => cut = head,
            None => return ty,
        }
    }
    let version = &ty[cut.len() + 1..];
    if version.starts_with(|c: char| c.is_ascii_digit()) {
        cut
    } else {
        ty
    }
}

/// A type pattern matches a type when it globs the type, or the type without its version
/// (`dev.cdevents.incident.detected` matches every version of that type).
pub fn type_pattern_matches(pattern: &str, ty: &str) -> bool {
    glob_match(pattern, ty) || glob_match(pattern, unversioned(ty))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        let rows = [
            (
                "dev.cdevents.incident.detected",
                "dev.cdevents.incident.detected.0.3.0",
                true,
            ),
            (
                "dev.cdevents.incident.detected",
                "dev.cdevents.incident.detected.0.2.0",
                true,
            ),
            (
                "dev.cdevents.incident.detected.0.3.0",
                "dev.cdevents.incident.detected.0.3.0",
                true,
            ),
            (
                "dev.cdevents.incident.detected.0.2.0",
                "dev.cdevents.incident.detected.0.3.0",
                false,
            ),
            (
                "dev.cdevents.incident",
                "dev.cdevents.incident.detected.0.3.0",
                false,
            ),
            (
                "dev.cdevents.change.*",
                "dev.cdevents.change.merged.0.3.0",
                true,
            ),
            (
                "dev.cdevents.change.*",
                "dev.cdevents.changes.merged.0.3.0",
                false,
            ),
            ("*", "anything", true),
            (
                "dev.cdeventsx.acme-deliver.triggered",
                "dev.cdeventsx.acme-deliver.triggered.0.1.0",
                true,
            ),
            ("com.example.plain", "com.example.plain", true),
            ("com.example", "com.example.plain", false),
        ];
        for (p, t, want) in rows {
            assert_eq!(type_pattern_matches(p, t), want, "{p} vs {t}");
        }
        assert_eq!(unversioned("a.b.c.1.2.3-rc1"), "a.b.c");
        assert_eq!(unversioned("a.b"), "a.b");
        assert!(glob_match("/ci/*", "/ci/github/run/1"));
        assert!(!glob_match("/ci/*", "/monitoring/x"));
    }
}
