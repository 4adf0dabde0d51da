//! One module per subcommand.

pub(crate) mod consume;
pub(crate) mod demo;
pub(crate) mod dlq;
pub(crate) mod notify;
pub(crate) mod produce;
pub(crate) mod relay;
pub(crate) mod schemas;
pub(crate) mod services;
pub(crate) mod stage;
pub(crate) mod store;
pub(crate) mod topics;
pub(crate) mod watch;
