//! The stograd-nn integration tests, as one test binary (each file in this directory is a
//! module of it), so the engine's generic code is compiled once for all of them.

#[macro_use]
mod common;

mod bayes;
mod checkpoint;
mod data;
mod init;
mod layers;
mod optim;
mod parallel;
mod plot;
mod training;
mod vae;
mod vae_discrete;
