//! What the host runs in, named as `systemd-detect-virt` names it, from
//! the sources it reads itself, without running it: the container
//! manager systemd recorded (`/run/systemd/container`) or PID 1's
//! `container=`, the marker files of docker and podman, the CPU's
//! hypervisor vendor (`cpuid`, on x86_64) and the firmware's DMI strings.
//! No subprocess, since the daemon gathers facts every tick: these are
//! the sources `systemd-detect-virt` itself reads first; rarer ones it
//! also knows (OpenVZ, UML, z/VM, device-tree hypervisors) are not read,
//! and such a host is `vm-other` or `none` here.
//! A container is named before the machine it runs on, as
//! `systemd-detect-virt` does.

/// What the decision is made from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Inputs {
    /// `/run/systemd/container`, else PID 1's `container=`.
    pub(super) container: Option<String>,
    /// `/.dockerenv` exists.
    pub(super) dockerenv: bool,
    /// `/run/.containerenv` exists (podman).
    pub(super) containerenv: bool,
    /// The running kernel's release says WSL.
    pub(super) wsl: bool,
    /// The hypervisor's `cpuid` vendor string (`KVMKVMKVM`).
    pub(super) cpuid_vendor: Option<String>,
    /// The CPU says it runs under a hypervisor (cpuinfo's `hypervisor`
    /// flag).
    pub(super) hypervisor_flag: bool,
    /// DMI `sys_vendor`, `product_name`, `board_vendor`, `bios_vendor`.
    pub(super) dmi: Vec<String>,
    /// `/sys/hypervisor/type` (`xen`).
    pub(super) hypervisor_type: Option<String>,
}

/// The name `systemd-detect-virt` would print for these inputs.
pub(super) fn decide(i: &Inputs) -> String {
    if let Some(c) = i
        .container
        .as_deref()
        .map(str::trim)
        .filter(|c| !c.is_empty())
    {
        return match c {
            // systemd's names for what container managers write.
            "oci" => "container-other",
            "lxc-libvirt" => "lxc-libvirt",
            other => other,
        }
        .to_owned();
    }
    let found = if i.dockerenv {
        "docker"
    } else if i.containerenv {
        "podman"
    } else if i.wsl {
        "wsl"
    } else {
        vm(i)
    };
    found.to_owned()
}

fn vm(i: &Inputs) -> &'static str {
    let dmi = i.dmi.iter().find_map(|s| dmi_vendor(s));
    // Clouds on KVM or Xen whose firmware names them: systemd prefers the
    // firmware's word for these.
    if let Some(v @ ("amazon" | "oracle" | "xen")) = dmi {
        return v;
    }
    if let Some(v) = i.cpuid_vendor.as_deref().and_then(cpuid_vendor) {
        return v;
    }
    if let Some(v) = dmi {
        return v;
    }
    if i.hypervisor_type.as_deref().map(str::trim) == Some("xen") {
        return "xen";
    }
    if i.hypervisor_flag || i.cpuid_vendor.is_some() {
        return "vm-other";
    }
    "none"
}

/// systemd's table of hypervisor `cpuid` vendor strings.
fn cpuid_vendor(v: &str) -> Option<&'static str> {
    Some(match v.trim_end_matches('\0').trim() {
        "XenVMMXenVMM" => "xen",
        "KVMKVMKVM" | "Linux KVM Hv" => "kvm",
        "TCGTCGTCGTCG" => "qemu",
        "VMwareVMware" => "vmware",
        "Microsoft Hv" => "microsoft",
        "bhyve bhyve" => "bhyve",
        "QNXQVMBSQG" => "qnx",
        "ACRNACRNACRN" => "acrn",
        "SRESRESRESRE" => "sre",
        "Apple VZ" => "apple",
        _ => return None,
    })
}

/// systemd's table of DMI vendor prefixes.
fn dmi_vendor(s: &str) -> Option<&'static str> {
    const TABLE: &[(&str, &str)] = &[
        ("KVM", "kvm"),
        ("OpenStack", "kvm"),
        ("KubeVirt", "kvm"),
        ("Amazon EC2", "amazon"),
        ("QEMU", "qemu"),
        ("VMware", "vmware"),
        ("VMW", "vmware"),
        ("innotek GmbH", "oracle"),
        ("VirtualBox", "oracle"),
        ("Oracle Corporation", "oracle"),
        ("Xen", "xen"),
        ("Bochs", "bochs"),
        ("Parallels", "parallels"),
        ("BHYVE", "bhyve"),
        ("Hyper-V", "microsoft"),
        ("Apple Virtualization", "apple"),
        ("Google Compute Engine", "google"),
    ];
    let s = s.trim();
    TABLE
        .iter()
        .find(|(prefix, _)| s.starts_with(prefix))
        .map(|(_, name)| *name)
}

/// Reads the inputs on this machine (a few small files and `cpuid`).
pub(super) fn inputs(kernel: &str) -> Inputs {
    let read = |p: &str| std::fs::read_to_string(p).ok();
    let container = read("/run/systemd/container").or_else(|| {
        // Only root may read PID 1's environment; elsewhere this is None.
        let env = std::fs::read("/proc/1/environ").ok()?;
        env.split(|b| *b == 0)
            .find_map(|kv| kv.strip_prefix(b"container="))
            .map(|v| String::from_utf8_lossy(v).into_owned())
    });
    let dmi = ["sys_vendor", "product_name", "board_vendor", "bios_vendor"]
        .iter()
        .filter_map(|f| read(&format!("/sys/class/dmi/id/{f}")))
        .collect();
    let (hypervisor_flag, cpuid_vendor) = cpuid();
    Inputs {
        container,
        dockerenv: std::path::Path::new("/.dockerenv").exists(),
        containerenv: std::path::Path::new("/run/.containerenv").exists(),
        wsl: kernel.contains("Microsoft") || kernel.contains("WSL"),
        hypervisor_flag,
        cpuid_vendor,
        dmi,
        hypervisor_type: read("/sys/hypervisor/type"),
    }
}

/// Whether a hypervisor is present (`cpuid` leaf 1, ECX bit 31: the bit
/// /proc/cpuinfo shows as the `hypervisor` flag, without reading a file
/// that grows with the number of CPUs), and its vendor string (leaf
/// 0x40000000).
#[cfg(target_arch = "x86_64")]
fn cpuid() -> (bool, Option<String>) {
    use std::arch::x86_64::__cpuid;
    if __cpuid(1).ecx & (1 << 31) == 0 {
        return (false, None);
    }
    let r = __cpuid(0x4000_0000);
    let bytes: Vec<u8> = [r.ebx, r.ecx, r.edx]
        .iter()
        .flat_map(|w| w.to_le_bytes())
        .collect();
    (true, Some(String::from_utf8_lossy(&bytes).into_owned()))
}

/// Elsewhere the firmware tells (aarch64 has no such flag).
#[cfg(not(target_arch = "x86_64"))]
fn cpuid() -> (bool, Option<String>) {
    (false, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_container_is_named_before_the_machine_it_runs_on() {
        let kvm = Inputs {
            cpuid_vendor: Some("KVMKVMKVM\0\0\0".into()),
            hypervisor_flag: true,
            ..Inputs::default()
        };
        assert_eq!(decide(&kvm), "kvm");
        for (container, want) in [
            ("systemd-nspawn\n", "systemd-nspawn"),
            ("lxc", "lxc"),
            ("oci", "container-other"),
        ] {
            let i = Inputs {
                container: Some(container.into()),
                ..kvm.clone()
            };
            assert_eq!(decide(&i), want);
        }
        // This machine: a docker container (PID 1's environment is not
        // readable here) on KVM.
        let docker = Inputs {
            dockerenv: true,
            ..kvm.clone()
        };
        assert_eq!(decide(&docker), "docker");
        let podman = Inputs {
            containerenv: true,
            ..Inputs::default()
        };
        assert_eq!(decide(&podman), "podman");
    }

    #[test]
    fn virtual_machines_by_cpuid_then_firmware() {
        let tcg = Inputs {
            cpuid_vendor: Some("TCGTCGTCGTCG".into()),
            dmi: vec!["QEMU\n".into(), "Standard PC (Q35 + ICH9, 2009)\n".into()],
            hypervisor_flag: true,
            ..Inputs::default()
        };
        assert_eq!(decide(&tcg), "qemu");
        // EC2 on Nitro: cpuid says KVM, the firmware says Amazon.
        let ec2 = Inputs {
            cpuid_vendor: Some("KVMKVMKVM".into()),
            dmi: vec!["Amazon EC2\n".into()],
            hypervisor_flag: true,
            ..Inputs::default()
        };
        assert_eq!(decide(&ec2), "amazon");
        let vmware_by_dmi = Inputs {
            dmi: vec!["VMware, Inc.\n".into()],
            ..Inputs::default()
        };
        assert_eq!(decide(&vmware_by_dmi), "vmware");
        let unknown = Inputs {
            hypervisor_flag: true,
            ..Inputs::default()
        };
        assert_eq!(decide(&unknown), "vm-other");
        let metal = Inputs {
            dmi: vec!["Dell Inc.\n".into(), "PowerEdge R650\n".into()],
            ..Inputs::default()
        };
        assert_eq!(decide(&metal), "none");
        assert_eq!(decide(&Inputs::default()), "none");
        let wsl = Inputs {
            wsl: true,
            ..Inputs::default()
        };
        assert_eq!(decide(&wsl), "wsl");
    }
}
