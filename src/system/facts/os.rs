//! The operating system from `/etc/os-release`: its id, version and
//! family, as Ansible names them.

/// What templates see of the operating system.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Os {
    pub(super) id: String,
    pub(super) version_id: String,
    pub(super) family: String,
    pub(super) major: String,
    pub(super) minor: String,
}

/// Reads the text of an os-release file.
pub(super) fn parse(text: &str) -> Os {
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(key)?.strip_prefix('='))
            .map(|v| v.trim().trim_matches(['"', '\'']).to_owned())
            .unwrap_or_default()
    };
    let id = field("ID");
    let version_id = field("VERSION_ID");
    let (major, minor) = split_version(&version_id);
    Os {
        family: family(&id, &field("ID_LIKE")).to_owned(),
        id,
        version_id,
        major,
        minor,
    }
}

/// `9.4` -> (`9`, `4`); `12` -> (`12`, ``); `` -> (``, ``).
fn split_version(v: &str) -> (String, String) {
    let mut parts = v.split('.');
    let major = parts.next().unwrap_or("").to_owned();
    let minor = parts.next().unwrap_or("").to_owned();
    (major, minor)
}

/// Ansible's `ansible_os_family` for an os-release `ID` and `ID_LIKE`:
/// the id itself when known, else the first id it is like that is;
/// empty when none is.
fn family(id: &str, like: &str) -> &'static str {
    std::iter::once(id)
        .chain(like.split_whitespace())
        .find_map(family_of)
        .unwrap_or("")
}

fn family_of(id: &str) -> Option<&'static str> {
    Some(match id.to_ascii_lowercase().as_str() {
        "rhel" | "centos" | "fedora" | "rocky" | "almalinux" | "ol" | "amzn" | "cloudlinux"
        | "scientific" | "eurolinux" | "virtuozzo" | "openeuler" | "euleros" | "tencentos"
        | "circle" | "navylinux" | "miraclelinux" => "RedHat",
        "debian" | "ubuntu" | "raspbian" | "linuxmint" | "pop" | "kali" | "devuan" | "neon"
        | "parrot" => "Debian",
        "sles" | "sled" | "opensuse" | "opensuse-leap" | "opensuse-tumbleweed" | "suse" => "Suse",
        "arch" | "manjaro" | "endeavouros" => "Archlinux",
        "alpine" => "Alpine",
        "gentoo" => "Gentoo",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn red_hat_likes_are_the_red_hat_family_with_major_and_minor() {
        let rocky = parse(
            "NAME=\"Rocky Linux\"\nVERSION=\"9.4 (Blue Onyx)\"\nID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\nVERSION_ID=\"9.4\"\n",
        );
        assert_eq!(
            rocky,
            Os {
                id: "rocky".into(),
                version_id: "9.4".into(),
                family: "RedHat".into(),
                major: "9".into(),
                minor: "4".into(),
            }
        );
        // A derivative only its ID_LIKE names.
        let other = parse("ID=acme\nID_LIKE='centos rhel fedora'\nVERSION_ID=8\n");
        assert_eq!(
            (
                other.family.as_str(),
                other.major.as_str(),
                other.minor.as_str()
            ),
            ("RedHat", "8", "")
        );
        let stream = parse("ID=\"centos\"\nVERSION_ID=\"9\"\n");
        assert_eq!(
            (stream.family.as_str(), stream.major.as_str()),
            ("RedHat", "9")
        );
    }

    #[test]
    fn debian_and_ubuntu_are_the_debian_family() {
        let debian =
            parse("PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nVERSION_ID=\"12\"\nID=debian\n");
        assert_eq!(
            (debian.family.as_str(), debian.major.as_str()),
            ("Debian", "12")
        );
        let ubuntu = parse("ID=ubuntu\nID_LIKE=debian\nVERSION_ID=\"22.04\"\n");
        assert_eq!(
            (
                ubuntu.family.as_str(),
                ubuntu.major.as_str(),
                ubuntu.minor.as_str()
            ),
            ("Debian", "22", "04")
        );
        let mint = parse("ID=mintish\nID_LIKE=\"ubuntu debian\"\n");
        assert_eq!(mint.family, "Debian");
    }

    #[test]
    fn unknown_or_missing_fields_are_empty() {
        assert_eq!(parse(""), Os::default());
        let nix = parse("ID=nixos\nVERSION_ID=\"24.05\"\n");
        assert_eq!(nix.family, "");
        assert_eq!(nix.major, "24");
        // `ID_LIKE` is not `ID`.
        assert_eq!(parse("ID_LIKE=rhel\n").id, "");
    }
}
