//! # rxe-transport
//!
//! The RoCEv2 reliable-connection transport of Soft-RoCE, sans-IO and `no_std`.
#![cfg_attr(not(any(test, feature = "std")), no_std)]
#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    clippy::std_instead_of_core,
    clippy::alloc_instead_of_core
)]

pub mod memory;
pub mod time;
pub mod verbs;
