//! The random-UUID ids the crate hands out ([`UserId`](crate::UserId),
//! [`RewardId`](crate::RewardId)): one definition, so they are drawn, parsed
//! and printed alike.

use uuid::Uuid;

use crate::random::Random;

/// A fresh random (version 4) UUID drawn from `rng`.
pub(crate) fn random(rng: &dyn Random) -> Uuid {
    let mut bytes = [0u8; 16];
    rng.fill_bytes(&mut bytes);
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

/// The UUID `input` spells in the hyphenated form; `None` for anything else.
pub(crate) fn parse_hyphenated(input: &str) -> Option<Uuid> {
    // `Uuid::try_parse` also takes braced, URN and simple forms; accept only
    // the one form this crate writes, so one id has one spelling.
    if input.len() != 36 {
        return None;
    }
    Uuid::try_parse(input).ok()
}

/// Defines `$name`, a `Copy` id wrapping a random UUID (serialized as the
/// UUID), with `generate`, `parse` (the hyphenated form only, failing with
/// the unit struct `$error` the caller defines), `from_uuid`, `as_uuid`,
/// `Display` (hyphenated), `Debug` (`$name(…)`) and `FromStr`.
macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $error:ident) => {
        $(#[$doc])*
        #[derive(
            Clone,
            Copy,
            PartialEq,
            Eq,
            Hash,
            PartialOrd,
            Ord,
            ::serde::Serialize,
            ::serde::Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(::uuid::Uuid);

        impl $name {
            /// A fresh random id.
            pub fn generate(rng: &dyn $crate::random::Random) -> Self {
                Self($crate::uuid_id::random(rng))
            }

            /// Parses the hyphenated form (`"67e55044-10b1-426f-9247-bb680e5fe0c8"`).
            ///
            /// # Errors
            #[doc = concat!("[`", stringify!($error), "`] for anything else.")]
            pub fn parse(input: &str) -> Result<Self, $error> {
                $crate::uuid_id::parse_hyphenated(input)
                    .map(Self)
                    .ok_or($error)
            }

            /// Wraps an id read back from a store.
            #[must_use]
            pub fn from_uuid(id: ::uuid::Uuid) -> Self {
                Self(id)
            }

            /// The id as a UUID, for stores.
            #[must_use]
            pub fn as_uuid(&self) -> ::uuid::Uuid {
                self.0
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                ::std::fmt::Display::fmt(&self.0.hyphenated(), f)
            }
        }

        impl ::std::fmt::Debug for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.0.hyphenated())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $error;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }
    };
}

pub(crate) use uuid_id;
