//! Indicator values as members type them: a value accepted for a type normalises to itself.
#![no_main]

use escape_proto::indicator::{ObservableType, infer_type, normalise, refang};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let refanged = refang(text);
    let _ = infer_type(&refanged);
    for kind in ObservableType::ALL {
        if let Ok(normal) = normalise(kind, &refanged) {
            assert_eq!(
                normalise(kind, &normal),
                Ok(normal.clone()),
                "{kind:?} {text:?}"
            );
        }
    }
});
