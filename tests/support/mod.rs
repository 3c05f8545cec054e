//! Shared test support: the CDEvents schemas, and (in other files) the test doubles.
#![allow(dead_code)]

pub mod schemas;
