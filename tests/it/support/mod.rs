//! The test harness, split by role: free ports, a mock Tachi upstream, the
//! gate under test (in-process), raw HTTP, the binary as a child process,
//! and running a test alone in a process of its own.
#![allow(dead_code)]

pub mod alone;
pub mod binary;
pub mod gate;
pub mod mock_tachi;
pub mod ports;
pub mod postgres;
pub mod raw;

pub use binary::GateBinary;
pub use gate::{gate_with_admin, sample, scrape, TestGate};
pub use mock_tachi::{echoed_headers, MockTachi};
pub use ports::{free_port, wait_for_port};
pub use raw::{get_kept_alive, raw_request, raw_request_within, read_answer, RawResponse};
