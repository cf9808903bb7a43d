//! Mounted filesystems from `/proc/self/mountinfo` (what driftless's own
//! mount namespace sees), pseudo filesystems included.

use crate::desired::Mount;
use crate::system::mounts::unescape;

/// Mounts kept, at most: a container host can have thousands (one per
/// container layer and secret), and every fact is held and hashed on
/// every converge.
pub(super) const MOUNTS_MAX: usize = 1024;

/// The mounts of the text of a `mountinfo` file, in its order, at most
/// [`MOUNTS_MAX`]. Lines that are not mountinfo lines are skipped.
pub(super) fn parse(text: &str) -> Vec<Mount> {
    text.lines().filter_map(line).take(MOUNTS_MAX).collect()
}

/// One line: `ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL…] -
/// FSTYPE SOURCE SUPEROPTIONS` (proc(5)).
fn line(l: &str) -> Option<Mount> {
    let (left, right) = l.split_once(" - ")?;
    let left: Vec<&str> = left.split(' ').collect();
    let mut right = right.split(' ');
    let path = unescape(left.get(4)?);
    let mount_options = *left.get(5)?;
    let fstype = right.next()?.to_owned();
    let device = unescape(right.next()?);
    let super_options = right.next().unwrap_or("");
    // As /proc/mounts shows them: the mount's options, then the
    // filesystem's that are not already there.
    let mut options: Vec<&str> = mount_options.split(',').collect();
    for o in super_options.split(',').filter(|o| !o.is_empty()) {
        if !options.contains(&o) {
            options.push(o);
        }
    }
    Some(Mount {
        path,
        device,
        fstype,
        options: options.join(","),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 253:0 / / rw,relatime shared:1 - xfs /dev/mapper/rhel-root rw,seclabel,attr2,inode64
28 27 253:1 / /boot rw,relatime shared:2 master:1 - xfs /dev/vda1 rw,seclabel
40 27 0:45 / /mnt/my\\040disk rw,nosuid - tmpfs my\\134tmp rw,size=1024k
garbage line
";

    #[test]
    fn mountinfo_lines_give_path_device_type_and_options() {
        let m = parse(MOUNTINFO);
        assert_eq!(m.len(), 4);
        assert_eq!(
            m[1],
            Mount {
                path: "/".into(),
                device: "/dev/mapper/rhel-root".into(),
                fstype: "xfs".into(),
                options: "rw,relatime,seclabel,attr2,inode64".into(),
            }
        );
        // Optional fields (shared:, master:) are not the separator.
        assert_eq!(m[2].path, "/boot");
        assert_eq!(m[2].device, "/dev/vda1");
        assert_eq!(m[0].fstype, "proc");
        // Escaped space and backslash.
        assert_eq!(m[3].path, "/mnt/my disk");
        assert_eq!(m[3].device, "my\\tmp");
        assert_eq!(m[3].options, "rw,nosuid,size=1024k");
    }

    #[test]
    fn mounts_are_bounded() {
        let many = "1 1 0:1 / /x rw - tmpfs tmpfs rw\n".repeat(MOUNTS_MAX + 10);
        assert_eq!(parse(&many).len(), MOUNTS_MAX);
        assert!(parse("").is_empty());
    }
}
