//! Every parser of referral-core on arbitrary input: never panics, and what it
//! accepts prints back to something it accepts as the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use referral_core::{
    InviteCode, OtpCode, OtpLength, PhoneNumber, ReferralCursor, Region, UserId,
};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(p) = PhoneNumber::parse(s, None) {
        assert_eq!(PhoneNumber::parse(&p.to_string(), None), Ok(p));
    }
    if let Ok(region) = Region::parse("RU") {
        if let Ok(p) = PhoneNumber::parse(s, Some(region)) {
            assert_eq!(PhoneNumber::parse(&p.to_string(), None), Ok(p));
        }
    }
    if let Ok(c) = InviteCode::parse(s) {
        assert_eq!(InviteCode::parse(c.as_str()), Ok(c));
        assert!(c.as_str().bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()));
    }
    for len in OtpLength::MIN..=OtpLength::MAX {
        let length = OtpLength::new(len).expect("in range");
        if let Ok(c) = OtpCode::parse(s, length) {
            assert!(c.expose().bytes().all(|b| b.is_ascii_digit()));
            assert_eq!(c.expose().len(), usize::from(len));
        }
    }
    if let Ok(c) = ReferralCursor::parse(s) {
        assert_eq!(ReferralCursor::parse(&c.to_string()), Ok(c));
    }
    if let Ok(id) = UserId::parse(s) {
        assert_eq!(UserId::parse(&id.to_string()), Ok(id));
    }
    let _ = Region::parse(s);
});
