//! Package URLs (purl) for what an Application deploys: container images (`pkg:oci`), and
//! the revision of its source — `pkg:github` / `pkg:bitbucket` for repositories on those
//! hosts, `pkg:generic` with a `vcs_url` qualifier for any other git repository, and
//! `pkg:generic` with `repository_url` for a Helm chart. `pkg:git` is not a registered purl
//! type, so it is never produced. Pure string work: no I/O.

use crate::argocd::model::Source;
use packageurl::PackageUrl;

/// `registry/path/name:tag@sha256:…` -> `pkg:oci/name@sha256%3A…?repository_url=registry/path&tag=tag`.
/// Without a digest the version is left out (an OCI purl version is a digest) and the tag
/// goes into the `tag` qualifier.
pub fn image(reference: &str) -> Option<String> {
    let reference = reference.trim();
    if reference.is_empty() {
        return None;
    }
    let (without_digest, digest) = match reference.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (reference, None),
    };
    // A tag follows the last ':' after the last '/' (a registry port has a '/' after it).
    let last_slash = without_digest.rfind('/').map_or(0, |i| i + 1);
    let (repository, tag) = match without_digest[last_slash..].rfind(':') {
        Some(i) => (
            &without_digest[..last_slash + i],
            Some(&without_digest[last_slash + i + 1..]),
        ),
        None => (without_digest, None),
    };
    let (location, name) = match repository.rsplit_once('/') {
        Some((loc, name)) => (Some(loc), name),
        None => (None, repository),
    };
    let mut purl = PackageUrl::new("oci", name.to_ascii_lowercase()).ok()?;
    if let Some(d) = digest {
        purl.with_version(d.to_string()).ok()?;
    }
    if let Some(loc) = location {
        purl.add_qualifier("repository_url", format!("{loc}/{name}"))
            .ok()?;
    }
    if let Some(t) = tag {
        purl.add_qualifier("tag", t.to_string()).ok()?;
    }
    Some(purl.to_string())
}

/// The purl of a source deployed at `revision`.
pub fn source(source: &Source, revision: &str) -> Option<String> {
    if let Some(chart) = source.chart.as_deref().filter(|c| !c.is_empty()) {
        let mut purl = PackageUrl::new("generic", chart.to_string()).ok()?;
        if !revision.is_empty() {
            purl.with_version(revision.to_string()).ok()?;
        }
        if !source.repo_url.is_empty() {
            purl.add_qualifier("repository_url", source.repo_url.clone())
                .ok()?;
        }
        return Some(purl.to_string());
    }
    git(&source.repo_url, revision, source.path.as_deref())
}

fn git(repo_url: &str, revision: &str, path: Option<&str>) -> Option<String> {
    let trimmed = repo_url.trim().trim_end_matches('/');
    if trimmed.is_empty() {
        return None;
    }
    let without_suffix = trimmed.strip_suffix(".git").unwrap_or(trimmed);
    // host and path of https://host/a/b, ssh://git@host/a/b or git@host:a/b
    let rest = without_suffix
        .split_once("://")
        .map_or(without_suffix, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    let (host, repo_path) = rest.split_once(['/', ':'])?;
    let host = host.to_ascii_lowercase();
    let segments: Vec<&str> = repo_path.split('/').filter(|s| !s.is_empty()).collect();
    let (ty, namespace) = match (host.as_str(), segments.len()) {
        ("github.com", 2) => ("github", Some(segments[0])),
        ("bitbucket.org", 2) => ("bitbucket", Some(segments[0])),
        _ => ("generic", None),
    };
    let name = *segments.last()?;
    let mut purl = PackageUrl::new(ty, name.to_string()).ok()?;
    if let Some(ns) = namespace {
        purl.with_namespace(ns.to_string()).ok()?;
    }
    if !revision.is_empty() {
        purl.with_version(revision.to_string()).ok()?;
    }
    if ty == "generic" {
        let vcs = if revision.is_empty() {
            format!("git+{trimmed}")
        } else {
            format!("git+{trimmed}@{revision}")
        };
        purl.add_qualifier("vcs_url", vcs).ok()?;
    }
    if let Some(p) = path
        .map(|p| p.trim_matches('/'))
        .filter(|p| !p.is_empty() && *p != ".")
    {
        purl.with_subpath(p.to_string()).ok()?;
    }
    Some(purl.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(repo: &str, path: Option<&str>, chart: Option<&str>) -> Source {
        Source {
            repo_url: repo.into(),
            path: path.map(Into::into),
            chart: chart.map(Into::into),
            ..Source::default()
        }
    }

    /// (type, namespace, name, version, sorted qualifiers, subpath) of a purl, parsed back
    /// with the purl parser: the comparison is on meaning, not on percent-encoding choices.
    type Parts = (
        String,
        Option<String>,
        String,
        Option<String>,
        Vec<(String, String)>,
        Option<String>,
    );

    fn parts(purl: &str) -> Parts {
        let p: PackageUrl = purl.parse().unwrap_or_else(|e| panic!("{purl}: {e}"));
        let mut q: Vec<(String, String)> = p
            .qualifiers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        q.sort();
        (
            p.ty().to_string(),
            p.namespace().map(String::from),
            p.name().to_string(),
            p.version().map(String::from),
            q,
            p.subpath().map(String::from),
        )
    }

    fn want(
        ty: &str,
        ns: Option<&str>,
        name: &str,
        version: Option<&str>,
        q: &[(&str, &str)],
        sub: Option<&str>,
    ) -> Parts {
        let mut q: Vec<(String, String)> = q
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        q.sort();
        (
            ty.into(),
            ns.map(Into::into),
            name.into(),
            version.map(Into::into),
            q,
            sub.map(Into::into),
        )
    }

    #[test]
    fn images_become_oci_purls() {
        let digest = "sha256:0b31b1c02ff458ad9b7b81cbdf8f028bd54699fa151f221d1e8de6817db93427";
        let cases = [
            (
                format!("ghcr.io/acme/api:1.2.3@{digest}"),
                want(
                    "oci",
                    None,
                    "api",
                    Some(digest),
                    &[("repository_url", "ghcr.io/acme/api"), ("tag", "1.2.3")],
                    None,
                ),
            ),
            (
                "nginx:1.25".to_string(),
                want("oci", None, "nginx", None, &[("tag", "1.25")], None),
            ),
            (
                "registry.local:5000/team/App".to_string(),
                want(
                    "oci",
                    None,
                    "app",
                    None,
                    &[("repository_url", "registry.local:5000/team/App")],
                    None,
                ),
            ),
        ];
        for (input, expected) in cases {
            let got = image(&input).unwrap_or_else(|| panic!("{input}: no purl"));
            assert_eq!(parts(&got), expected, "{input} -> {got}");
        }
        assert_eq!(image("  "), None);
    }

    #[test]
    fn sources_become_registered_purl_types() {
        let rev = "ea8759964626a583667a2bfd08f334ec2070040a";
        let vcs = format!("git+https://gitlab.example.com/group/sub/repo.git@{rev}");
        let cases = [
            (
                src(
                    "https://github.com/argoproj/argocd-example-apps.git",
                    Some("guestbook"),
                    None,
                ),
                rev,
                want(
                    "github",
                    Some("argoproj"),
                    "argocd-example-apps",
                    Some(rev),
                    &[],
                    Some("guestbook"),
                ),
            ),
            (
                src("git@bitbucket.org:team/repo.git", None, None),
                rev,
                want("bitbucket", Some("team"), "repo", Some(rev), &[], None),
            ),
            (
                src(
                    "https://gitlab.example.com/group/sub/repo.git",
                    Some("."),
                    None,
                ),
                rev,
                want(
                    "generic",
                    None,
                    "repo",
                    Some(rev),
                    &[("vcs_url", vcs.as_str())],
                    None,
                ),
            ),
            (
                src("https://charts.bitnami.com/bitnami", None, Some("redis")),
                "17.0.1",
                want(
                    "generic",
                    None,
                    "redis",
                    Some("17.0.1"),
                    &[("repository_url", "https://charts.bitnami.com/bitnami")],
                    None,
                ),
            ),
        ];
        for (i, (source, revision, expected)) in cases.iter().enumerate() {
            let got =
                super::source(source, revision).unwrap_or_else(|| panic!("case {i}: no purl"));
            assert!(!got.starts_with("pkg:git/"), "{got}");
            assert_eq!(&parts(&got), expected, "case {i}: {got}");
        }
        assert_eq!(super::source(&src("", None, None), rev), None);
    }
}
