//! `sidetrace run`: one command records a whole unit of work.

pub mod repo;
