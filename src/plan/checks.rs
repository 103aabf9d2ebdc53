//! Checks across rows: duplicate rows and contradictory rows (an assign and a remove of one
//! role, an add and a remove of one scope, or both restore-all-VMs values, for one account),
//! and the checks that need the whole plan (new accounts without a role, deleted accounts with
//! other rows).
//!
//! Rows are compared on normalised keys kept in hash maps, so a plan of any size is checked in
//! one pass. Names and GUIDs are interned to small numbers (names through a scratch buffer, so
//! a row whose names were seen before allocates nothing here), which keeps a row's key at 12
//! bytes and its entry, with its line, at 16; accounts are numbered apart from targets, so
//! that what each account holds sits in a plain vector. These tables are all that checking a
//! streamed plan holds, so their entry sizes decide how much memory a large plan needs. A GUID and a name cannot be correlated without asking the server, so an account or
//! role named both ways counts as two.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::{BuildHasherDefault, Hasher};

use uuid::Uuid;

use super::cells::Kind;
use super::{AccountRef, Action, RoleRef, ScopeRef};

/// An account, by its interned GUID or name. GUIDs and names share one numbering (see
/// [`Numbering`]), so the number alone tells them apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Who(u32);

/// A row's target, by its interned GUID or name. The row's kind says what sort of target it
/// is, and GUIDs and names share one numbering, so the number alone is enough.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct What(u32);

/// A physical line, as the tables store it: the reader refuses a plan of more lines than this
/// holds, and four bytes instead of eight per entry matter at a million rows. 0 is "none".
type Line = u32;

/// `line` as the tables store it.
fn compact(line: u64) -> Line {
    Line::try_from(line).expect("the plan reader stops before line numbers outgrow u32")
}

/// A fast hasher for the tracker's maps, in the style of rustc's FxHash, with a final mix so
/// that the high bits the hash table uses depend on every input byte.
///
/// The keys come from the user's own plan, so the flooding resistance of the standard SipHash
/// buys nothing here, while hashing was the largest single cost of checking a big plan.
#[derive(Default)]
struct FastHasher(u64);

impl FastHasher {
    const K: u64 = 0xf135_7aea_2e62_a9c5;

    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(26) ^ word).wrapping_mul(Self::K);
    }
}

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            self.add(u64::from_le_bytes(
                chunk.try_into().expect("chunks_exact gives 8 bytes"),
            ));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        // The fmix64 finaliser of MurmurHash3.
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

/// What the rows seen so far hold, keyed for duplicate and contradiction checks.
#[derive(Default)]
pub(super) struct Tracker {
    /// The numbers of accounts, apart from those of targets so that they stay dense: an
    /// account's facts are then found by its number in a plain vector.
    accounts: Numbering,
    /// The numbers of targets.
    targets: Numbering,
    scratch: String,
    /// (account, action, target) → the first line holding it.
    rows: FastMap<(Who, Kind, What), Line>,
    /// (account, scope name) → the first add-scope row giving the account a scope of that name.
    /// A remove-scope row names a scope by its name (or its GUID, which no scope added by the
    /// plan has yet), so this is what an add-scope row is matched with.
    added_scopes: FastMap<(Who, What), Line>,
    /// What the rows of each account named by name hold, by its number, for the
    /// restore-all-VMs checks and the checks that need the whole plan (`finish`).
    named: Vec<AccountFacts>,
    /// The same for each account named by GUID, by `u32::MAX` minus its number.
    by_id: Vec<AccountFacts>,
    /// The name as an account's first add-account row wrote it, to tell names that differ only
    /// in case.
    added_names: FastMap<Who, Box<str>>,
    /// Every row's line, linked per account through [`AccountFacts::last_row`]: a
    /// delete-account row must be the only row of its account, and which accounts are deleted
    /// is known only at the end. Kept only until the plan is read.
    chain: Vec<(Line, u32)>,
}

/// The rows one account has in the plan, as far as cross-row checks care. Lines are 0 when
/// there is no such row.
#[derive(Clone, Copy, Default)]
struct AccountFacts {
    /// The account's last row so far, as an index into `Tracker::chain` plus one.
    last_row: u32,
    /// The add-account row.
    add: Line,
    /// The delete-account row.
    delete: Line,
    /// The first restore-all-vms row, and its value.
    flag: Line,
    flag_on: bool,
    /// The first restore-all-vms off row.
    flag_off: Line,
    /// Whether an assign-role row exists.
    role: bool,
    /// Whether an add-scope row exists.
    scope: bool,
}

impl Tracker {
    /// Records a valid row and reports each problem it has with earlier rows.
    pub(super) fn check(
        &mut self,
        line: u64,
        account: &AccountRef,
        action: &Action,
        report: &mut impl FnMut(String),
    ) {
        let at_line = compact(line);
        let who = match account {
            AccountRef::Id(id) => Who(self.accounts.id(*id)),
            AccountRef::Name(name) => Who(self.accounts.name(name, true, &mut self.scratch)),
        };
        let previous = u32::try_from(self.chain.len())
            .expect("a plan has fewer rows than lines, and fewer lines than u32 holds");
        let facts = if (who.0 as usize) < self.accounts.names.len() {
            facts_at(&mut self.named, who.0)
        } else {
            facts_at(&mut self.by_id, u32::MAX - who.0)
        };
        self.chain.push((at_line, facts.last_row));
        facts.last_row = previous + 1;
        match action {
            Action::AssignRole(_) => facts.role = true,
            Action::AddScope { .. } => facts.scope = true,
            Action::RestoreAllVms(false) if facts.flag_off == 0 => facts.flag_off = at_line,
            Action::AddAccount(_) => {
                if facts.add == 0 {
                    facts.add = at_line;
                } else {
                    report(format!(
                        "duplicate of line {}: the account is added twice",
                        facts.add
                    ));
                }
                if let AccountRef::Name(name) = account {
                    match self.added_names.get(&who) {
                        Some(first) if **first != **name => report(format!(
                            "adds '{name}', which differs only in case from '{first}' added earlier"
                        )),
                        Some(_) => {}
                        None => {
                            self.added_names.insert(who, name.as_str().into());
                        }
                    }
                }
                return;
            }
            Action::DeleteAccount => {
                if facts.delete == 0 {
                    facts.delete = at_line;
                } else {
                    report(format!("duplicate of line {}", facts.delete));
                }
                return;
            }
            _ => {}
        }
        if let Action::RestoreAllVms(value) = action {
            if facts.flag == 0 {
                facts.flag = at_line;
                facts.flag_on = *value;
            } else if facts.flag_on == *value {
                report(format!("duplicate of line {}", facts.flag));
            } else {
                let at = facts.flag;
                report(format!(
                    "contradicts line {at}: restore-all-vms on and off for one account (lines {at} and {line})"
                ));
            }
            return;
        }
        let (kind, what) = match action {
            Action::AssignRole(role) => (Kind::AssignRole, self.role(role)),
            Action::RemoveRole(role) => (Kind::RemoveRole, self.role(role)),
            Action::AddScope { obj_ref, .. } => (
                Kind::AddScope,
                What(self.targets.name(obj_ref, true, &mut self.scratch)),
            ),
            // EM scope names are matched exactly when a scope is removed, so they are
            // compared exactly here too.
            Action::RemoveScope(ScopeRef::Id(id)) => {
                (Kind::RemoveScope, What(self.targets.id(*id)))
            }
            Action::RemoveScope(ScopeRef::Name(name)) => (
                Kind::RemoveScope,
                What(self.targets.name(name, false, &mut self.scratch)),
            ),
            Action::AddAccount(_) | Action::DeleteAccount | Action::RestoreAllVms(_) => {
                unreachable!("add-account, delete-account and restore-all-vms rows return above")
            }
        };
        let opposite = match kind {
            Kind::AssignRole => Some(Kind::RemoveRole),
            Kind::RemoveRole => Some(Kind::AssignRole),
            _ => None,
        };
        if let Some(&at) = opposite.and_then(|o| self.rows.get(&(who, o, what))) {
            report(format!(
                "contradicts line {at}: assign-role and remove-role of the same role for one account \
                 (lines {at} and {line})"
            ));
        }
        // An add and a remove of one scope, in either order, are refused like an assign and a
        // remove of one role: each row is decided against the account as it is when the row
        // runs, so a run stopped between the two (or with the first in doubt) is resumed
        // against a state the later row already changed, and can add the scope again after
        // its removal, or remove the scope just added. EM matches a removal by name exactly.
        let added_or_removed = match action {
            Action::AddScope { object_name, .. } => {
                let named = What(self.targets.name(object_name, false, &mut self.scratch));
                let removed = self.rows.get(&(who, Kind::RemoveScope, named)).copied();
                self.added_scopes.entry((who, named)).or_insert(at_line);
                removed
            }
            Action::RemoveScope(ScopeRef::Name(_)) => self.added_scopes.get(&(who, what)).copied(),
            _ => None,
        };
        if let Some(at) = added_or_removed {
            report(format!(
                "contradicts line {at}: add-scope and remove-scope of the same scope for one \
                 account (lines {at} and {line})"
            ));
        }
        match self.rows.entry((who, kind, what)) {
            Entry::Occupied(first) => report(format!("duplicate of line {}", first.get())),
            Entry::Vacant(slot) => {
                slot.insert(at_line);
            }
        }
    }

    /// Reports the problems only the whole plan shows: a new account without a role, or with
    /// restore-all-vms off and no scope; a deleted account with other rows.
    pub(super) fn finish(&mut self, report: &mut impl FnMut(u64, String)) {
        let mut accounts: Vec<AccountFacts> = self
            .named
            .iter()
            .chain(&self.by_id)
            .filter(|f| f.add != 0 || f.delete != 0)
            .copied()
            .collect();
        accounts.sort_by_key(|f| if f.add != 0 { f.add } else { f.delete });
        for facts in accounts {
            if facts.delete != 0 {
                let line = facts.delete;
                if facts.add != 0 {
                    report(
                        line.into(),
                        format!(
                            "contradicts line {}: the account is added and deleted",
                            facts.add
                        ),
                    );
                }
                let mut others = Vec::new();
                let mut next = facts.last_row;
                while next != 0 {
                    let (other, previous) = self.chain[next as usize - 1];
                    if other != line && other != facts.add {
                        others.push(other);
                    }
                    next = previous;
                }
                for &other in others.iter().rev() {
                    report(
                        other.into(),
                        format!(
                            "the account is deleted on line {line}; a deleted account can have \
                             no other rows in the plan"
                        ),
                    );
                }
            }
            if facts.add != 0 {
                let line = facts.add;
                if !facts.role {
                    report(
                        line.into(),
                        "a new account needs a role: add an assign-role row for it".into(),
                    );
                }
                if facts.flag_off != 0 && !facts.scope {
                    report(
                        facts.flag_off.into(),
                        format!(
                            "the account added on line {line} gets restore-all-vms off but no \
                             scope: add an add-scope row for it"
                        ),
                    );
                }
            }
        }
        self.chain = Vec::new();
    }

    fn role(&mut self, role: &RoleRef) -> What {
        match role {
            RoleRef::Id(id) => What(self.targets.id(*id)),
            RoleRef::Name(name) => What(self.targets.name(name, true, &mut self.scratch)),
        }
    }
}

/// The facts of the account at `index` in `list`, new ones added as they come: numbers are
/// given out in order, so a new account is always the next one.
fn facts_at(list: &mut Vec<AccountFacts>, index: u32) -> &mut AccountFacts {
    let index = index as usize;
    if index >= list.len() {
        list.resize(index + 1, AccountFacts::default());
    }
    &mut list[index]
}

/// Small numbers standing for GUIDs and names. Names count up from 0 and GUIDs down from the
/// top, so the two never meet.
#[derive(Default)]
struct Numbering {
    names: Interner,
    ids: FastMap<Uuid, u32>,
}

impl Numbering {
    /// Checks that one more number is free.
    fn room(&self) {
        assert!(
            self.ids.len() + self.names.len() < u32::MAX as usize,
            "a plan names fewer than 4 billion distinct GUIDs and names"
        );
    }

    /// The number of the GUID `id`.
    fn id(&mut self, id: Uuid) -> u32 {
        if let Some(&n) = self.ids.get(&id) {
            return n;
        }
        self.room();
        let n = u32::MAX - u32::try_from(self.ids.len()).expect("room() keeps the count in u32");
        self.ids.insert(id, n);
        n
    }

    /// The number of `text` (lower-cased first when `fold`), built in `scratch` so that a name
    /// seen before allocates nothing.
    fn name(&mut self, text: &str, fold: bool, scratch: &mut String) -> u32 {
        scratch.clear();
        if !fold {
            scratch.push_str(text);
        } else if text.is_ascii() {
            scratch.push_str(text);
            scratch.make_ascii_lowercase();
        } else {
            scratch.extend(text.chars().flat_map(char::to_lowercase));
        }
        self.room();
        self.names.get_or_insert(scratch)
    }
}

/// Distinct strings, each numbered from 0 in the order first seen.
///
/// The texts lie end to end in large blocks and an open-addressing table holds only their
/// numbers, so a name costs its bytes plus 16 more, where a map of owned strings costs a heap
/// block of its own and some 40 bytes besides. At a million rows, names are the larger part
/// of what the checks hold.
#[derive(Default)]
struct Interner {
    /// The texts, end to end. A block is never grown past its first capacity, so the texts
    /// already in it never move and no block is ever copied.
    blocks: Vec<String>,
    /// Where each numbered text lies.
    spans: Vec<Span>,
    /// Numbers of texts by hash, probed linearly; `EMPTY` where none. At most half full, so
    /// probes stay short.
    slots: Vec<u32>,
}

/// Where an interned text lies in [`Interner::blocks`].
#[derive(Clone, Copy)]
struct Span {
    block: u32,
    start: u32,
    len: u32,
}

impl Interner {
    /// The size of a text block; a longer text gets a block of its own.
    const BLOCK: usize = 1 << 20;
    const EMPTY: u32 = u32::MAX;

    fn len(&self) -> usize {
        self.spans.len()
    }

    fn text(&self, n: u32) -> &str {
        let span = self.spans[n as usize];
        let start = span.start as usize;
        &self.blocks[span.block as usize][start..start + span.len as usize]
    }

    fn hash(text: &str) -> usize {
        let mut hasher = FastHasher::default();
        hasher.write(text.as_bytes());
        // Truncating to usize keeps the low bits, which pick the slot.
        hasher.finish() as usize
    }

    /// The number of `text`, given the next free number when it is new.
    fn get_or_insert(&mut self, text: &str) -> u32 {
        if self.len() * 2 >= self.slots.len() {
            self.grow();
        }
        let mask = self.slots.len() - 1;
        let mut i = Self::hash(text) & mask;
        loop {
            match self.slots[i] {
                Self::EMPTY => break,
                n if self.text(n) == text => return n,
                _ => i = (i + 1) & mask,
            }
        }
        let n = u32::try_from(self.len()).expect("the tracker numbers fewer than 4 billion texts");
        if self
            .blocks
            .last()
            .is_none_or(|b| b.capacity() - b.len() < text.len())
        {
            self.blocks
                .push(String::with_capacity(Self::BLOCK.max(text.len())));
        }
        let block = self.blocks.len() - 1;
        let store = &mut self.blocks[block];
        let start = store.len();
        store.push_str(text);
        self.spans.push(Span {
            block: u32::try_from(block).expect("fewer than 4 billion blocks of 1 MiB"),
            start: u32::try_from(start).expect("a block holds less than 4 GiB"),
            len: u32::try_from(text.len()).expect("a plan's cell is shorter than 4 GiB"),
        });
        self.slots[i] = n;
        n
    }

    /// Doubles the table and places every number again.
    fn grow(&mut self) {
        let size = (self.slots.len() * 2).max(64);
        self.slots = vec![Self::EMPTY; size];
        let mask = size - 1;
        for n in 0..u32::try_from(self.len()).expect("fewer than 4 billion texts") {
            let mut i = Self::hash(self.text(n)) & mask;
            while self.slots[i] != Self::EMPTY {
                i = (i + 1) & mask;
            }
            self.slots[i] = n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(rows: &[(AccountRef, Action)]) -> Vec<(u64, String)> {
        let mut t = Tracker::default();
        let mut out = Vec::new();
        for (i, (account, action)) in rows.iter().enumerate() {
            let line = i as u64 + 2;
            t.check(line, account, action, &mut |m| out.push((line, m)));
        }
        out
    }

    fn name(n: &str) -> AccountRef {
        AccountRef::Name(n.into())
    }

    fn assign(r: &str) -> Action {
        Action::AssignRole(RoleRef::Name(r.into()))
    }

    fn remove(r: &str) -> Action {
        Action::RemoveRole(RoleRef::Name(r.into()))
    }

    #[test]
    fn a_row_key_stays_small() {
        // The row table holds one of these per row; see the module's first paragraph.
        assert!(std::mem::size_of::<(Who, Kind, What)>() <= 20);
    }

    #[test]
    fn the_interner_numbers_each_text_once_across_blocks() {
        let mut interner = Interner::default();
        let long = "x".repeat(Interner::BLOCK + 1);
        let texts: Vec<String> = (0..5_000)
            .map(|i| format!("tech\\user{i:05}"))
            .chain([String::new(), long])
            .collect();
        for (i, t) in texts.iter().enumerate() {
            assert_eq!(interner.get_or_insert(t), i as u32);
        }
        for (i, t) in texts.iter().enumerate() {
            assert_eq!(interner.get_or_insert(t), i as u32);
            assert_eq!(interner.text(i as u32), t);
        }
        assert_eq!(interner.len(), texts.len());
        assert!(interner.blocks.len() >= 2);
    }

    #[test]
    fn the_fast_hasher_spreads_near_keys() {
        use std::hash::BuildHasher;
        let build = BuildHasherDefault::<FastHasher>::default();
        let mut seen = std::collections::HashSet::new();
        for i in 0..10_000u32 {
            let h = build.hash_one(format!("tech\\user{i:05}"));
            // The table picks buckets by the low bits and tags by the top 7 bits; both vary.
            seen.insert((h >> 57, h & 0xff));
        }
        assert!(seen.len() > 5_000, "{}", seen.len());
        assert_ne!(build.hash_one("abc"), build.hash_one("abd"));
    }

    #[test]
    fn duplicates_compare_names_case_insensitively_and_name_the_first_line() {
        let out = run(&[
            (name("TECH\\alice"), assign("Portal User")),
            (name("tech\\ALICE"), assign("portal user")),
            (name("TECH\\alice"), assign("Portal User")),
            (name("TECH\\Ärger"), assign("Portal User")),
            (name("tech\\ärger"), assign("PORTAL USER")),
        ]);
        assert_eq!(
            out,
            [
                (3, "duplicate of line 2".into()),
                (4, "duplicate of line 2".into()),
                (6, "duplicate of line 5".into())
            ]
        );
    }

    #[test]
    fn different_accounts_actions_or_targets_are_not_duplicates() {
        let id = Uuid::from_u128(7);
        let out = run(&[
            (name("TECH\\alice"), assign("Portal User")),
            (name("TECH\\bob"), assign("Portal User")),
            (name("TECH\\alice"), assign("VM Restore Operator")),
            // A GUID cannot be matched to a name offline.
            (AccountRef::Id(id), assign("Portal User")),
            (
                name("TECH\\alice"),
                Action::AssignRole(RoleRef::Id(Uuid::from_u128(1))),
            ),
            (
                name("TECH\\alice"),
                Action::RemoveScope(ScopeRef::Name("Finance".into())),
            ),
            (
                name("TECH\\alice"),
                Action::RemoveScope(ScopeRef::Name("finance".into())),
            ),
        ]);
        assert_eq!(out, []);
    }

    #[test]
    fn guid_forms_are_one_key() {
        let id = Uuid::from_u128(7);
        let out = run(&[
            (AccountRef::Id(id), Action::RemoveScope(ScopeRef::Id(id))),
            (AccountRef::Id(id), Action::RemoveScope(ScopeRef::Id(id))),
        ]);
        assert_eq!(out, [(3, "duplicate of line 2".into())]);
    }

    #[test]
    fn object_refs_compare_case_insensitively() {
        let add = |r: &str, n: &str| Action::AddScope {
            obj_ref: r.into(),
            object_name: n.into(),
        };
        let out = run(&[
            (name("a"), add("urn:VMware:Vm:R.vm-1", "x")),
            (name("a"), add("urn:vmware:vm:r.vm-1", "y")),
        ]);
        assert_eq!(out, [(3, "duplicate of line 2".into())]);
    }

    #[test]
    fn assign_and_remove_of_one_role_contradict() {
        let out = run(&[
            (name("TECH\\alice"), assign("Portal User")),
            (name("TECH\\bob"), remove("Portal User")),
            (name("tech\\alice"), remove("PORTAL user")),
        ]);
        assert_eq!(
            out,
            [(
                4,
                "contradicts line 2: assign-role and remove-role of the same role for one account (lines 2 and 4)"
                    .into()
            )]
        );
    }

    #[test]
    fn add_and_remove_of_one_scope_contradict_in_either_order() {
        let add = |r: &str, n: &str| Action::AddScope {
            obj_ref: r.into(),
            object_name: n.into(),
        };
        let remove = |n: &str| Action::RemoveScope(ScopeRef::Name(n.into()));
        let out = run(&[
            (name("TECH\\alice"), add("urn:VMware:Vm:R.vm-1", "Finance")),
            // Another account, another name (scope names match exactly), or a GUID: no match.
            (name("TECH\\bob"), remove("Finance")),
            (name("TECH\\alice"), remove("finance")),
            (
                name("TECH\\alice"),
                Action::RemoveScope(ScopeRef::Id(Uuid::from_u128(3))),
            ),
            (name("tech\\ALICE"), remove("Finance")),
            // The other order, with a scope of the same name on another object.
            (name("TECH\\carol"), remove("HR")),
            (
                name("TECH\\carol"),
                add("urn:VMware:Folder:R.group-v2", "HR"),
            ),
        ]);
        assert_eq!(
            out,
            [
                (
                    6,
                    "contradicts line 2: add-scope and remove-scope of the same scope for one \
                     account (lines 2 and 6)"
                        .into()
                ),
                (
                    8,
                    "contradicts line 7: add-scope and remove-scope of the same scope for one \
                     account (lines 7 and 8)"
                        .into()
                ),
            ]
        );
    }

    #[test]
    fn restore_all_vms_twice_is_a_duplicate_or_a_contradiction() {
        let out = run(&[
            (name("a"), Action::RestoreAllVms(true)),
            (name("b"), Action::RestoreAllVms(false)),
            (name("A"), Action::RestoreAllVms(true)),
            (name("a"), Action::RestoreAllVms(false)),
        ]);
        assert_eq!(
            out,
            [
                (4, "duplicate of line 2".into()),
                (5, "contradicts line 2: restore-all-vms on and off for one account (lines 2 and 5)".into())
            ]
        );
    }
}
