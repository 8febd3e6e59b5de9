//! The pieces behind the `rxe` command-line tool, as a library so they can be tested:
//! capture-file reading ([`capture`]), `rxe dump` ([`dump`]) and `rxe samples` ([`samples`]).
//!
//! Later issues add the loopback demo, `rping` and perftest-compatible tools here.

pub mod capture;
pub mod dump;
pub mod samples;
