//! Where a symbol of a mapped ELF file (a runtime's shared library, or a static executable)
//! lies in a process: its value in the file's symbol tables (dynamic first), moved by where
//! the file's first loadable segment was mapped.

/// The address in process `pid` of `symbol`, from the first of its mapped files that
/// `candidate` accepts (by basename) and that defines it; the process's executable is tried
/// last. The file is read through the process's root (containers).
pub fn symbol_address(
    pid: u32,
    candidate: impl Fn(&str) -> bool,
    symbol: &str,
) -> Result<u64, String> {
    let maps = crate::procfs::maps(pid).map_err(|e| format!("reading maps: {e}"))?;
    // (start address, file offset, path) of every file mapping.
    let mappings: Vec<(u64, u64, &str)> = maps
        .iter()
        .filter(|m| m.path.starts_with('/'))
        .map(|m| (m.start, m.offset, m.path.as_str()))
        .collect();
    let exe = crate::procfs::exe(pid)
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut candidates: Vec<&str> = mappings
        .iter()
        .map(|m| m.2)
        .filter(|p| p.rsplit('/').next().is_some_and(&candidate))
        .collect();
    candidates.push(exe.as_str());
    candidates.dedup();
    for path in candidates {
        let Some(&(start, _, _)) = mappings.iter().find(|m| m.2 == path && m.1 == 0) else {
            continue;
        };
        let bytes =
            std::fs::read(crate::procfs::in_root(pid, path)).or_else(|_| std::fs::read(path));
        let Ok(bytes) = bytes else { continue };
        let Ok(elf) = goblin::elf::Elf::parse(&bytes) else {
            continue;
        };
        let find = |syms: &goblin::elf::Symtab, strs: &goblin::strtab::Strtab| {
            syms.iter()
                .find(|s| strs.get_at(s.st_name) == Some(symbol) && s.st_value != 0)
                .map(|s| s.st_value)
        };
        let Some(value) =
            find(&elf.dynsyms, &elf.dynstrtab).or_else(|| find(&elf.syms, &elf.strtab))
        else {
            continue;
        };
        let first_load = elf
            .program_headers
            .iter()
            .filter(|h| h.p_type == goblin::elf::program_header::PT_LOAD)
            .map(|h| h.p_vaddr & !0xfff)
            .min()
            .unwrap_or(0);
        return Ok(start - first_load + value);
    }
    Err(format!(
        "no {symbol} symbol found (library not mapped yet?)"
    ))
}
