//! Helpers shared by callflow-live's integration tests.

pub mod netns;
