//! The seeding policy as the API shows and changes it (`GET` / `POST /api/v1/policy`).

use serde::{Deserialize, Serialize};

/// A change to the seeding policy. A target is a key (64 hex digits: every repository it
/// created or maintains) or a repository id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "lowercase")]
pub enum PolicyRequest {
    /// Seed `target`, keeping `contributions` (all, maintainers or none; default all).
    Seed {
        /// Key or repository id.
        target: String,
        /// all, maintainers or none.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        contributions: Option<String>,
    },
    /// Drop the seed rule for `target` (what is held stays, followed).
    Unseed {
        /// Key or repository id.
        target: String,
    },
    /// Block `target`: what is held of it is removed; nothing of it is fetched, served or
    /// relayed.
    Block {
        /// Key or repository id.
        target: String,
    },
    /// Drop the block of `target`.
    Unblock {
        /// Key or repository id.
        target: String,
    },
    /// Read the policy file again (as SIGHUP does).
    Reload,
}

/// One rule's target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyTarget {
    /// "key" or "repo".
    pub kind: String,
    /// The key (hex) or repository id.
    pub target: String,
}

/// A seed rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeedReport {
    /// What it seeds.
    #[serde(flatten)]
    pub target: PolicyTarget,
    /// all, maintainers or none.
    pub contributions: String,
}

/// The policy in effect, and what applying it did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyReport {
    /// The policy file.
    pub file: String,
    /// How repositories no rule names are kept: followed or all.
    pub default: String,
    /// Seed rules, in the file's order.
    pub seed: Vec<SeedReport>,
    /// Blocked keys and repositories.
    pub block: Vec<PolicyTarget>,
    /// Repositories this change removed (blocked).
    #[serde(default)]
    pub removed: Vec<String>,
    /// Repositories this change started following (seeded).
    #[serde(default)]
    pub followed: Vec<String>,
}
