//! Readers on other threads while updates are applied: every read is a value that was written,
//! and a reader never sees a value go backwards.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use palisade_dynconfig::Config;

#[test]
fn concurrent_reads_see_only_written_values_in_order() {
    const UPDATES: u64 = 2_000;
    let config = Config::builder()
        .defaults(serde_json::json!({"n": 0, "s": "v${n}"}))
        .build()
        .unwrap();
    let n = config.property::<u64>("n", 0).unwrap();
    let s = config.property::<String>("s", String::new()).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (n, s, done) = (n.clone(), s.clone(), done.clone());
            std::thread::spawn(move || {
                let (mut last_n, mut last_s, mut reads) = (0u64, 0u64, 0u64);
                while !done.load(Ordering::Acquire) || reads == 0 {
                    let v = n.get();
                    assert!(v >= last_n && v <= UPDATES, "n went from {last_n} to {v}");
                    last_n = v;
                    let sv: u64 = s.with(|t| t.strip_prefix('v').unwrap().parse().unwrap());
                    assert!(
                        sv >= last_s && sv <= UPDATES,
                        "s went from {last_s} to {sv}"
                    );
                    last_s = sv;
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    for i in 1..=UPDATES {
        config.set_override("n", i).unwrap();
    }
    done.store(true, Ordering::Release);
    for r in readers {
        assert!(r.join().unwrap() > 0);
    }
    assert_eq!(n.get(), UPDATES);
    assert_eq!(s.get(), format!("v{UPDATES}"));
}
