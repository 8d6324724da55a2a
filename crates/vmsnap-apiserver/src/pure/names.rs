//! Object name validation, with the API server's messages.

const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";

fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Checks a DNS-1123 subdomain (most object names); returns the API server's message on failure.
pub fn check_subdomain(name: &str) -> Result<(), String> {
    if name.len() > 253 {
        return Err("must be no more than 253 characters".into());
    }
    if name.split('.').all(is_label) { Ok(()) } else { Err(DNS1123_SUBDOMAIN_MSG.into()) }
}

/// Checks a DNS-1123 label (namespace names).
pub fn check_label(name: &str) -> Result<(), String> {
    if name.len() > 63 {
        return Err("must be no more than 63 characters".into());
    }
    if is_label(name) { Ok(()) } else { Err(DNS1123_LABEL_MSG.into()) }
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
    fn subdomains() {
        assert!(check_subdomain("snap-1").is_ok());
        assert!(check_subdomain("a.b.c").is_ok());
        assert!(check_subdomain("Bad_Name").unwrap_err().contains("RFC 1123 subdomain"));
        assert!(check_subdomain("-x").is_err());
        assert!(check_subdomain("").is_err());
        assert!(check_subdomain(&"a".repeat(254)).is_err());
    }

    #[test]
    fn labels() {
        assert!(check_label("default").is_ok());
        assert!(check_label("a.b").is_err());
    }

    #[test]
    fn generated_suffixes_use_the_safe_alphabet() {
        let s = random_suffix();
        assert_eq!(s.len(), 5);
        assert!(s.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)));
    }
}
