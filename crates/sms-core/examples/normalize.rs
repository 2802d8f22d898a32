//! Normalises `REGION<TAB>NUMBER` lines from stdin: prints the E.164 form or `!reason`.
//! Used to compare against other libphonenumber implementations.

use std::io::BufRead;

fn main() {
    for line in std::io::stdin().lock().lines().map_while(Result::ok) {
        let (region, raw) = line.split_once('\t').unwrap_or(("", line.as_str()));
        let region = (!region.is_empty()).then_some(region);
        match sms_core::normalize(raw, region) {
            Ok(n) => println!("{n}"),
            Err(e) => println!("!{}", e.reason()),
        }
    }
}
