//! The conformance kit of referral-core, run against `MemoryStore`.

use referral_memory::MemoryStore;

async fn store() -> Option<MemoryStore> {
    Some(MemoryStore::new())
}

referral_core::store_conformance_tests!(store);
