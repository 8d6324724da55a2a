//! KubeVirt's `naming.GetName(base, suffix, maxLength)`, used for backend volumes and
//! `PrefixTargetName` restore names.

fn fnv32a(text: &str) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for b in text.bytes() {
        hash ^= u32::from(b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

/// `base-suffix` if it fits in `max`; else a truncated base, an FNV-32a hash and the suffix.
pub fn get_name(base: &str, suffix: &str, max: usize) -> String {
    let name = format!("{base}-{suffix}");
    if name.len() <= max {
        return name;
    }
    if suffix.len() + 10 > max {
        // The suffix alone is too long: keep part of the base and a hash of the whole name.
        let cut = base.len().min(max.saturating_sub(9));
        let mut n = format!("{}-{:08x}", &base[..cut], fnv32a(&name));
        n.truncate(max);
        return n;
    }
    let keep = max - 10 - suffix.len();
    format!("{}-{:08x}-{suffix}", &base[..keep.min(base.len())], fnv32a(base))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_are_joined() {
        assert_eq!(get_name("target", "disk0", 63), "target-disk0");
    }

    #[test]
    fn long_names_are_cut_and_hashed_to_the_limit() {
        let base = "a".repeat(60);
        let n = get_name(&base, "disk0", 63);
        assert_eq!(n.len(), 63);
        assert!(n.ends_with("-disk0"));
        assert!(n.starts_with(&"a".repeat(47)));
        let very = get_name("base", &"s".repeat(70), 63);
        assert!(very.len() <= 63);
    }
}
