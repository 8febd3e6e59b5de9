//! The pieces behind the `rxe` command-line tool, as a library so they can be tested:
//! capture-file reading ([`capture`]), `rxe dump` ([`dump`]), `rxe samples` ([`samples`]) and
//! `rxe demo` ([`demo`]) and `rxe rping` ([`rping`]).

pub mod capture;
pub mod demo;
pub mod dump;
pub mod rping;
pub mod samples;
