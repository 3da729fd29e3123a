//! The pure logic: no I/O, no clocks, no tasks. Everything here is a
//! function of its arguments and is tested with tables of cases.
//!
//! - [`receiver_path`]: the URL derivation users depend on byte for byte;
//! - [`harbor`]: Harbor's webhook payloads, both formats;
//! - [`harbor_policy`]: Harbor's webhook policies: the one a registration
//!   keeps, ownership and drift;
//! - [`repository`]: repository normalisation, as Kargo computes its keys;
//! - [`tags`]: would Kargo consider a pushed tag for a subscription;
//! - [`tag_regex`]: one tag regex, held without a compiled automaton each;
//! - [`interner`]: one shared copy of values many entries spell alike;
//! - [`token`]: auth-header verification against a digest;
//! - [`rotation`]: which previous paths a rotation leaves accepted, until when;
//! - [`status`]: the ProjectConfig/ClusterConfig status we want, and the
//!   patch that gets there;
//! - [`registration`]: the same for a HarborWebhookRegistration.

pub mod harbor;
pub(crate) mod harbor_policy;
pub(crate) mod interner;
pub mod receiver_path;
pub(crate) mod registration;
pub mod repository;
pub(crate) mod rotation;
pub(crate) mod status;
pub(crate) mod tag_regex;
pub mod tags;
pub mod token;
