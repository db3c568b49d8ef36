//! `[[rule]]` as written in the configuration file and in rules files.

use serde::Deserialize;
use toml::Spanned;

/// A value that may be written once or as a list.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    pub fn iter(&self) -> std::slice::Iter<'_, T> {
        match self {
            OneOrMany::One(t) => std::slice::from_ref(t).iter(),
            OneOrMany::Many(v) => v.iter(),
        }
    }
}

/// A query type or class by mnemonic (`"ANY"`) or number (`255`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum TypeName {
    Number(u16),
    Name(String),
}

/// What a rule matches. Keys given together must all hold.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchConfig {
    /// Exact names (case-insensitive).
    pub name: Option<OneOrMany<String>>,
    /// The name or anything below it, on label boundaries.
    pub suffix: Option<OneOrMany<String>>,
    /// Regular expressions over the lower-case dotted name without the final
    /// dot (`www.example.com`); unanchored unless written with ^ and $.
    pub regex: Option<OneOrMany<String>>,
    pub qtype: Option<OneOrMany<TypeName>>,
    pub qclass: Option<OneOrMany<TypeName>>,
    /// Client source prefixes (`192.0.2.0/24`, `2001:db8::/32`, or an address).
    pub source: Option<OneOrMany<String>>,
    /// Holds while the client's prefix has sent more than `qps` queries in
    /// the current second (counted per worker, over the queries that reach
    /// this selector: the rule's other selectors come first).
    pub rate: Option<RateConfig>,
    pub not: Option<Box<MatchConfig>>,
    pub all: Option<Vec<MatchConfig>>,
    pub any: Option<Vec<MatchConfig>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ActionConfig {
    /// `allow`, `skip-cache`, `drop`, `refused`, `nxdomain`, `servfail`,
    /// `truncate`.
    Simple(String),
    Spoof {
        spoof: Vec<String>,
        #[serde(default = "default_ttl")]
        ttl: u32,
    },
    Pool {
        pool: String,
    },
}

fn default_ttl() -> u32 {
    300
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    pub name: Spanned<String>,
    #[serde(rename = "match", default)]
    pub matches: MatchConfig,
    pub action: ActionConfig,
}

/// A rules file: `[[rule]]` entries only.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesFile {
    #[serde(default, rename = "rule")]
    pub rules: Vec<RuleConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateConfig {
    pub qps: u32,
    #[serde(default = "v4_len")]
    pub prefix_v4: u8,
    #[serde(default = "v6_len")]
    pub prefix_v6: u8,
}

fn v4_len() -> u8 {
    32
}

fn v6_len() -> u8 {
    64
}
