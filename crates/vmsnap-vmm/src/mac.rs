//! MAC addresses, and random locally administered ones for NICs that have none.

use std::fmt;
use std::str::FromStr;

use rand::Rng;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A MAC address, written `02:1a:2b:3c:4d:5e`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MacAddress(pub [u8; 6]);

impl MacAddress {
    /// A random unicast address with the locally administered bit set, so it
    /// can clash with no vendor's address (only, with odds of 1 in 2^46, with another random one).
    pub fn random() -> Self {
        Self::random_with(&mut rand::rng())
    }

    /// [`MacAddress::random`] with the given random number generator.
    pub fn random_with(rng: &mut impl Rng) -> Self {
        let mut bytes: [u8; 6] = rng.random();
        // Bit 1 of the first octet: locally administered; bit 0: multicast.
        bytes[0] = (bytes[0] | 0b10) & !0b1;
        Self(bytes)
    }

    /// Whether the locally administered bit is set.
    pub fn is_locally_administered(&self) -> bool {
        self.0[0] & 0b10 != 0
    }

    /// Whether the address is unicast (the multicast bit is clear).
    pub fn is_unicast(&self) -> bool {
        self.0[0] & 0b1 == 0
    }
}

impl fmt::Display for MacAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// A string that is not six colon-separated hex octets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a MAC address; write six hex octets separated by colons, e.g. 02:00:00:00:00:01")]
pub struct ParseMacError(String);

impl FromStr for MacAddress {
    type Err = ParseMacError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = || ParseMacError(text.to_owned());
        let mut bytes = [0u8; 6];
        let mut parts = text.split([':', '-']);
        for byte in &mut bytes {
            let part = parts.next().ok_or_else(error)?;
            if part.len() != 2 {
                return Err(error());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| error())?;
        }
        match parts.next() {
            Some(_) => Err(error()),
            None => Ok(Self(bytes)),
        }
    }
}

impl Serialize for MacAddress {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MacAddress {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    #[test]
    fn random_macs_are_locally_administered_unicast_and_differ() {
        let mut rng = StdRng::seed_from_u64(7);
        let macs: Vec<MacAddress> = (0..256).map(|_| MacAddress::random_with(&mut rng)).collect();
        assert!(macs.iter().all(|m| m.is_locally_administered() && m.is_unicast()), "{macs:?}");
        let distinct: std::collections::HashSet<_> = macs.iter().collect();
        assert_eq!(distinct.len(), macs.len());
        assert!(MacAddress::random().is_locally_administered());
    }

    #[test]
    fn macs_print_and_parse_back() {
        let mac: MacAddress = "52:54:00:AB:cd:0f".parse().unwrap();
        assert_eq!(mac, MacAddress([0x52, 0x54, 0x00, 0xab, 0xcd, 0x0f]));
        assert_eq!(mac.to_string(), "52:54:00:ab:cd:0f");
        assert_eq!(serde_json::to_string(&mac).unwrap(), "\"52:54:00:ab:cd:0f\"");
        assert_eq!(serde_json::from_str::<MacAddress>("\"52-54-00-ab-cd-0f\"").unwrap(), mac);
        for bad in ["", "52:54:00:ab:cd", "52:54:00:ab:cd:0f:00", "5:54:00:ab:cd:0f", "zz:54:00:ab:cd:0f"] {
            assert!(bad.parse::<MacAddress>().is_err(), "{bad:?} parsed");
        }
    }
}
