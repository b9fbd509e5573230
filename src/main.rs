fn main() -> std::process::ExitCode {
    tune_malloc();
    kiln::cli::main()
}

/// glibc's malloc takes a freed large block (from 128 KiB) as a sign to serve blocks up to 32 MiB
/// from its heap from then on; a large apply's transient buffers (response bodies, listings, the
/// plan's text) then leave holes in the heap that its later, small allocations do not fill (a
/// first apply of 10,000 launches: 5–14 MiB more peak RSS, BENCHMARKS.md section 6). Kept at
/// 128 KiB, such blocks are mapped and given back when freed. An explicit
/// `MALLOC_MMAP_THRESHOLD_` is left as it is.
fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
        // SAFETY: `mallopt` sets one of the allocator's parameters; nothing else runs yet.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
        }
    }
}
