mod address_finder;
pub mod process;
pub mod ruby_spy;
mod ruby_version;
pub mod supported_ruby_versions;
pub mod types;
