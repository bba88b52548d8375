//! Parsing and generation of the value types, and the code hash.
//!
//! ```sh
//! cargo bench -p referral-benches --bench values
//! ```

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use referral_core::otp::OtpGuess;
use referral_core::{InviteCode, OtpCode, OtpKey, PhoneNumber, Region, ThreadRandom};

fn benches(c: &mut Criterion) {
    let ru = Region::parse("RU").unwrap();
    c.bench_function("phone_parse/international", |b| {
        b.iter(|| PhoneNumber::parse(black_box("+7 (999) 123-45-67"), None));
    });
    c.bench_function("phone_parse/national", |b| {
        b.iter(|| PhoneNumber::parse(black_box("8 999 123 45 67"), Some(ru)));
    });
    c.bench_function("invite_code/parse", |b| {
        b.iter(|| InviteCode::parse(black_box(" a7kq2m ")))
    });
    c.bench_function("invite_code/generate_csprng", |b| {
        b.iter(|| InviteCode::generate(&ThreadRandom))
    });
    let key = OtpKey::from_bytes(&[3; 32]).unwrap();
    let phone: PhoneNumber = "+79991234567".parse().unwrap();
    let code = OtpCode::parse("1234", Default::default()).unwrap();
    c.bench_function("otp/generate_csprng", |b| {
        b.iter(|| OtpCode::generate(Default::default(), &ThreadRandom))
    });
    c.bench_function("otp/hash", |b| {
        b.iter(|| key.hash(black_box(&phone), black_box(&code)))
    });
    let stored = key.hash(&phone, &code);
    let guess = OtpGuess::new(&key, &phone, &code);
    c.bench_function("otp/compare", |b| {
        b.iter(|| black_box(&guess).matches(black_box(&stored)));
    });
}

criterion_group!(values, benches);
criterion_main!(values);
