//! The benchmark's plans: four rows per account, the mix an onboarding spreadsheet has (two
//! restore roles, a restore scope of the account's own, and the restore-all-VMs flag), and the
//! number of requests such a plan makes against a known state.

use std::fmt::Write as _;

use embatch::emulator::AccountSnapshot;

/// The Exchange Restore Operator role, named by name in the plan.
const EXCHANGE: &str = "Exchange Restore Operator";
/// The Oracle Restore Operator role's GUID, named by URN in the plan.
const ORACLE: &str = "e9d90e66-b6d4-49dc-8986-73cf33489623";
/// The hierarchy root of the scopes the plan adds.
const ROOT: &str = "7a1c2e3d-4b5f-4a60-8c71-92d3e4f5a6b7";

/// Rows per account.
pub const ROWS_PER_ACCOUNT: usize = 4;

/// The header of every generated plan.
pub const HEADER: &str = "account,action,target,object_name,ticket\n";

/// Accounts a plan of `rows` rows touches.
pub fn accounts_for(rows: usize) -> usize {
    rows.div_ceil(ROWS_PER_ACCOUNT)
}

/// How the plan names accounts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Naming {
    /// By GUID: no account list is read.
    Id,
    /// By `DOMAIN\name`: the runner reads the account list once to resolve them.
    Name,
}

/// Appends account number `i`'s rows (at most `rows`) to `csv`.
fn push_rows(csv: &mut String, i: usize, account: &str, flag_now: bool, rows: usize) {
    let flip = if flag_now { "off" } else { "on" };
    let lines = [
        format!("{account},assign-role,{EXCHANGE},,BENCH-1"),
        format!("{account},assign-role,urn:veeam:EnterpriseRole:{ORACLE},,BENCH-1"),
        format!("{account},add-scope,urn:VMware:ResourcePool:{ROOT}.bench-{i},Bench-{i},BENCH-1"),
        format!("{account},restore-all-vms,{flip},,BENCH-1"),
    ];
    for line in lines.iter().take(rows) {
        csv.push_str(line);
        csv.push('\n');
    }
}

/// The generated accounts of an emulator state (`TECH\user00001`, ...).
pub fn generated(accounts: &[AccountSnapshot]) -> impl Iterator<Item = &AccountSnapshot> {
    accounts.iter().filter(|a| a.name.starts_with("TECH\\user"))
}

/// A plan of `rows` rows over `accounts`, four rows each in order; panics when there are too
/// few (the caller sized the emulator).
pub fn plan_for<'a>(
    accounts: impl IntoIterator<Item = &'a AccountSnapshot>,
    rows: usize,
    naming: Naming,
) -> String {
    let mut csv = String::with_capacity(HEADER.len() + rows * 110);
    csv.push_str(HEADER);
    let mut left = rows;
    for (i, a) in accounts.into_iter().enumerate() {
        if left == 0 {
            break;
        }
        let account = match naming {
            Naming::Id => a.id.to_string(),
            Naming::Name => a.name.clone(),
        };
        let n = left.min(ROWS_PER_ACCOUNT);
        push_rows(&mut csv, i, &account, a.allow_restore_all_vms, n);
        left -= n;
    }
    assert_eq!(left, 0, "the emulator was seeded with too few accounts");
    csv
}

/// Requests a run makes besides the accounts' own: a logon, the role list (and the account
/// list when accounts are named) and the logout.
pub fn base_requests(naming: Naming) -> u64 {
    3 + u64::from(naming == Naming::Name)
}

/// Requests an account's four rows make, without retries: three reads, then one write per
/// row not already in place (a role it holds is a no-op), and the scope list read again after
/// the scope is added, to learn the new scope's id.
pub fn account_requests(a: &AccountSnapshot) -> u64 {
    let exchange = uuid::Uuid::from_u128(0xf83e4c81_0815_452f_9377_9d573dd9d481);
    let oracle = uuid::Uuid::parse_str(ORACLE).expect("the constant is a GUID");
    let holds = |id| a.roles.iter().any(|r| r.id == id);
    3 + 3 + u64::from(!holds(exchange)) + u64::from(!holds(oracle))
}

/// The first generated accounts whose plan makes at least `requests` requests in all.
pub fn accounts_for_requests(
    accounts: &[AccountSnapshot],
    requests: u64,
    naming: Naming,
) -> Vec<&AccountSnapshot> {
    let mut total = base_requests(naming);
    let mut chosen = Vec::new();
    for a in generated(accounts) {
        if total >= requests {
            break;
        }
        total += account_requests(a);
        chosen.push(a);
    }
    chosen
}

/// A synthetic plan of `rows` rows over accounts named `TECH\user000001`..., for offline
/// checks: no server is asked, so the accounts need not exist.
pub fn synthetic_plan(rows: usize) -> String {
    let mut csv = String::with_capacity(HEADER.len() + rows * 90);
    csv.push_str(HEADER);
    let mut name = String::new();
    for i in 0..accounts_for(rows) {
        name.clear();
        write!(name, "TECH\\user{:06}", i + 1).expect("writing to a String cannot fail");
        let n = (rows - i * ROWS_PER_ACCOUNT).min(ROWS_PER_ACCOUNT);
        push_rows(&mut csv, i, &name, false, n);
    }
    csv
}
