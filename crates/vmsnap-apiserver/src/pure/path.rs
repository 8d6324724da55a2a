//! Parsing resource URLs: `/api/v1/...` and `/apis/{group}/{version}/...`.

/// A parsed resource URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourcePath {
    /// API group; empty for `/api/v1`.
    pub group: String,
    /// API version.
    pub version: String,
    /// Namespace, when the URL has `/namespaces/{ns}/` before the resource.
    pub namespace: Option<String>,
    /// Plural resource name.
    pub plural: String,
    /// Object name.
    pub name: Option<String>,
    /// Subresource (`status`, `freeze`, ...).
    pub subresource: Option<String>,
}

/// Parses a resource URL path. Returns `None` for paths that are not resource paths
/// (discovery documents such as `/api/v1` or `/apis/g/v` are handled before this).
pub fn parse(path: &str) -> Option<ResourcePath> {
    let segs: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return None,
    };
    if rest.is_empty() || rest.iter().any(|s| s.is_empty()) {
        return None;
    }
    let mk = |ns: Option<&str>, plural: &str, name: Option<&str>, sub: Option<&str>| ResourcePath {
        group: group.to_owned(),
        version: version.to_owned(),
        namespace: ns.map(str::to_owned),
        plural: plural.to_owned(),
        name: name.map(str::to_owned),
        subresource: sub.map(str::to_owned),
    };
    Some(match rest {
        ["namespaces"] => mk(None, "namespaces", None, None),
        ["namespaces", ns] => mk(None, "namespaces", Some(ns), None),
        ["namespaces", ns, sub @ ("status" | "finalize")] if group.is_empty() => {
            mk(None, "namespaces", Some(ns), Some(sub))
        }
        ["namespaces", ns, plural] => mk(Some(ns), plural, None, None),
        ["namespaces", ns, plural, name] => mk(Some(ns), plural, Some(name), None),
        ["namespaces", ns, plural, name, sub] => mk(Some(ns), plural, Some(name), Some(sub)),
        [plural] => mk(None, plural, None, None),
        [plural, name] => mk(None, plural, Some(name), None),
        [plural, name, sub] => mk(None, plural, Some(name), Some(sub)),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(
        g: &str,
        v: &str,
        ns: Option<&str>,
        plural: &str,
        name: Option<&str>,
        sub: Option<&str>,
    ) -> ResourcePath {
        ResourcePath {
            group: g.into(),
            version: v.into(),
            namespace: ns.map(Into::into),
            plural: plural.into(),
            name: name.map(Into::into),
            subresource: sub.map(Into::into),
        }
    }

    #[test]
    fn namespaced_custom_resource_paths() {
        let base = "/apis/snapshot.kubevirt.io/v1beta1/namespaces/default/virtualmachinesnapshots";
        assert_eq!(
            parse(base),
            Some(p(
                "snapshot.kubevirt.io",
                "v1beta1",
                Some("default"),
                "virtualmachinesnapshots",
                None,
                None
            ))
        );
        assert_eq!(
            parse(&format!("{base}/snap/status")),
            Some(p(
                "snapshot.kubevirt.io",
                "v1beta1",
                Some("default"),
                "virtualmachinesnapshots",
                Some("snap"),
                Some("status")
            ))
        );
    }

    #[test]
    fn all_namespace_and_cluster_scoped_paths() {
        assert_eq!(
            parse("/apis/kubevirt.io/v1/virtualmachines"),
            Some(p("kubevirt.io", "v1", None, "virtualmachines", None, None))
        );
        assert_eq!(
            parse("/apis/storage.k8s.io/v1/storageclasses/local"),
            Some(p("storage.k8s.io", "v1", None, "storageclasses", Some("local"), None))
        );
    }

    #[test]
    fn namespaces_themselves_and_their_subresources() {
        assert_eq!(parse("/api/v1/namespaces"), Some(p("", "v1", None, "namespaces", None, None)));
        assert_eq!(
            parse("/api/v1/namespaces/demo"),
            Some(p("", "v1", None, "namespaces", Some("demo"), None))
        );
        assert_eq!(
            parse("/api/v1/namespaces/demo/status"),
            Some(p("", "v1", None, "namespaces", Some("demo"), Some("status")))
        );
        assert_eq!(
            parse("/api/v1/namespaces/demo/events"),
            Some(p("", "v1", Some("demo"), "events", None, None))
        );
    }

    #[test]
    fn non_resource_paths_are_refused() {
        assert_eq!(parse("/api/v1"), None);
        assert_eq!(parse("/apis/kubevirt.io/v1"), None);
        assert_eq!(parse("/version"), None);
        assert_eq!(parse("/apis/g/v/a/b/c/d"), None);
        assert_eq!(parse("/apis/g/v//x"), None);
    }
}
