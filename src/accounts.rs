//! Accounts: which AWS account (and through which role) a job's AWS calls go to, compatible
//! with ACK's cross-account resource management (CARM).
//!
//! A namespace annotated `services.k8s.aws/owner-account-id: <account>` has its jobs in that
//! account, through the role the ConfigMap `ack-role-account-map` maps the account to; a
//! namespace annotated `services.k8s.aws/team-id: <team>` uses the role `ack-role-team-map`
//! maps the team to, in that role's account. Both ConfigMaps live in the controller's
//! namespace. As in ACK, the team wins when a namespace has both; a namespace with neither uses
//! the controller's own credentials. Unlike ACK, the team map needs no feature gate, and a
//! namespace's account is looked up even when it is the controller's own (ACK does the same: an
//! annotated namespace always needs a mapping).
//!
//! Everything here is pure: the runtime feeds the ConfigMaps in ([`RoleMaps`]), the reconciler
//! resolves each job's [`Scope`] from them.

use std::collections::BTreeMap;
use std::sync::RwLock;

/// The namespace annotation naming the AWS account of the namespace's jobs (ACK's).
pub const OWNER_ACCOUNT_ANNOTATION: &str = "services.k8s.aws/owner-account-id";
/// The namespace annotation naming the team whose role the namespace's jobs use (ACK's).
pub const TEAM_ANNOTATION: &str = "services.k8s.aws/team-id";
/// The ConfigMap mapping account IDs to the role to assume in each (ACK's name).
pub const ACCOUNT_MAP: &str = "ack-role-account-map";
/// The ConfigMap mapping team IDs to the role to assume for each (ACK's name).
pub const TEAM_MAP: &str = "ack-role-team-map";

/// The namespace annotations this module reads: a change of either re-evaluates the namespace's
/// jobs.
pub const ANNOTATIONS: [&str; 2] = [OWNER_ACCOUNT_ANNOTATION, TEAM_ANNOTATION];

/// Condition reason: the namespace names an account or team without a usable role.
pub const ACCOUNT_NOT_MAPPED: &str = "AccountNotMapped";
/// Condition reason: STS refused to let the controller assume the mapped role.
pub const ASSUME_ROLE_FAILED: &str = "AssumeRoleFailed";

/// A role in another account, assumed for every AWS call of a job.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Assumed {
    /// The account the role is in: where the job's resources live.
    pub account: String,
    pub role_arn: String,
}

/// Where a job's AWS calls go: an account (the controller's own, or one reached through a role)
/// and a region. Clients, caches, the tracker's Lists and the quota queue are kept per scope.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scope {
    /// `None`: the controller's own credentials.
    pub assumed: Option<Assumed>,
    pub region: String,
}

impl Scope {
    /// The controller's own account in `region`.
    pub fn own(region: impl Into<String>) -> Self {
        Scope {
            assumed: None,
            region: region.into(),
        }
    }

    /// The account the calls go to, when it is not the controller's own.
    pub fn account(&self) -> Option<&str> {
        self.assumed.as_ref().map(|a| a.account.as_str())
    }

    /// (account, region): what the tracker and the quota queue key on (two roles of one account
    /// share its jobs and its quota).
    pub fn key(&self) -> ScopeKey {
        ScopeKey {
            account: self.account().map(str::to_string),
            region: self.region.clone(),
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.assumed {
            Some(a) => write!(f, "account {} ({}), {}", a.account, a.role_arn, self.region),
            None => write!(f, "{}", self.region),
        }
    }
}

/// An account (`None`: the controller's own) and a region.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct ScopeKey {
    pub account: Option<String>,
    pub region: String,
}

impl std::fmt::Display for ScopeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.account {
            Some(a) => write!(f, "account {a}, {}", self.region),
            None => write!(f, "{}", self.region),
        }
    }
}

/// The data of the two ConfigMaps; `None`: that ConfigMap does not exist.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Maps {
    pub accounts: Option<BTreeMap<String, String>>,
    pub teams: Option<BTreeMap<String, String>>,
}

/// Why a namespace's jobs have no account to go to (reason [`ACCOUNT_NOT_MAPPED`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NotMapped(pub String);

/// The account of a namespace's new jobs, from its annotations and the ConfigMaps:
/// `Ok(None)` the controller's own, `Ok(Some(role))` through that role.
pub fn resolve(
    namespace: &str,
    annotations: &BTreeMap<String, String>,
    maps: &Maps,
    controller_namespace: &str,
) -> Result<Option<Assumed>, NotMapped> {
    let annotated = |key: &str| annotations.get(key).map(|v| v.trim()).filter(|v| !v.is_empty());
    if let Some(team) = annotated(TEAM_ANNOTATION) {
        let role = lookup(maps.teams.as_ref(), team, TEAM_MAP, controller_namespace).map_err(|why| {
            NotMapped(format!(
                "namespace {namespace} is annotated {TEAM_ANNOTATION}: {team}, but {why}: add `{team}: <role ARN>` to it; nothing is created until then"
            ))
        })?;
        let account = account_of(role).ok_or_else(|| {
            NotMapped(format!(
                "ConfigMap {controller_namespace}/{TEAM_MAP} maps team {team} to {role:?}, which is not an IAM role ARN (arn:<partition>:iam::<account>:role/<name>)"
            ))
        })?;
        return Ok(Some(Assumed {
            account,
            role_arn: role.to_string(),
        }));
    }
    let Some(account) = annotated(OWNER_ACCOUNT_ANNOTATION) else {
        return Ok(None);
    };
    let role = lookup(maps.accounts.as_ref(), account, ACCOUNT_MAP, controller_namespace).map_err(|why| {
        NotMapped(format!(
            "namespace {namespace} is annotated {OWNER_ACCOUNT_ANNOTATION}: {account}, but {why}: add `\"{account}\": <role ARN>` to it; nothing is created until then"
        ))
    })?;
    checked(role, account, ACCOUNT_MAP, controller_namespace).map(Some)
}

/// The role to reach `account`, where a job was created (its pinned account), from the
/// ConfigMaps as they are now: the namespace's own mapping when it still leads to that account
/// (so a team keeps its role), else the account map's entry. Never another account: when
/// neither leads there, the job's calls wait ([`NotMapped`]).
pub fn reach(
    account: &str,
    namespace: &str,
    annotations: Option<&BTreeMap<String, String>>,
    maps: &Maps,
    controller_namespace: &str,
) -> Result<Assumed, NotMapped> {
    if let Some(Ok(Some(current))) = annotations.map(|a| resolve(namespace, a, maps, controller_namespace)) {
        if current.account == account {
            return Ok(current);
        }
    }
    let role = lookup(maps.accounts.as_ref(), account, ACCOUNT_MAP, controller_namespace).map_err(|why| {
        NotMapped(format!(
            "the job was created in account {account} and is only ever read or stopped there, but {why} (and the namespace's mapping no longer leads to that account): add `\"{account}\": <role ARN>` to it"
        ))
    })?;
    checked(role, account, ACCOUNT_MAP, controller_namespace)
}

/// The value of `key` in a ConfigMap's data, or why there is none.
fn lookup<'a>(
    data: Option<&'a BTreeMap<String, String>>,
    key: &str,
    map: &str,
    controller_namespace: &str,
) -> Result<&'a str, String> {
    let Some(data) = data else {
        return Err(format!("the ConfigMap {controller_namespace}/{map} does not exist"));
    };
    match data.get(key).map(|v| v.trim()) {
        None => Err(format!(
            "the ConfigMap {controller_namespace}/{map} has no entry for {key}"
        )),
        Some("") => Err(format!(
            "the ConfigMap {controller_namespace}/{map} maps {key} to an empty role ARN"
        )),
        Some(role) => Ok(role),
    }
}

/// An account map's role, which must be a role of that account: a role elsewhere would put the
/// namespace's jobs in another account than the one it names.
fn checked(role: &str, account: &str, map: &str, controller_namespace: &str) -> Result<Assumed, NotMapped> {
    match account_of(role) {
        Some(a) if a == account => Ok(Assumed {
            account: a,
            role_arn: role.to_string(),
        }),
        Some(other) => Err(NotMapped(format!(
            "ConfigMap {controller_namespace}/{map} maps account {account} to {role}, a role of account {other}: the role must be in the account it is mapped from"
        ))),
        None => Err(NotMapped(format!(
            "ConfigMap {controller_namespace}/{map} maps {account} to {role:?}, which is not an IAM role ARN (arn:<partition>:iam::<account>:role/<name>)"
        ))),
    }
}

/// The account of an IAM role ARN (`arn:<partition>:iam::<12 digits>:role/<name>`).
pub fn account_of(role_arn: &str) -> Option<String> {
    let mut parts = role_arn.splitn(6, ':');
    let (arn, _partition, service, region, account, resource) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    let valid = arn == "arn"
        && service == "iam"
        && region.is_empty()
        && account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && resource.strip_prefix("role/").is_some_and(|n| !n.is_empty());
    valid.then(|| account.to_string())
}

/// The ConfigMaps as last seen, and the CARM annotations of the namespaces seen, shared by the
/// watches that fill them and the reconciles that read them.
#[derive(Debug, Default)]
pub struct Directory {
    /// The namespace the two ConfigMaps are read from.
    pub controller_namespace: String,
    maps: RwLock<Maps>,
    namespaces: RwLock<BTreeMap<String, BTreeMap<String, String>>>,
}

impl Directory {
    pub fn new(controller_namespace: impl Into<String>) -> Self {
        Directory {
            controller_namespace: controller_namespace.into(),
            ..Default::default()
        }
    }

    pub fn maps(&self) -> Maps {
        self.maps.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Records one ConfigMap's data (`None`: deleted); returns whether anything changed.
    pub fn set_map(&self, name: &str, data: Option<BTreeMap<String, String>>) -> bool {
        let mut maps = self.maps.write().unwrap_or_else(|e| e.into_inner());
        let slot = match name {
            ACCOUNT_MAP => &mut maps.accounts,
            TEAM_MAP => &mut maps.teams,
            _ => return false,
        };
        let changed = *slot != data;
        *slot = data;
        changed
    }

    /// Records the CARM annotations of a namespace (`None`: deleted).
    pub fn set_namespace(&self, namespace: &str, annotations: Option<&BTreeMap<String, String>>) {
        let mut all = self.namespaces.write().unwrap_or_else(|e| e.into_inner());
        match annotations {
            Some(a) => {
                all.insert(namespace.to_string(), carm_annotations(a));
            }
            None => {
                all.remove(namespace);
            }
        }
    }

    /// The CARM annotations of a namespace, when the namespace watch has seen it.
    pub fn namespace(&self, namespace: &str) -> Option<BTreeMap<String, String>> {
        self.namespaces
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(namespace)
            .cloned()
    }

    /// The scope of a new job of `namespace` in `region`.
    pub fn resolve(
        &self,
        namespace: &str,
        annotations: &BTreeMap<String, String>,
        region: &str,
    ) -> Result<Scope, NotMapped> {
        let assumed = resolve(namespace, annotations, &self.maps(), &self.controller_namespace)?;
        Ok(Scope {
            assumed,
            region: region.to_string(),
        })
    }

    /// The scope of a job created in `account` (`None`: the controller's own) and `region`.
    pub fn pinned(&self, namespace: &str, account: Option<&str>, region: &str) -> Result<Scope, NotMapped> {
        let assumed = match account {
            None => None,
            Some(account) => Some(reach(
                account,
                namespace,
                self.namespace(namespace).as_ref(),
                &self.maps(),
                &self.controller_namespace,
            )?),
        };
        Ok(Scope {
            assumed,
            region: region.to_string(),
        })
    }
}

/// The annotations of a namespace this module reads, and nothing else.
pub fn carm_annotations(annotations: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    ANNOTATIONS
        .iter()
        .filter_map(|k| annotations.get(*k).map(|v| (k.to_string(), v.clone())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "111111111111";
    const B: &str = "222222222222";
    const ROLE_A: &str = "arn:aws:iam::111111111111:role/smpc";
    const ROLE_B: &str = "arn:aws:iam::222222222222:role/smpc";
    const TEAM_ROLE: &str = "arn:aws:iam::222222222222:role/team-x";

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn maps() -> Maps {
        Maps {
            accounts: Some(map(&[(A, ROLE_A), (B, ROLE_B)])),
            teams: Some(map(&[("x", TEAM_ROLE)])),
        }
    }

    fn assumed(account: &str, role: &str) -> Option<Assumed> {
        Some(Assumed {
            account: account.into(),
            role_arn: role.into(),
        })
    }

    #[test]
    fn a_namespace_without_annotations_uses_the_controllers_own_account() {
        assert_eq!(resolve("ns", &map(&[]), &maps(), "sys"), Ok(None));
        assert_eq!(resolve("ns", &map(&[]), &Maps::default(), "sys"), Ok(None));
        assert_eq!(
            resolve("ns", &map(&[(OWNER_ACCOUNT_ANNOTATION, " ")]), &Maps::default(), "sys"),
            Ok(None),
            "an empty annotation names nothing"
        );
    }

    #[test]
    fn an_owner_account_goes_through_the_account_maps_role() {
        let ns = map(&[(OWNER_ACCOUNT_ANNOTATION, B)]);
        assert_eq!(resolve("ns", &ns, &maps(), "sys"), Ok(assumed(B, ROLE_B)));
    }

    #[test]
    fn the_team_wins_over_the_owner_account_as_in_ack() {
        let ns = map(&[(OWNER_ACCOUNT_ANNOTATION, A), (TEAM_ANNOTATION, "x")]);
        assert_eq!(resolve("ns", &ns, &maps(), "sys"), Ok(assumed(B, TEAM_ROLE)));
    }

    #[test]
    fn an_unmapped_account_or_team_names_the_annotation_the_key_and_the_configmap() {
        let unmapped = map(&[(OWNER_ACCOUNT_ANNOTATION, "333333333333")]);
        let NotMapped(message) = resolve("team-c", &unmapped, &maps(), "sys").expect_err("not mapped");
        for part in [
            OWNER_ACCOUNT_ANNOTATION,
            "333333333333",
            "sys/ack-role-account-map",
            "team-c",
            "no entry",
        ] {
            assert!(message.contains(part), "{part} in {message}");
        }
        let NotMapped(message) = resolve(
            "team-c",
            &map(&[(OWNER_ACCOUNT_ANNOTATION, A)]),
            &Maps::default(),
            "sys",
        )
        .expect_err("no map");
        assert!(message.contains("does not exist"), "{message}");
        let NotMapped(message) =
            resolve("t", &map(&[(TEAM_ANNOTATION, "y")]), &maps(), "sys").expect_err("team not mapped");
        for part in [TEAM_ANNOTATION, "y", "sys/ack-role-team-map"] {
            assert!(message.contains(part), "{part} in {message}");
        }
        let empty = Maps {
            accounts: Some(map(&[(A, " ")])),
            teams: None,
        };
        let NotMapped(message) =
            resolve("t", &map(&[(OWNER_ACCOUNT_ANNOTATION, A)]), &empty, "sys").expect_err("empty role");
        assert!(message.contains("empty role ARN"), "{message}");
    }

    #[test]
    fn a_role_must_be_a_role_arn_of_the_account_it_is_mapped_from() {
        let wrong = Maps {
            accounts: Some(map(&[(A, ROLE_B)])),
            teams: Some(map(&[("x", "not-an-arn")])),
        };
        let NotMapped(message) =
            resolve("t", &map(&[(OWNER_ACCOUNT_ANNOTATION, A)]), &wrong, "sys").expect_err("other account");
        assert!(message.contains("a role of account 222222222222"), "{message}");
        let NotMapped(message) = resolve("t", &map(&[(TEAM_ANNOTATION, "x")]), &wrong, "sys").expect_err("bad arn");
        assert!(message.contains("not an IAM role ARN"), "{message}");
    }

    #[test]
    fn role_arns_are_parsed_strictly() {
        assert_eq!(account_of(ROLE_A).as_deref(), Some(A));
        assert_eq!(
            account_of("arn:aws-cn:iam::111111111111:role/path/r").as_deref(),
            Some(A)
        );
        for bad in [
            "arn:aws:iam::1111:role/r",
            "arn:aws:iam::111111111111:user/r",
            "arn:aws:sts::111111111111:role/r",
            "arn:aws:iam::111111111111:role/",
            "111111111111",
        ] {
            assert_eq!(account_of(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_pinned_account_is_reached_only_in_that_account() {
        // The namespace now names A, but the job was created in B: B's account-map role.
        let now_a = map(&[(OWNER_ACCOUNT_ANNOTATION, A)]);
        assert_eq!(
            reach(B, "ns", Some(&now_a), &maps(), "sys"),
            Ok(Assumed {
                account: B.into(),
                role_arn: ROLE_B.into()
            })
        );
        // The team's role still leads to B: the team keeps its role.
        let team = map(&[(TEAM_ANNOTATION, "x")]);
        assert_eq!(
            reach(B, "ns", Some(&team), &maps(), "sys").map(|a| a.role_arn),
            Ok(TEAM_ROLE.to_string())
        );
        // B is no longer mapped and the namespace leads elsewhere: wait, never another account.
        let only_a = Maps {
            accounts: Some(map(&[(A, ROLE_A)])),
            teams: None,
        };
        let NotMapped(message) = reach(B, "ns", Some(&now_a), &only_a, "sys").expect_err("B unreachable");
        assert!(message.contains("created in account 222222222222"), "{message}");
    }

    #[test]
    fn the_directory_keeps_the_maps_and_the_namespaces_carm_annotations() {
        let d = Directory::new("sys");
        assert!(d.set_map(ACCOUNT_MAP, Some(map(&[(B, ROLE_B)]))));
        assert!(!d.set_map(ACCOUNT_MAP, Some(map(&[(B, ROLE_B)]))), "unchanged");
        assert!(!d.set_map("other", Some(map(&[]))), "not a CARM map");
        d.set_namespace("ns", Some(&map(&[(OWNER_ACCOUNT_ANNOTATION, B), ("team", "x")])));
        assert_eq!(d.namespace("ns"), Some(map(&[(OWNER_ACCOUNT_ANNOTATION, B)])));
        let scope = d
            .resolve("ns", &map(&[(OWNER_ACCOUNT_ANNOTATION, B)]), "eu-west-1")
            .expect("mapped");
        assert_eq!(scope.account(), Some(B));
        assert_eq!(
            scope.key(),
            ScopeKey {
                account: Some(B.into()),
                region: "eu-west-1".into()
            }
        );
        assert_eq!(d.pinned("ns", None, "eu-west-1"), Ok(Scope::own("eu-west-1")));
        assert_eq!(d.pinned("ns", Some(B), "eu-west-1"), Ok(scope));
        assert!(d.set_map(ACCOUNT_MAP, None));
        assert!(d.pinned("ns", Some(B), "eu-west-1").is_err(), "the map is gone");
    }
}
