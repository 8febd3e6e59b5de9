//! perftest's tools on an rxe-user device: `ib_read_bw`, `ib_read_lat`, `ib_write_bw`,
//! `ib_write_lat`, `ib_send_bw`, `ib_send_lat` and `ib_atomic_bw`, with perftest's flags,
//! out-of-band TCP exchange ([`exchange`]), QP attributes, traffic pattern and figures
//! ([`report`]), so each runs against the real perftest (checked against Debian's, which
//! announces version 6.06) as server or client.
//!
//! Duration mode (`-D`, `-f`, [`duration`]) runs any of them for a time instead of `-n`
//! iterations. Not yet: rdma_cm (`-R`).

pub mod duration;
pub mod exchange;
pub mod report;
mod run;

pub use run::{run, PerftestArgs, PerftestError, Test};
