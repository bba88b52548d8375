//! Two people log in by phone, one activates the other's invite code, and the
//! first sees the referral: the whole flow on `MemoryStore`.
//!
//! ```sh
//! cargo run -p referral-memory --example walkthrough
//! ```
#![allow(clippy::print_stdout)]

use std::sync::Arc;

use referral_core::{ActivateError, PageLimit, ReferralService, StubSmsSender};
use referral_memory::MemoryStore;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sms = Arc::new(StubSmsSender::new());
    let service =
        ReferralService::builder(Arc::new(MemoryStore::new()), Arc::clone(&sms) as _).build()?;

    // Alice asks for a code, reads it from the (stub) SMS, and logs in.
    let alice_phone = service.parse_phone("+7 (999) 123-45-67")?;
    let sent = service.request_code(&alice_phone).await?;
    println!("code sent to {}, valid {:?}", sent.phone, sent.expires_in);
    let code = sms.latest(&alice_phone).ok_or("no SMS")?.code;
    let alice = service.verify_code(&alice_phone, &code).await?;
    println!(
        "alice logged in (new user: {}), invite code {}",
        alice.new_user, alice.user.invite_code
    );

    // Bob does the same, then activates Alice's code, typed carelessly.
    let bob_phone = service.parse_phone("+79990000001")?;
    service.request_code(&bob_phone).await?;
    let code = sms.latest(&bob_phone).ok_or("no SMS")?.code;
    let bob = service.verify_code(&bob_phone, &code).await?.user;
    let typed = format!("  {}  ", alice.user.invite_code.as_str().to_lowercase());
    let activation = service.activate_invite(bob.id, &typed.parse()?).await?;
    println!(
        "bob activated {:?}",
        activation
            .profile
            .activated_invite_code
            .map(|c| c.to_string())
    );

    // A second code is refused: one activation per life.
    let own = service.activate_invite(bob.id, &bob.invite_code).await;
    if let Err(ActivateError::AlreadyActivated { code }) = own {
        println!("bob cannot activate another code: {code} is already active");
    }

    // Alice's profile and her referrals, page by page.
    let profile = service.profile(alice.user.id).await?;
    println!(
        "alice has {} referral(s): {:?}",
        profile.referral_count,
        profile
            .referrals
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
    );
    let page = service
        .referrals(alice.user.id, None, PageLimit::default())
        .await?;
    for r in &page.items {
        println!("  {} activated at {}", r.phone, r.activated_at);
    }
    Ok(())
}
