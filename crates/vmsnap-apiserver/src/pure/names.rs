//! Object name validation, with the API server's messages (apimachinery's `IsDNS1123Subdomain`,
//! `IsDNS1123Label`, `IsDNS1035Label` and `IsValidPathSegmentName`).
//!
//! Each kind takes the rule its real registry strategy applies: most kinds, custom resources
//! included, take DNS-1123 subdomains of up to 253 characters (whose dot-separated parts have no
//! length limit of their own); namespaces take DNS-1123 labels; services DNS-1035 labels; RBAC
//! kinds any path segment.

const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1035_LABEL_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";

/// Which names a kind accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameRule {
    /// A DNS-1123 subdomain of at most 253 characters (most kinds, and every custom resource).
    Subdomain,
    /// A DNS-1123 label of at most 63 characters (namespaces).
    Label,
    /// A DNS-1035 label: a label that starts with a letter (services).
    Dns1035Label,
    /// Anything usable as a URL path segment (roles and bindings).
    PathSegment,
}

impl NameRule {
    /// The rule of the kind `plural` in `group`, as its Kubernetes registry strategy sets it.
    pub fn for_kind(group: &str, plural: &str) -> NameRule {
        match (group, plural) {
            ("", "namespaces") => NameRule::Label,
            ("", "services") => NameRule::Dns1035Label,
            ("rbac.authorization.k8s.io", _) => NameRule::PathSegment,
            _ => NameRule::Subdomain,
        }
    }

    /// Checks a full name; the messages are the API server's.
    pub fn check(self, name: &str) -> Result<(), Vec<String>> {
        self.check_with(name, false)
    }

    /// Checks a `generateName` prefix: the name rule for what the prefix can start, so a trailing
    /// `-` is fine (apimachinery's `maskTrailingDash`).
    pub fn check_prefix(self, prefix: &str) -> Result<(), Vec<String>> {
        self.check_with(prefix, true)
    }

    fn check_with(self, name: &str, prefix: bool) -> Result<(), Vec<String>> {
        let masked = if prefix && name.len() > 1 && self != NameRule::PathSegment {
            name.strip_suffix('-').map(|n| format!("{n}a")).unwrap_or_else(|| name.to_owned())
        } else {
            name.to_owned()
        };
        let errors = match self {
            NameRule::Subdomain => subdomain(&masked),
            NameRule::Label => label(&masked, is_dns1123_label, DNS1123_LABEL_MSG),
            NameRule::Dns1035Label => label(&masked, is_dns1035_label, DNS1035_LABEL_MSG),
            NameRule::PathSegment => path_segment(&masked, prefix),
        };
        if errors.is_empty() { Ok(()) } else { Err(errors) }
    }
}

fn is_label_char(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, of any length.
fn is_dns1123_label(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_label_char) && !s.starts_with('-') && !s.ends_with('-')
}

/// `[a-z]([-a-z0-9]*[a-z0-9])?`, of any length.
fn is_dns1035_label(s: &str) -> bool {
    is_dns1123_label(s) && s.as_bytes()[0].is_ascii_lowercase()
}

fn subdomain(name: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if name.len() > 253 {
        errors.push("must be no more than 253 characters".to_owned());
    }
    if !name.split('.').all(is_dns1123_label) {
        errors.push(DNS1123_SUBDOMAIN_MSG.to_owned());
    }
    errors
}

fn label(name: &str, matches: fn(&str) -> bool, message: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if name.len() > 63 {
        errors.push("must be no more than 63 characters".to_owned());
    }
    if !matches(name) {
        errors.push(message.to_owned());
    }
    errors
}

fn path_segment(name: &str, prefix: bool) -> Vec<String> {
    if !prefix && (name == "." || name == "..") {
        return vec![format!("may not be '{name}'")];
    }
    ["/", "%"]
        .iter()
        .filter(|bad| name.contains(**bad))
        .map(|bad| format!("may not contain '{bad}'"))
        .collect()
}

/// A random suffix for `generateName`, from the API server's alphabet (no vowels, no confusable digits).
pub fn random_suffix() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..5).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subdomains_of_up_to_253_characters_with_parts_of_any_length() {
        let rule = NameRule::Subdomain;
        assert!(rule.check("snap-1").is_ok());
        assert!(rule.check("a.b.c").is_ok());
        // What the snapshot controller names a VolumeSnapshot: apimachinery's IsDNS1123Subdomain
        // only limits the whole name, not each dot-separated part, to its length.
        let volume_snapshot =
            format!("vmsnapshot-{}-volume-{}", "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", "a".repeat(60));
        assert!(volume_snapshot.len() > 63);
        assert!(rule.check(&volume_snapshot).is_ok());
        assert!(rule.check(&format!("{}.x", "a".repeat(100))).is_ok());
        assert!(rule.check(&"a".repeat(253)).is_ok());
    }

    #[test]
    fn bad_subdomains_get_apimachinery_messages() {
        let rule = NameRule::Subdomain;
        assert!(rule.check("Bad_Name").unwrap_err()[0].contains("RFC 1123 subdomain"));
        assert!(rule.check("-x").is_err());
        assert!(rule.check("x.").is_err());
        assert!(rule.check("a..b").is_err());
        assert!(rule.check("").is_err());
        assert_eq!(rule.check(&"a".repeat(254)).unwrap_err(), vec!["must be no more than 253 characters"]);
    }

    #[test]
    fn namespaces_are_labels_of_at_most_63_characters() {
        let rule = NameRule::for_kind("", "namespaces");
        assert!(rule.check("default").is_ok());
        assert!(rule.check("a.b").unwrap_err()[0].contains("RFC 1123 label"));
        assert_eq!(rule.check(&"a".repeat(64)).unwrap_err(), vec!["must be no more than 63 characters"]);
    }

    #[test]
    fn services_are_dns1035_labels() {
        let rule = NameRule::for_kind("", "services");
        assert!(rule.check("web").is_ok());
        assert!(rule.check("1web").unwrap_err()[0].contains("DNS-1035 label"));
    }

    #[test]
    fn rbac_names_are_path_segments() {
        let rule = NameRule::for_kind("rbac.authorization.k8s.io", "clusterroles");
        assert!(rule.check("system:controller:Foo_Bar").is_ok());
        assert_eq!(rule.check("..").unwrap_err(), vec!["may not be '..'"]);
        assert_eq!(rule.check("a/b%c").unwrap_err(), vec!["may not contain '/'", "may not contain '%'"]);
    }

    #[test]
    fn custom_resources_and_other_core_kinds_are_subdomains() {
        for (group, plural) in [
            ("snapshot.storage.k8s.io", "volumesnapshots"),
            ("snapshot.kubevirt.io", "virtualmachinesnapshots"),
            ("kubevirt.io", "virtualmachines"),
            ("", "secrets"),
            ("", "configmaps"),
            ("", "persistentvolumeclaims"),
        ] {
            assert_eq!(NameRule::for_kind(group, plural), NameRule::Subdomain, "{group}/{plural}");
        }
    }

    #[test]
    fn generate_name_prefixes_may_end_with_a_dash() {
        assert!(NameRule::Subdomain.check_prefix("snap-").is_ok());
        assert!(NameRule::Label.check_prefix("ns-").is_ok());
        assert!(NameRule::Subdomain.check_prefix("Snap-").is_err());
    }

    #[test]
    fn generated_suffixes_use_the_safe_alphabet() {
        let s = random_suffix();
        assert_eq!(s.len(), 5);
        assert!(s.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)));
    }
}
