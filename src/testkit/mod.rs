//! What tests, benches and fuzzers need from inside the crate: the fakes of
//! each seam, the pool model, and the fuzz checkers. Reached through the
//! hidden `portpick::__private`; not a stable API.

pub mod fakes;
pub mod fuzz;
pub mod pool_model;
pub mod pool_ops;
