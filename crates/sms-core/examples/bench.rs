//! Rough throughput of the core's hot paths (`make bench`). Benchmarks measure;
//! tests assert: nothing here fails on a slow machine.

use std::hint::black_box;
use std::time::Instant;

use sms_core::directory::{OrgNumber, Owner, Record, RecordKind};
use sms_core::routing::{route, InboundAddress, RouteInput};
use sms_core::template::Template;
use sms_core::value::Value;
use sms_core::{normalize, segments, Timestamp};

fn time<T>(label: &str, n: usize, mut f: impl FnMut(usize) -> T) {
    let start = Instant::now();
    for i in 0..n {
        black_box(f(i));
    }
    let per = start.elapsed().as_secs_f64() / n as f64;
    println!(
        "{label:<48} {:>10.2} µs/op {:>12.0} op/s",
        per * 1e6,
        1.0 / per
    );
}

fn main() {
    let numbers = [
        "098123 45678",
        "+1 (415) 555-2671",
        "020 7946 0958",
        "0049 30 123456",
    ];
    let regions = ["IN", "US", "GB", "FR"];
    time("normalize (4 shapes, warm)", 200_000, |i| {
        normalize(numbers[i % 4], Some(regions[i % 4]))
    });

    let t = Template::compile("Hi {{ contact.first_name | capitalize }}, your order {{ order.id }} ships from {{ account.city | default: \"our warehouse\" }}.").unwrap();
    let data = Value::object([
        (
            "contact",
            Value::object([("first_name", Value::from("priya"))]),
        ),
        ("order", Value::object([("id", Value::from("A-1042"))])),
    ]);
    time("template render (3 placeholders)", 500_000, |_| {
        t.render(&data)
    });

    let hindi = "नमस्ते प्रिया, आपका ऑर्डर कल पहुँच जाएगा। धन्यवाद! ".repeat(4);
    time("segments (Hindi, ~200 chars)", 100_000, |_| {
        segments::count(&hindi)
    });
    let short = "नमस्ते प्रिया, धन्यवाद!";
    time("segments (Hindi, one segment)", 100_000, |_| {
        segments::count(short)
    });
    let latin = "Hi Priya, your order ships tomorrow. Thanks! ".repeat(4);
    time("segments (GSM-7, ~180 chars)", 100_000, |_| {
        segments::count(&latin)
    });

    let records: Vec<Record> = (0..10_000)
        .map(|i| Record {
            id: format!("contact:{i}"),
            kind: RecordKind::Contact,
            owner: Some(Owner::Seller(format!("s{}", i % 50))),
            active: true,
            updated_at: Some(Timestamp::from_millis(i)),
            phones: vec![format!("+9198{:08}", i % 5000)],
            name: String::new(),
            related: Vec::new(),
        })
        .collect();
    let input = RouteInput {
        inbound: InboundAddress {
            from: "+919800000042".into(),
            to: "+14155550100".into(),
        },
        default_region: Some("IN".into()),
        org_numbers: vec![OrgNumber {
            number: "+14155550100".into(),
            owner: Owner::Seller("s2".into()),
        }],
        records,
        ..Default::default()
    };
    time("route over flat lists (10,000 records)", 20, |_| {
        route(&input)
    });
}
