//! Planning `[[group]]` and `[[user]]`: the shadow-utils step that brings
//! each account from its /etc/passwd, /etc/group and /etc/shadow entries to
//! the declared fields. Fields left unset are not managed.

use std::collections::BTreeSet;

use super::change::{AccountAction, Change, Op};
use super::observed::{Accounts, PasswdEntry};
use crate::desired::model::{Ensure, Group, ResourceId, User};

/// The account steps of one plan, kept apart so that they apply in an order
/// that works: groups before the users in them, users removed before the
/// groups they were in.
#[derive(Default)]
pub(super) struct AccountSteps {
    add: Vec<Change>,
    remove_users: Vec<Change>,
    remove_groups: Vec<Change>,
}

/// One shadow-utils step on the account `name` (its last argument).
fn account_step(
    id: &ResourceId,
    step: AccountAction,
    program: &str,
    mut args: Vec<String>,
    name: &str,
    password: Option<String>,
    reasons: Vec<String>,
) -> Change {
    args.push(name.to_owned());
    Change::new(
        id,
        Op::Account {
            step,
            program: program.to_owned(),
            args,
            password,
        },
        reasons,
    )
}

impl AccountSteps {
    /// Every step, in apply order.
    pub(super) fn into_changes(self) -> Vec<Change> {
        let mut out = self.add;
        out.extend(self.remove_users);
        out.extend(self.remove_groups);
        out
    }

    /// Plans `g`.
    pub(super) fn group(&mut self, g: &Group, id: &ResourceId, host: &Accounts) {
        let exists = host.has_group(&g.name);
        let step = |action, program: &str, args: Vec<String>, reason: String| {
            account_step(id, action, program, args, &g.name, None, vec![reason])
        };
        match (g.ensure, exists) {
            (Ensure::Absent, true) => self.remove_groups.push(step(
                AccountAction::RemoveGroup,
                "groupdel",
                Vec::new(),
                "exists, should be absent".into(),
            )),
            (Ensure::Absent, false) => {}
            (Ensure::Present, false) => {
                let mut args = Vec::new();
                if let Some(gid) = g.gid {
                    args.extend(["-g".to_owned(), gid.to_string()]);
                }
                if g.system {
                    args.push("-r".into());
                }
                self.add.push(
                    step(
                        AccountAction::CreateGroup,
                        "groupadd",
                        args,
                        "does not exist".into(),
                    )
                    .creating(),
                );
            }
            (Ensure::Present, true) => {
                let have = host.gid(&g.name);
                if let Some(gid) = g.gid
                    && have != Some(gid)
                {
                    self.add.push(step(
                        AccountAction::ChangeGroup,
                        "groupmod",
                        vec!["-g".into(), gid.to_string()],
                        format!(
                            "gid is {}, should be {gid}",
                            have.map_or("unknown".into(), |g| g.to_string())
                        ),
                    ));
                }
            }
        }
    }

    /// Plans `u`; `declared_groups` are the groups declared present (created
    /// before the users if missing). `Err`: a group it names exists nowhere.
    pub(super) fn user(
        &mut self,
        u: &User,
        id: &ResourceId,
        host: &Accounts,
        declared_groups: &BTreeSet<String>,
    ) -> Result<(), String> {
        let step = |action, program: &str, args: Vec<String>, reasons: Vec<String>| {
            account_step(
                id,
                action,
                program,
                args,
                &u.name,
                u.password.clone(),
                reasons,
            )
        };
        let entry = host.passwd.get(&u.name);
        if u.ensure == Ensure::Absent {
            if entry.is_some() {
                let mut c = step(
                    AccountAction::RemoveUser,
                    "userdel",
                    Vec::new(),
                    vec!["exists, should be absent (its home directory is left)".into()],
                );
                if let Op::Account { password, .. } = &mut c.op {
                    *password = None;
                }
                self.remove_users.push(c);
            }
            return Ok(());
        }
        for g in u.group.iter().chain(u.groups.iter().flatten()) {
            let numeric = g.bytes().all(|b| b.is_ascii_digit());
            if !numeric && !host.has_group(g) && !declared_groups.contains(g) {
                return Err(format!(
                    "group `{g}` of user:{} does not exist on the host and is not declared (add a [[group]] named `{g}`)",
                    u.name
                ));
            }
        }
        let Some(have) = entry else {
            self.add.push(
                step(
                    AccountAction::CreateUser,
                    "useradd",
                    useradd_args(u),
                    vec!["does not exist".to_owned()],
                )
                .creating(),
            );
            return Ok(());
        };
        let (args, mut reasons) = usermod_args(u, have, host);
        let password_differs = match (&u.password, &host.shadow) {
            (Some(want), Some(shadow)) => shadow.get(&u.name) != Some(want),
            (Some(_), None) => true,
            (None, _) => false,
        };
        if password_differs {
            reasons.push("password differs (hidden)".to_owned());
        }
        if reasons.is_empty() {
            return Ok(());
        }
        let mut c = step(AccountAction::ChangeUser, "usermod", args, reasons);
        if !password_differs && let Op::Account { password, .. } = &mut c.op {
            *password = None;
        }
        self.add.push(c);
        Ok(())
    }
}

/// Appends an option and its value.
fn flag(args: &mut Vec<String>, f: &str, v: String) {
    args.push(f.to_owned());
    args.push(v);
}

/// `useradd`'s arguments for `u`.
fn useradd_args(u: &User) -> Vec<String> {
    let mut args = Vec::new();
    if let Some(uid) = u.uid {
        flag(&mut args, "-u", uid.to_string());
    }
    if let Some(g) = &u.group {
        flag(&mut args, "-g", g.clone());
    }
    if let Some(gs) = &u.groups {
        flag(&mut args, "-G", gs.join(","));
    }
    if let Some(h) = &u.home {
        flag(&mut args, "-d", h.clone());
    }
    args.push(if u.create_home { "-m" } else { "-M" }.to_owned());
    if let Some(s) = &u.shell {
        flag(&mut args, "-s", s.clone());
    }
    if let Some(c) = &u.comment {
        flag(&mut args, "-c", c.clone());
    }
    if u.system {
        args.push("-r".into());
    }
    args
}

/// `usermod`'s arguments for what differs between `u` and the user `have`
/// of the host, and why (empty: nothing but perhaps the password).
fn usermod_args(u: &User, have: &PasswdEntry, host: &Accounts) -> (Vec<String>, Vec<String>) {
    let mut args = Vec::new();
    let mut reasons = Vec::new();
    if let Some(uid) = u.uid
        && have.uid != uid
    {
        flag(&mut args, "-u", uid.to_string());
        reasons.push(format!("uid is {}, should be {uid}", have.uid));
    }
    if let Some(g) = &u.group
        && host.gid(g) != Some(have.gid)
    {
        flag(&mut args, "-g", g.clone());
        reasons.push(format!(
            "primary group is {}, should be {g}",
            host.group_name(have.gid)
        ));
    }
    if let Some(want) = &u.groups {
        let want: BTreeSet<&String> = want.iter().collect();
        let have_groups = host.groups_of(&u.name);
        let have_set: BTreeSet<&String> = have_groups.iter().collect();
        if want != have_set {
            let list = |s: &BTreeSet<&String>| {
                if s.is_empty() {
                    "none".to_owned()
                } else {
                    s.iter().map(|g| g.as_str()).collect::<Vec<_>>().join(",")
                }
            };
            flag(
                &mut args,
                "-G",
                want.iter()
                    .map(|g| g.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
            );
            reasons.push(format!(
                "supplementary groups are {}, should be {}",
                list(&have_set),
                list(&want)
            ));
        }
    }
    for (f, want, have, what) in [
        ("-d", &u.home, &have.home, "home"),
        ("-s", &u.shell, &have.shell, "shell"),
        ("-c", &u.comment, &have.comment, "comment"),
    ] {
        if let Some(want) = want
            && want != have
        {
            flag(&mut args, f, want.clone());
            reasons.push(format!("{what} is `{have}`, should be `{want}`"));
        }
    }
    (args, reasons)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::model::Kind;

    fn host() -> Accounts {
        Accounts::parse(
            "root:x:0:0:root:/root:/bin/bash\napp:x:1001:1001:App:/home/app:/bin/sh\n",
            "root:x:0:\napp:x:1001:\nwheel:x:10:app\nops:x:1500:\n",
        )
        .with_shadow("root:*:1::::::\napp:$6$old:1::::::\n")
    }

    fn user(name: &str) -> User {
        User {
            name: name.into(),
            uid: None,
            group: None,
            groups: None,
            home: None,
            create_home: true,
            shell: None,
            comment: None,
            system: false,
            password: None,
            ensure: Ensure::Present,
        }
    }

    fn plan_user(u: &User, declared: &[&str]) -> Result<Vec<Change>, String> {
        let mut steps = AccountSteps::default();
        let declared = declared.iter().map(|s| (*s).to_owned()).collect();
        steps.user(u, &ResourceId::new(Kind::User, &u.name), &host(), &declared)?;
        Ok(steps.into_changes())
    }

    fn args(c: &Change) -> (&str, Vec<String>) {
        match &c.op {
            Op::Account { program, args, .. } => (program, args.clone()),
            other => panic!("not an account step: {other:?}"),
        }
    }

    #[test]
    fn a_user_as_declared_needs_no_step_and_drift_is_named_field_by_field() {
        let mut u = user("app");
        u.shell = Some("/bin/sh".into());
        u.groups = Some(vec!["wheel".into()]);
        u.password = Some("$6$old".into());
        assert!(plan_user(&u, &[]).expect("plan").is_empty());

        u.shell = Some("/bin/bash".into());
        u.groups = Some(vec!["wheel".into(), "ops".into()]);
        u.password = Some("$6$new".into());
        let steps = plan_user(&u, &[]).expect("plan");
        let [c] = &steps[..] else {
            panic!("one step: {steps:?}")
        };
        let (program, a) = args(c);
        assert_eq!(program, "usermod");
        assert_eq!(a, ["-G", "ops,wheel", "-s", "/bin/bash", "app"]);
        assert_eq!(
            c.reasons,
            [
                "supplementary groups are wheel, should be ops,wheel",
                "shell is `/bin/sh`, should be `/bin/bash`",
                "password differs (hidden)",
            ]
        );
        // The hash goes to usermod, never into what is shown.
        assert!(!serde_json::to_string(c).expect("json").contains("$6$new"));
        assert!(matches!(&c.op, Op::Account { password: Some(p), .. } if p == "$6$new"));
    }

    #[test]
    fn a_new_user_is_created_after_its_groups_and_an_unknown_group_is_refused() {
        let mut u = user("web");
        u.uid = Some(1200);
        u.groups = Some(vec!["www".into()]);
        u.system = true;
        u.create_home = false;
        let err = plan_user(&u, &[]).expect_err("www exists nowhere");
        assert!(
            err.contains("group `www` of user:web does not exist"),
            "{err}"
        );
        let steps = plan_user(&u, &["www"]).expect("www is declared");
        assert_eq!(
            args(&steps[0]),
            (
                "useradd",
                ["-u", "1200", "-G", "www", "-M", "-r", "web"]
                    .map(String::from)
                    .to_vec()
            )
        );

        let mut steps = AccountSteps::default();
        let mut www = Group {
            name: "www".into(),
            gid: Some(1300),
            system: false,
            ensure: Ensure::Present,
        };
        steps.group(&www, &ResourceId::new(Kind::Group, "www"), &host());
        www.name = "ops".into();
        steps.group(&www, &ResourceId::new(Kind::Group, "ops"), &host());
        let mut gone = user("app");
        gone.ensure = Ensure::Absent;
        steps
            .user(
                &gone,
                &ResourceId::new(Kind::User, "app"),
                &host(),
                &BTreeSet::new(),
            )
            .expect("plan");
        www.name = "wheel".into();
        www.ensure = Ensure::Absent;
        steps.group(&www, &ResourceId::new(Kind::Group, "wheel"), &host());
        let programs: Vec<String> = steps
            .into_changes()
            .iter()
            .map(|c| {
                let (p, a) = args(c);
                format!("{p} {}", a.join(" "))
            })
            .collect();
        assert_eq!(
            programs,
            [
                "groupadd -g 1300 www",
                "groupmod -g 1300 ops",
                "userdel app",
                "groupdel wheel"
            ]
        );
    }
}
