//! The pieces behind the `rxe` command-line tool, as a library so they can be tested:
//! capture-file reading ([`capture`]), `rxe dump` ([`dump`]), `rxe samples` ([`samples`]) and
//! `rxe demo` ([`demo`]), `rxe rping` ([`rping`]) and `rxe ibv_rc_pingpong` ([`pingpong`]).

pub mod capture;
pub mod demo;
pub mod devinfo;
pub mod dump;
pub mod host_addr;
pub mod perftest;
pub mod pingpong;
pub mod rping;
pub mod samples;
