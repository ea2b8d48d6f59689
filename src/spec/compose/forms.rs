//! How compose's values written in two forms are read: a string or a mapping (`ports`,
//! `volumes`, `secrets`, `configs`), and a list of names or a mapping of names to settings
//! (`networks`, `depends_on`). Only the reading of forms: nothing here checks a value.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, MapAccess, Visitor, value::MapAccessDeserializer};

use super::shape::{
    DependsOn, FileRef, LongFileRef, LongPort, LongVolume, Port, ServiceNetworks, ServiceVolume,
};

/// A string or a mapping, read as `S` or `L`: the short and long forms of compose's lists.
macro_rules! short_or_long {
    ($ty:ident, $long:ident, $what:literal) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = $ty;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($what)
                    }
                    fn visit_u64<E: de::Error>(self, v: u64) -> Result<$ty, E> {
                        Ok($ty::Short(v.to_string()))
                    }
                    fn visit_i64<E: de::Error>(self, v: i64) -> Result<$ty, E> {
                        Ok($ty::Short(v.to_string()))
                    }
                    fn visit_str<E: de::Error>(self, v: &str) -> Result<$ty, E> {
                        Ok($ty::Short(v.to_owned()))
                    }
                    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<$ty, A::Error> {
                        $long::deserialize(MapAccessDeserializer::new(map)).map($ty::Long)
                    }
                }
                d.deserialize_any(V)
            }
        }
    };
}

short_or_long!(
    Port,
    LongPort,
    "a port (8080, \"8080:80\", \"8080/tcp\") or {target: 8080}"
);
short_or_long!(
    ServiceVolume,
    BoxedLongVolume,
    "a volume (\"data:/var/lib/db\", \"./conf:/etc/app:ro\") or {type, source, target}"
);
short_or_long!(
    FileRef,
    LongFileRef,
    "a secret or config name, or {source, target}"
);

/// [`LongVolume`] read into its box (it is ten times the size of the short form).
struct BoxedLongVolume;

impl BoxedLongVolume {
    fn deserialize<'de, D: de::Deserializer<'de>>(d: D) -> Result<Box<LongVolume>, D::Error> {
        LongVolume::deserialize(d).map(Box::new)
    }
}

/// A list of names, or a mapping of names to an optional `T`.
fn names_or_map<'de, A, T>(what: &'static str, d: A) -> Result<Vec<(String, Option<T>)>, A::Error>
where
    A: de::Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct V<T>(&'static str, std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
        type Value = Vec<(String, Option<T>)>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
        fn visit_seq<S: de::SeqAccess<'de>>(self, mut seq: S) -> Result<Self::Value, S::Error> {
            let mut out = Vec::new();
            while let Some(name) = seq.next_element::<String>()? {
                out.push((name, None));
            }
            Ok(out)
        }
        fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
            let mut out = Vec::new();
            while let Some(name) = map.next_key::<String>()? {
                out.push((name, map.next_value::<Option<T>>()?));
            }
            Ok(out)
        }
    }
    d.deserialize_any(V(what, std::marker::PhantomData))
}

impl<'de> Deserialize<'de> for ServiceNetworks {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        names_or_map(
            "a list of network names, or a mapping of them to settings",
            d,
        )
        .map(ServiceNetworks)
    }
}

impl<'de> Deserialize<'de> for DependsOn {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        names_or_map(
            "a list of service names, or a mapping of them to conditions",
            d,
        )
        .map(DependsOn)
    }
}
