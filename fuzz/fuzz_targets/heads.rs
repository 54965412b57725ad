//! The request-head check: the head scan that notes suspect lines as a head
//! arrives in pieces, agreeing with the same scan made on the whole head;
//! and the trial parse, with Pingora's parser behind it: every head it
//! refuses must have been found suspect.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tachi_gate::listener::head_check::refusal;
use tachi_gate::listener::deadline::HeadScan;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime")
    })
}

fuzz_target!(|data: &[u8]| {
    // The first byte picks the size of the pieces the rest arrives in.
    let Some((&step, data)) = data.split_first() else {
        return;
    };
    let step = usize::from(step % 16) + 1;
    let mut scan = HeadScan::default();
    let end = (step..data.len() + step)
        .step_by(step)
        .map(|end| end.min(data.len()))
        .find(|&end| scan.complete(&data[..end]));
    let Some(end) = end else {
        return;
    };
    // What had arrived when the head was found whole, as the gate has it.
    let read = &data[..end];
    let suspect = scan.suspect(read);
    assert_eq!(Some(suspect), HeadScan::suspect_whole(read), "in pieces of {step}");
    // Every head Pingora refuses is suspect, so the gate answers it in JSON;
    // a head that is not suspect, Pingora accepts.
    let verdict = runtime().block_on(refusal(read));
    if let Some(reply) = &verdict {
        assert_eq!(reply.status, 400);
    }
    assert!(
        suspect || verdict.is_none(),
        "refused but not suspect: {}",
        read.escape_ascii()
    );
});
