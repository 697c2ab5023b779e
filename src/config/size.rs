//! Byte sizes as users write them in `oxi.toml`: `"64 KiB"`, `"64MiB"`, `"1 GiB"`, or a bare
//! number of bytes. Parsing is bytesize's; this newtype adds a message that says what to write.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HumanSize(pub bytesize::ByteSize);

impl HumanSize {
    pub const fn mib(n: u64) -> Self {
        Self(bytesize::ByteSize::mib(n))
    }

    pub const fn gib(n: u64) -> Self {
        Self(bytesize::ByteSize::gib(n))
    }

    pub const fn bytes(self) -> u64 {
        self.0.as_u64()
    }
}

impl fmt::Display for HumanSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.display().iec())
    }
}

impl std::str::FromStr for HumanSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.trim()
            .parse::<bytesize::ByteSize>()
            .map(HumanSize)
            .map_err(|_| {
                format!("invalid size {s:?}; write it like \"64 KiB\", \"64MiB\" or \"1 GiB\"")
            })
    }
}

impl Serialize for HumanSize {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for HumanSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SizeVisitor;

        impl Visitor<'_> for SizeVisitor {
            type Value = HumanSize;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as \"64 KiB\" or \"1 GiB\"")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                v.parse().map_err(E::custom)
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                u64::try_from(v)
                    .map(|b| HumanSize(bytesize::ByteSize::b(b)))
                    .map_err(|_| E::custom(format!("a size cannot be negative ({v})")))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(HumanSize(bytesize::ByteSize::b(v)))
            }
        }

        deserializer.deserialize_any(SizeVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_users_write() {
        assert_eq!("64 KiB".parse::<HumanSize>().unwrap().bytes(), 64 * 1024);
        assert_eq!("64MiB".parse::<HumanSize>().unwrap().bytes(), 64 << 20);
        assert_eq!("1 GiB".parse::<HumanSize>().unwrap().bytes(), 1 << 30);
        assert!("lots".parse::<HumanSize>().is_err());
        assert_eq!(HumanSize::mib(64).to_string(), "64.0 MiB");
    }
}
