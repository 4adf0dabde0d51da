//! One module per subcommand.

pub(crate) mod services;
pub(crate) mod topics;
