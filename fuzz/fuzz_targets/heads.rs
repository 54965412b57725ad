//! The request-head check: the pass that finds suspect heads, and the trial
//! parse that answers for those Pingora's parser refuses.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tachi_gate::head_check::{refusal, suspect};

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime")
    })
}

fuzz_target!(|data: &[u8]| {
    if suspect(data) {
        if let Some(reply) = runtime().block_on(refusal(data)) {
            assert_eq!(reply.status, 400);
        }
    }
});
