//! Reading the `.modinfo` section of a kernel module (an ELF64 relocatable object).
//!
//! Debian's kernel packages do not ship `modules.dep` (their postinst runs
//! depmod), so the builder reads each module's `depends=` entry, which is what
//! depmod's dependency lines are made of.

/// The module names listed in the `depends=` entry of a module's `.modinfo` section.
pub(crate) fn depends(elf: &[u8]) -> Result<Vec<String>, String> {
    let section = modinfo_section(elf)?;
    let depends =
        section.split(|&b| b == 0).find_map(|entry| entry.strip_prefix(b"depends=")).unwrap_or_default();
    let depends = std::str::from_utf8(depends).map_err(|_| "depends= is not UTF-8".to_owned())?;
    Ok(depends.split(',').filter(|name| !name.is_empty()).map(|name| name.replace('-', "_")).collect())
}

fn modinfo_section(elf: &[u8]) -> Result<&[u8], String> {
    if elf.get(..6) != Some(b"\x7fELF\x02\x01") {
        return Err("not a little-endian ELF64 object".into());
    }
    let section_headers = u64_at(elf, 0x28)? as usize;
    let header_size = u16_at(elf, 0x3a)? as usize;
    let count = u16_at(elf, 0x3c)? as usize;
    let names_index = u16_at(elf, 0x3e)? as usize;
    if header_size < 0x28 {
        return Err(format!("section header size {header_size} is too small"));
    }
    let table_end = count.checked_mul(header_size).and_then(|size| size.checked_add(section_headers));
    if table_end.is_none_or(|end| end > elf.len()) {
        return Err("the section header table lies outside the file".into());
    }
    let header = |index: usize| -> Result<(u32, &[u8]), String> {
        let at = index
            .checked_mul(header_size)
            .and_then(|relative| relative.checked_add(section_headers))
            .ok_or_else(|| format!("section header {index} lies outside the file"))?;
        let name = u32_at(elf, at)?;
        let offset = u64_at(elf, at.saturating_add(0x18))? as usize;
        let size = u64_at(elf, at.saturating_add(0x20))? as usize;
        let data = elf
            .get(offset..offset.saturating_add(size))
            .ok_or_else(|| format!("section {index} lies outside the file"))?;
        Ok((name, data))
    };
    let (_, names) = header(names_index)?;
    for index in 0..count {
        let (name, data) = header(index)?;
        let name = names.get(name as usize..).unwrap_or_default();
        if name.split(|&b| b == 0).next() == Some(b".modinfo") {
            return Ok(data);
        }
    }
    Err("no .modinfo section".into())
}

fn bytes<const N: usize>(elf: &[u8], at: usize) -> Result<[u8; N], String> {
    elf.get(at..at.saturating_add(N))
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| format!("truncated ELF header at offset {at}"))
}

fn u16_at(elf: &[u8], at: usize) -> Result<u16, String> {
    bytes(elf, at).map(u16::from_le_bytes)
}

fn u32_at(elf: &[u8], at: usize) -> Result<u32, String> {
    bytes(elf, at).map(u32::from_le_bytes)
}

fn u64_at(elf: &[u8], at: usize) -> Result<u64, String> {
    bytes(elf, at).map(u64::from_le_bytes)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal ELF64 object with a `.modinfo` section holding `entries`.
    pub(crate) fn module_elf(entries: &[&str]) -> Vec<u8> {
        let mut modinfo = Vec::new();
        for entry in entries {
            modinfo.extend_from_slice(entry.as_bytes());
            modinfo.push(0);
        }
        let names = b"\0.modinfo\0.shstrtab\0".to_vec();
        let mut elf = vec![0u8; 64];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        let modinfo_at = elf.len();
        elf.extend_from_slice(&modinfo);
        let names_at = elf.len();
        elf.extend_from_slice(&names);
        let headers_at = elf.len();
        elf[0x28..0x30].copy_from_slice(&(headers_at as u64).to_le_bytes());
        elf[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        elf[0x3c..0x3e].copy_from_slice(&3u16.to_le_bytes());
        elf[0x3e..0x40].copy_from_slice(&2u16.to_le_bytes());
        let sections = [(0u32, 0usize, 0usize), (1, modinfo_at, modinfo.len()), (10, names_at, names.len())];
        for (name, offset, size) in sections {
            let mut header = [0u8; 64];
            header[..4].copy_from_slice(&name.to_le_bytes());
            header[0x18..0x20].copy_from_slice(&(offset as u64).to_le_bytes());
            header[0x20..0x28].copy_from_slice(&(size as u64).to_le_bytes());
            elf.extend_from_slice(&header);
        }
        elf
    }

    #[test]
    fn depends_lists_the_modules_named_in_modinfo() {
        let elf = module_elf(&[
            "license=GPL",
            "depends=virtio_ring,virtio-pci-legacy-dev,virtio",
            "name=virtio_pci",
        ]);
        assert_eq!(depends(&elf).unwrap(), ["virtio_ring", "virtio_pci_legacy_dev", "virtio"]);
    }

    #[test]
    fn empty_depends_means_no_dependencies() {
        assert!(depends(&module_elf(&["depends=", "name=virtio_ring"])).unwrap().is_empty());
        assert!(depends(&module_elf(&["name=old"])).unwrap().is_empty());
    }

    #[test]
    fn non_elf_and_truncated_input_is_rejected() {
        assert!(depends(b"#!/bin/sh\n").is_err());
        let elf = module_elf(&["depends="]);
        assert!(depends(&elf[..elf.len() - 10]).is_err());
    }
}
