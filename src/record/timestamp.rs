//! `google.protobuf.Timestamp` with the proto3 canonical JSON form: RFC 3339,
//! always `Z`-normalized, with 0, 3, 6 or 9 fractional digits. (The generic
//! well-known-type crate writes `+00:00`, which canonical JSON readers reject.)

use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Clone, Copy, PartialEq, Eq, Hash, prost::Message)]
pub struct Timestamp {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

impl From<SystemTime> for Timestamp {
    fn from(t: SystemTime) -> Self {
        let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
        Self {
            seconds: d.as_secs() as i64,
            nanos: d.subsec_nanos() as i32,
        }
    }
}

impl Timestamp {
    /// As `SystemTime`, clamped at the epoch.
    pub fn system_time(&self) -> SystemTime {
        UNIX_EPOCH
            + Duration::new(
                self.seconds.max(0) as u64,
                self.nanos.clamp(0, 999_999_999) as u32,
            )
    }

    pub fn to_rfc3339(&self) -> String {
        let t = self.system_time();
        let nanos = self.nanos.clamp(0, 999_999_999);
        if nanos == 0 {
            humantime::format_rfc3339_seconds(t).to_string()
        } else if nanos % 1_000_000 == 0 {
            humantime::format_rfc3339_millis(t).to_string()
        } else if nanos % 1_000 == 0 {
            humantime::format_rfc3339_micros(t).to_string()
        } else {
            humantime::format_rfc3339_nanos(t).to_string()
        }
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> serde::Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        humantime::parse_rfc3339(&s)
            .map(Timestamp::from)
            .map_err(|e| {
                serde::de::Error::custom(format!("{s:?} is not an RFC 3339 UTC timestamp: {e}"))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json() {
        let t = |seconds, nanos| serde_json::to_string(&Timestamp { seconds, nanos }).unwrap();
        assert_eq!(t(1_700_000_000, 0), "\"2023-11-14T22:13:20Z\"");
        assert_eq!(t(1_700_000_000, 5_000_000), "\"2023-11-14T22:13:20.005Z\"");
        assert_eq!(t(1_700_000_000, 5_000), "\"2023-11-14T22:13:20.000005Z\"");
        assert_eq!(t(1_700_000_000, 5), "\"2023-11-14T22:13:20.000000005Z\"");
        let back: Timestamp = serde_json::from_str("\"2023-11-14T22:13:20.005Z\"").unwrap();
        assert_eq!(
            back,
            Timestamp {
                seconds: 1_700_000_000,
                nanos: 5_000_000
            }
        );
    }
}
