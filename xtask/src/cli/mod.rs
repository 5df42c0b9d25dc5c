//! The command line's floor: what the commands are given and how it is checked, before
//! anything runs. [`args`] holds the options several commands share, [`choices`] the values
//! they choose between (the model itself is norma-layers' `ModelKind`, parsed here), [`checks`]
//! the checks of values, [`command_line`] the arguments themselves (UTF-8 only), and [`signals`] the SIGINT/SIGTERM a command can be stopped by.
//!
//! It imports nothing of the other floors but `output::report`'s number formats (an error names
//! a value as the reports print it).

pub mod args;
pub mod checks;
pub mod choices;
pub mod command_line;
pub mod signals;
