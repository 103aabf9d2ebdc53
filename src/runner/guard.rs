//! Who holds Portal Administrator, and the one judgement of whether a row that deletes an
//! account or takes that role away would lock everyone out of EM. Loaded and applied by the
//! executor (`accounts.rs`); kept apart so that the executor's state names it without the
//! executor and the account rules importing each other.

use std::collections::{HashMap, HashSet};

use uuid::Uuid;

use crate::em::AccountType;

/// Who holds Portal Administrator, as read once per run.
#[derive(Debug, Default)]
pub struct Admins {
    /// Accounts holding it.
    pub(super) holders: HashSet<Uuid>,
    /// The EM account of embatch's own logon user, if it has one.
    pub(super) logon_account: Option<Uuid>,
    /// Every account's id by its name in lower case, for the rows that name their account.
    pub(super) by_name: HashMap<String, Uuid>,
}

impl Admins {
    /// Why removing Portal Administrator from, or deleting (`verb`), the account `id` named
    /// `name` of type `kind` must not be done; `None` when it may. The one judgement behind
    /// both the check before a run's first write and the check of each row.
    pub(super) fn judge(
        &self,
        logon_user: &str,
        id: Uuid,
        name: &str,
        kind: Option<AccountType>,
        verb: &str,
    ) -> Option<String> {
        let holds = self.holders.contains(&id);
        if self.logon_account == Some(id) {
            return Some(format!(
                "refused: would {verb} {name}, the account embatch logs on with ({logon_user})"
            ));
        }
        if self.logon_account.is_none() && holds && kind == Some(AccountType::Group) {
            return Some(format!(
                "refused: would {verb} {name}: embatch logs on as {logon_user}, which has no \
                 account of its own in EM and may hold Portal Administrator through this group"
            ));
        }
        if holds && self.holders.len() <= 1 {
            return Some(format!(
                "refused: would {verb} {name}, the last account that holds Portal \
                 Administrator; EM would be left without an administrator"
            ));
        }
        None
    }
}
