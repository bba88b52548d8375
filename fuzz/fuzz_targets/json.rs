//! The value types deserialised from arbitrary JSON (they go through their
//! parsers): never panics, and a value that deserialises serialises back to
//! JSON that deserialises to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use referral_core::{InviteCode, PhoneNumber, UserId};

fn round_trip<T>(data: &[u8])
where
    T: serde::de::DeserializeOwned + serde::Serialize + PartialEq + std::fmt::Debug,
{
    if let Ok(v) = serde_json::from_slice::<T>(data) {
        let json = serde_json::to_vec(&v).expect("serialises");
        assert_eq!(serde_json::from_slice::<T>(&json).expect("deserialises"), v);
    }
}

fuzz_target!(|data: &[u8]| {
    round_trip::<PhoneNumber>(data);
    round_trip::<InviteCode>(data);
    round_trip::<UserId>(data);
    round_trip::<Vec<PhoneNumber>>(data);
});
