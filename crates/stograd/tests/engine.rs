//! The stograd integration tests, as one test binary (each file in this directory is a
//! module of it), so the engine's generic code is compiled once for all of them.

#[macro_use]
mod common;

mod backward;
mod compare;
mod credit;
mod credit_property;
mod discrete;
mod edge_values;
mod errors;
mod estimators;
mod factor_grad;
mod fuzz;
mod fuzz_ops;
mod loc_scale;
mod mvn;
mod numerics;
mod ops_grad;
mod proptest_chains;
