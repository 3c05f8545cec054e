//! Argo CD: the Application model as the gateway reads it, shared by the emit flow (watch
//! sources) and, later, the react flow (clients that act on Argo CD).
//!
//! The model is a deliberately partial, lenient view of `applications.argoproj.io/v1alpha1`:
//! unknown fields are ignored and every field is optional, so a newer Argo CD never breaks
//! the gateway. It must never be used to write an Application back (it would drop fields).

pub mod model;

pub use model::Application;
